"""An image-only Qwen2-VL processor: what `Qwen2VLProcessor` does for text + images, without
its video processor (which needs torchvision, and torchvision breaks transformers here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from transformers import AutoTokenizer, BatchFeature, ProcessorMixin
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorPil,
)

IMAGE_TOKEN = "<|image_pad|>"


class ImageTextProcessor(ProcessorMixin):
    """Callable like `Qwen2VLProcessor(text=..., images=..., padding=True, return_tensors="pt")`.

    A `ProcessorMixin`, so diffusers' `QwenImageEditPipeline.from_pretrained(dir, processor=...)`
    accepts it in place of the `Qwen2VLProcessor` that model_index.json names.
    """

    def __init__(self, image_processor: Qwen2VLImageProcessorPil, tokenizer: Any, **_: Any):
        super().__init__(image_processor, tokenizer)

    @classmethod
    def load(cls, path: str | Path) -> "ImageTextProcessor":
        """From a processor folder (preprocessor_config.json + tokenizer files)."""
        return cls(Qwen2VLImageProcessorPil.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path)))

    def __call__(
        self,
        text: Sequence[str] | str,
        images: Any = None,
        padding: bool = True,
        return_tensors: str = "pt",
        **_: Any,
    ) -> BatchFeature:
        texts = [text] if isinstance(text, str) else list(text)
        vision: dict[str, Any] = {}
        if images is not None:
            vision = dict(self.image_processor(images=images, return_tensors=return_tensors))
            texts = self._expand_image_tokens(texts, vision["image_grid_thw"])
        encoded = self.tokenizer(texts, padding=padding, return_tensors=return_tensors)
        return BatchFeature({**encoded, **vision})

    def _expand_image_tokens(self, texts: list[str], grid_thw) -> list[str]:
        """Each `<|image_pad|>` becomes one token per merged vision patch, as Qwen2VLProcessor does."""
        merge = self.image_processor.merge_size**2
        counts = iter([int(g.prod()) // merge for g in grid_thw])
        placeholder = "\x00"  # never in a prompt; keeps already-expanded tokens from matching again
        out = []
        for t in texts:
            while IMAGE_TOKEN in t:
                t = t.replace(IMAGE_TOKEN, placeholder * next(counts), 1)
            out.append(t.replace(placeholder, IMAGE_TOKEN))
        return out
