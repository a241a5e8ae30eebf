"""Helpers for a family's `sample_images` (see docs/plugins.md): the LoRA files of a request
loaded through the pipeline's own `load_lora_weights`, seeded generators, and frames from a
pipeline's output.

Nothing here knows a particular pipeline; it uses only diffusers' LoRA-loader mixin API
(`load_lora_weights`, `get_list_adapters`, `set_adapters`, `delete_adapters`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from diffsynth.errors import UserError
from diffsynth.types import LoraFile

ADAPTER_PREFIX = "diffsynth_sample_"


@contextmanager
def loras_applied(pipe: Any, loras: tuple[LoraFile, ...] | list[LoraFile]) -> Iterator[Any]:
    """Load each file with `pipe.load_lora_weights` (as a user of diffusers would), activate them
    with their scales, and delete the adapters again on exit, leaving the modules as they were."""
    names: list[str] = []
    try:
        for i, lora in enumerate(loras):
            name = f"{ADAPTER_PREFIX}{i}"
            if not Path(lora.path).is_file():
                raise UserError(f"--lora {lora.path}: no such file")
            before = _adapters(pipe)
            try:
                pipe.load_lora_weights(lora.path, adapter_name=name)
            except UserError:
                raise
            except Exception as exc:  # diffusers' converters raise many kinds; the message says which
                raise UserError(
                    f"--lora {lora.path}: {type(pipe).__name__}.load_lora_weights could not load it "
                    f"({' '.join(str(exc).split())[:300]})"
                ) from exc
            if name not in _adapters(pipe) - before:
                raise UserError(f"--lora {lora.path}: none of its weights match this model's modules (a LoRA of another model?)")
            names.append(name)
        if names:
            pipe.set_adapters(names, adapter_weights=[float(lora.scale) for lora in loras])
        yield pipe
    finally:
        if names:
            pipe.delete_adapters(names)


def _adapters(pipe: Any) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def generator(seed: int):
    """A CPU generator seeded with `seed`: the same noise on every device (diffusers draws on the
    generator's device and moves the noise)."""
    import torch

    return torch.Generator("cpu").manual_seed(int(seed))


def pil_frames(images: Any) -> list[Any]:
    """A pipeline's output for one prompt (a PIL image, a list of them, or an array of frames
    (F, H, W, 3) in [0, 1]) -> a list of RGB PIL images."""
    import numpy as np
    from PIL import Image

    if isinstance(images, Image.Image):
        return [images.convert("RGB")]
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], Image.Image):
        return [i.convert("RGB") for i in images]
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return [Image.fromarray(frame) for frame in array]


def write_video(path: Path, frames: list[Any], fps: int) -> None:
    """H.264 MP4 (yuv420p, what every player opens) with PyAV's bundled FFmpeg."""
    import av
    import numpy as np

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "threads": "1"}
        for frame in frames:
            packet = stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame.convert("RGB")), format="rgb24"))
            container.mux(packet)
        container.mux(stream.encode())


def without_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """The request's values that were given (None means: the pipeline's own default)."""
    return {k: v for k, v in values.items() if v is not None}


def generate_each_prompt(
    pipe: Any, request: Any, kwargs: dict[str, Any], frames_of: Callable[[Any], Any],
    prompt_arguments: Callable[[str], dict[str, Any]] | None = None,
) -> list[list[Any]]:  # fmt: skip
    """Run a diffusers pipeline once per prompt of `request` (seeded by `request.seed`, so an image
    does not depend on its prompt's position), with the request's LoRAs applied; `frames_of`
    picks one output's frames (`lambda out: out.images[0]`), `prompt_arguments` turns a prompt
    into the call's arguments (default `prompt=`)."""
    frames = []
    with loras_applied(pipe, request.loras):
        for prompt in request.prompts:
            arguments = prompt_arguments(prompt) if prompt_arguments else {"prompt": prompt}
            out = pipe(generator=generator(request.seed), **arguments, **kwargs)
            frames.append(pil_frames(frames_of(out)))
    return frames


def flow_match_scheduler_config(**overrides: Any) -> dict[str, Any]:
    """diffusers' `FlowMatchEulerDiscreteScheduler` config with a resolution-dependent shift (mu
    from the image's token count, diffusers' `calculate_shift` constants, which `--timestep_sampling
    resolution_shift` uses too) and a static shift of 3; `overrides` replace values."""
    from diffsynth.training.timesteps import BASE_SEQ_LEN, BASE_SHIFT, MAX_SEQ_LEN, MAX_SHIFT

    return {
        "_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": BASE_SEQ_LEN, "base_shift": BASE_SHIFT,
        "max_image_seq_len": MAX_SEQ_LEN, "max_shift": MAX_SHIFT, "num_train_timesteps": 1000, "shift": 3.0,
        "use_dynamic_shifting": True, **overrides,
    }  # fmt: skip
