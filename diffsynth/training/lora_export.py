"""LoRA files in the key format other tools load, for a family's `split_state_dict`.

Most loaders (diffusers' `load_lora_weights`, ComfyUI) agree on one shape: a prefix, the model's
module name, `.lora_A.weight` / `.lora_B.weight`, and a scalar `<module>.alpha` giving the scale
`alpha / rank`. Families differ only in the prefix and in whether module names are translated
(e.g. back to the original repo's names); they describe that with a `LoraKeyFormat`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import PluginError
from diffsynth.types import OutputFile, TrainedWeights

LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


@dataclass(frozen=True)
class LoraKeyFormat:
    """`<prefix><rename(module)>.lora_A.weight` + `.lora_B.weight` + `.alpha` per module."""

    prefix: str
    #: The module name as the file should spell it, from the denoiser's (diffusers) name.
    rename: Callable[[str], str] | None = None
    description: str = ""

    def keys(self, peft_tensors: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
        """peft names without adapter (`blocks.0.attn.to_q.lora_A.weight`) -> this format."""
        out: dict[str, torch.Tensor] = {}
        modules = set()
        for key, tensor in peft_tensors.items():
            if not key.endswith(LORA_SUFFIXES):
                raise PluginError(f"unexpected LoRA tensor {key!r} (expected *.lora_A.weight / *.lora_B.weight)")
            module, part, _ = key.rsplit(".", 2)
            name = self.rename(module) if self.rename else module
            out[f"{self.prefix}{name}.{part}.weight"] = tensor.contiguous()
            modules.add(name)
        for name in sorted(modules):
            out[f"{self.prefix}{name}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
        return out


def lora_output_files(
    weights: TrainedWeights, config: TrainConfig, family: str, denoiser: str, key_format: LoraKeyFormat
) -> list[OutputFile] | None:
    """One file per trained component: the denoiser's LoRA in `key_format`, other components with
    their own keys (`-<component>` suffixes when there are several). None for full fine-tunes,
    which the core's default writes with the modules' own (diffusers-loadable) keys."""
    if weights.kind != "lora" or denoiser not in weights.tensors:
        return None
    alpha = float(weights.lora_alpha if weights.lora_alpha is not None else config.effective_lora_alpha())
    single = len(weights.tensors) == 1
    files = []
    for component, tensors in weights.tensors.items():
        metadata = {
            "diffsynth_family": family,
            "diffsynth_component": component,
            "diffsynth_kind": "lora",
            "lora_rank": str(weights.lora_rank),
            "lora_alpha": str(alpha),
        }
        if component == denoiser:
            tensors = key_format.keys(tensors, alpha)
            metadata["lora_key_format"] = key_format.description
        files.append(OutputFile("" if single else f"-{component}", tensors, metadata))
    return files
