"""`diffsynth sample FAMILY [options]`: generate images (or a video) with the family's real
inference pipeline, from the same model sources as `train`, with LoRA files applied through the
pipeline's own `load_lora_weights` (what diffusers and ComfyUI users get).

The command knows no pipeline: it resolves and loads the modules exactly as `train` does
(`resolve_model_files`, the family's `load_pipeline`) and hands them with a `SampleRequest` to
the family's `sample_images` hook.
"""

from __future__ import annotations

import inspect
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from diffsynth.cli.train_cmd import family_app, option_parameter
from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.plugins import FamilyRegistry
from diffsynth.spec import FamilySpec

#: `train`'s model flags that `sample` takes too (same names, types, defaults and help).
MODEL_FLAGS = ("model_paths", "model_id_with_origin_paths", "tokenizer_path", "processor_path", "variant", "download_source", "dtype")
MODELS_PANEL, SAMPLING_PANEL, LORA_PANEL, INPUTS_PANEL, OUTPUT_PANEL = "Models", "Sampling", "LoRA", "Inputs", "Output"
IMAGE_SUFFIX, VIDEO_SUFFIX = ".png", ".mp4"


def _option(name: str, kind: Any, default: Any, help: str, panel: str, flag: str | None = None) -> inspect.Parameter:
    extra: dict[str, Any] = {"metavar": ""} if kind is bool else {}
    inner = [a for a in typing.get_args(kind) if a is not type(None)]
    if inner and typing.get_origin(inner[0]) is list:  # repeatable: shown as its item type
        extra["metavar"] = f"<{typing.get_args(inner[0])[0].__name__}>"
    option = typer.Option(flag or f"--{name.replace('_', '-')}", help=help, rich_help_panel=panel, show_default=default is not None, **extra)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])


def sample_parameters(family: FamilySpec) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: f for f in TrainConfig.__dataclass_fields__.values()}
    params = [
        _option("prompt", Optional[list[str]], None, "Prompt to generate (repeat for several; each gets --seed).", SAMPLING_PANEL),
        _option("prompts_file", Optional[str], None, "Text file of prompts, one per line (blank lines skipped).", SAMPLING_PANEL),
        _option("negative_prompt", Optional[str], None, "Negative prompt for classifier-free guidance (default: the pipeline's).", SAMPLING_PANEL),
        _option("height", Optional[int], None, f"Image height in pixels, a multiple of {family.resolution_multiple} (default: the pipeline's).", SAMPLING_PANEL),
        _option("width", Optional[int], None, f"Image width in pixels, a multiple of {family.resolution_multiple} (default: the pipeline's).", SAMPLING_PANEL),
    ]
    if family.makes_videos:
        params.append(_option("num_frames", Optional[int], None, "Video frames, 1 + 4k (default: the pipeline's).", SAMPLING_PANEL))
    params += [
        _option("steps", Optional[int], None, "Denoising steps (default: the pipeline's).", SAMPLING_PANEL),
        _option("guidance", Optional[float], None, "Embedded (distilled) guidance, e.g. FLUX.1-dev's guidance_scale (default: the pipeline's).", SAMPLING_PANEL),
        _option("cfg_scale", Optional[float], None, "Classifier-free guidance scale (Qwen-Image's true_cfg_scale, Wan's guidance_scale; default: the family's).", SAMPLING_PANEL),
        _option("seed", int, 0, "Seed of the initial noise (the same seed gives the same pixels).", SAMPLING_PANEL),
        _option("lora", Optional[list[str]], None, "LoRA file to apply (repeat for several), loaded with the pipeline's own load_lora_weights.", LORA_PANEL),
        _option("lora_scale", Optional[list[float]], None, "Scale of the LoRA(s): one value for all, or one per --lora (default 1.0).", LORA_PANEL),
    ]
    for extra in family.extra_inputs:
        params.append(_option(extra.name, Optional[list[str]], None, f"Image file: {extra.description} (repeat for several).", INPUTS_PANEL))
    params.append(
        _option(
            "output", Optional[str], None,
            "File to write: .png for an image, .mp4 for a video (default sample.png / sample.mp4); several prompts "
            "write <name>-0, <name>-1, ...",
            OUTPUT_PANEL,
        )
    )
    for name in MODEL_FLAGS:
        f = fields[name]
        params.append(option_parameter(name, hints[name], f.default, f.metadata["help"], MODELS_PANEL))
    return params


def make_sample_command(registry: FamilyRegistry, family: FamilySpec) -> Callable[..., None]:
    params = sample_parameters(family)

    def command(**kwargs: Any) -> None:
        run_sample(registry, family, kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


# -- checks that need no model --------------------------------------------------------------------


def read_prompts(prompts: list[str] | None, prompts_file: str | None) -> tuple[str, ...]:
    found = list(prompts or [])
    if prompts_file:
        path = Path(prompts_file)
        if not path.is_file():
            raise UserError(f"--prompts_file {prompts_file}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--prompts_file {prompts_file}: not a UTF-8 text file ({exc})") from None
        found += [line.strip() for line in text.splitlines() if line.strip()]
    if not found:
        raise UserError("--prompt/--prompts_file: give at least one prompt")
    return tuple(found)


def check_size(family: FamilySpec, name: str, value: int | None) -> None:
    if value is None:
        return
    multiple = family.resolution_multiple
    if value < multiple or value % multiple:
        raise UserError(f"--{name}: expected a positive multiple of {multiple} for {family.name}, got {value}")


def lora_files(paths: list[str] | None, scales: list[float] | None):
    from diffsynth.types import LoraFile

    paths, scales = list(paths or []), list(scales or [])
    if scales and not paths:
        raise UserError("--lora_scale: given without --lora")
    if len(scales) not in (0, 1, len(paths)):
        raise UserError(f"--lora_scale: give one value, or one per --lora ({len(paths)} --lora, {len(scales)} --lora_scale)")
    if len(scales) <= 1:
        scales = [scales[0] if scales else 1.0] * len(paths)
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"--lora {path}: no such file")
    return tuple(LoraFile(p, s) for p, s in zip(paths, scales))


def read_images(flag: str, paths: list[str]) -> list[Any]:
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"--{flag} {path}: no such file")
        try:
            with Image.open(path) as img:
                images.append(img.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"--{flag} {path}: not an image file ({exc})") from None
    return images


def output_suffix(family: FamilySpec, output: str | None, num_frames: int | None) -> str | None:
    """The suffix the output must have, when the flags already say it (None: decided by the result)."""
    if output is None:
        return None
    suffix = Path(output).suffix.lower()
    if suffix not in (IMAGE_SUFFIX, VIDEO_SUFFIX):
        raise UserError(f"--output {output}: expected a {IMAGE_SUFFIX} (image) or {VIDEO_SUFFIX} (video) file name")
    if suffix == VIDEO_SUFFIX and not family.makes_videos:
        raise UserError(f"--output {output}: {family.name} generates images; expected a {IMAGE_SUFFIX} file name")
    if suffix == IMAGE_SUFFIX and family.makes_videos and num_frames != 1:
        raise UserError(f"--output {output}: {family.name} generates a video; expected a {VIDEO_SUFFIX} file name (or --num_frames 1)")
    return suffix


# -- the run ---------------------------------------------------------------------------------------


def run_sample(registry: FamilyRegistry, family: FamilySpec, kw: dict[str, Any]) -> list[Path]:
    """Everything `diffsynth sample FAMILY` does after parsing; returns the files written."""
    prompts = read_prompts(kw["prompt"], kw["prompts_file"])
    for name in ("height", "width"):
        check_size(family, name, kw[name])
    num_frames = kw.get("num_frames")
    if num_frames is not None and (num_frames < 1 or (num_frames - 1) % 4):
        raise UserError(f"--num_frames: expected 1 + 4k frames (1, 5, 9, ..., 81), got {num_frames}")
    if kw["steps"] is not None and kw["steps"] < 1:
        raise UserError(f"--steps: expected a positive integer, got {kw['steps']}")
    if kw["dtype"] not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"--dtype: expected auto, fp32, bf16 or fp16, got {kw['dtype']!r}")
    loras = lora_files(kw["lora"], kw["lora_scale"])
    suffix = output_suffix(family, kw["output"], num_frames)
    inputs = {e.name: read_images(e.name, kw[e.name]) for e in family.extra_inputs if kw.get(e.name)}

    from diffsynth.types import SampleRequest

    request = SampleRequest(
        prompts=prompts, negative_prompt=kw["negative_prompt"], height=kw["height"], width=kw["width"],
        num_frames=num_frames, steps=kw["steps"], guidance=kw["guidance"], cfg_scale=kw["cfg_scale"],
        seed=kw["seed"], inputs=inputs, loras=loras,
    )  # fmt: skip
    config = TrainConfig(family=family.name, extra_inputs=",".join(inputs) or None, **{n: kw[n] for n in MODEL_FLAGS})
    result = generate(registry, family, config, request)
    return write_result(result, kw["output"], suffix)


def generate(registry: FamilyRegistry, family: FamilySpec, config: TrainConfig, request):
    """Load the family's modules as `train` does, put them on the device, and run its `sample_images`."""
    import torch

    from diffsynth.models.resolve import resolve_model_files
    from diffsynth.training.family_hooks import FamilyHooks
    from diffsynth.training.flag_checks import resolve_dtype, use_one_cpu_thread
    from diffsynth.types import RunContext

    models = resolve_model_files(family, config)  # headers only: a bad source fails before any load
    config.dtype = resolve_dtype(config.dtype)
    use_one_cpu_thread()
    context = RunContext.for_run(config, family.options_value())
    pipeline = FamilyHooks(registry, family).load_pipeline(models, context)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for module in pipeline.modules.values():
        module.requires_grad_(False).eval().to(device)
    pipeline.device = device
    with torch.no_grad():
        return FamilyHooks(registry, family).sample_images(pipeline, request, context)


def output_paths(output: str | None, suffix: str, count: int) -> list[Path]:
    path = Path(output) if output else Path(f"sample{suffix}")
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(count)]


def write_result(result, output: str | None, suffix: str | None) -> list[Path]:
    is_video = any(len(frames) > 1 for frames in result.frames)
    wanted = VIDEO_SUFFIX if is_video else IMAGE_SUFFIX
    if suffix is not None and suffix != wanted and is_video:
        raise UserError(f"--output {output}: the result is a video; expected a {VIDEO_SUFFIX} file name")
    suffix = suffix or wanted
    paths = output_paths(output, suffix, len(result.frames))
    for path, frames in zip(paths, result.frames):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")
        if suffix == VIDEO_SUFFIX:
            from diffsynth.sampling import write_video

            write_video(tmp, frames, result.fps or 16)
        else:
            frames[0].save(tmp, format="PNG")
        os.replace(tmp, path)
        typer.echo(f"wrote {path}")
    return paths


def build_sample_app(registry: FamilyRegistry) -> typer.Typer:
    def command_help(family: FamilySpec) -> str:
        what = "a video" if family.makes_videos else "images"
        return f"Generate {what} with {family.name}'s inference pipeline: {family.description}"

    return family_app(
        registry, "Generate images or videos with a family's inference pipeline (and your LoRA).", command_help,
        make_sample_command,
    )  # fmt: skip
