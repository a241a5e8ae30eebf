"""Identify checkpoint files as family components and load them without a second copy.

Identification runs each component's detector over the file's header (keys + shapes, no
tensor read). Loading builds the module with its parameters on the meta device and assigns the
loaded tensors (`load_state_dict(assign=True)`), so weights are never held twice.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from diffsynth.errors import UserError
from diffsynth.models.header import CheckpointHeader, load_torch_state, read_header
from diffsynth.spec import FamilySpec
from diffsynth.types import CheckpointGroup

if TYPE_CHECKING:
    import torch

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "fp8": "float8_e4m3fn"}


def torch_dtype(name: str) -> torch.dtype:
    """`"bf16"` / `"bfloat16"` -> `torch.bfloat16`."""
    import torch

    return getattr(torch, DTYPES.get(name, name))


class UnrecognizedCheckpoint(UserError):
    """A checkpoint no component of the run's family recognises; `header` lets the CLI ask the
    other registered families whether it is theirs."""

    def __init__(self, message: str, header: CheckpointHeader) -> None:
        super().__init__(message)
        self.header = header


def identify(family: FamilySpec, source: str, files: Sequence[Path]) -> CheckpointGroup:
    """Which component of `family` the checkpoint made of `files` is (exactly one must match)."""
    header = read_header(files)
    if not header.tensors:
        raise UserError(f"{source}: checkpoint holds no tensors")
    matches = [c.name for c in family.components if c.detect(header)]
    if not matches:
        names = ", ".join(c.name for c in family.components)
        sample = ", ".join(sorted(header.tensors)[:3])
        raise UnrecognizedCheckpoint(f"{source}: matches no component of {family.name} ({names}); its keys start: {sample}", header)
    if len(matches) > 1:
        raise UserError(f"{source}: ambiguous, looks like several components: {', '.join(matches)}")
    return CheckpointGroup(component=matches[0], source=source, header=header)


def identify_all(
    family: FamilySpec, sources: Iterable[tuple[str, Sequence[Path]]]
) -> dict[str, CheckpointGroup]:
    """Identify every (source, files) pair; two checkpoints for one component is an error."""
    groups: dict[str, CheckpointGroup] = {}
    for source, files in sources:
        group = identify(family, source, files)
        expert = family.expert_component(group.component, groups) if group.component in groups else None
        if expert is not None:  # timestep experts: the n-th denoiser checkpoint is the n-th expert
            group = replace(group, component=expert)
        if group.component in groups:
            other = groups[group.component].source
            raise UserError(
                f"{source}: a second checkpoint for component {group.component!r} (first: {other})"
            )
        groups[group.component] = group
    return groups


def load_state_dict(
    files: Sequence[Path] | CheckpointGroup, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Load all shards into one state dict (memory-mapped where the format allows).

    `.pth`/`.bin` load with `weights_only=True`: arbitrary pickled objects are refused.
    """
    from safetensors.torch import load_file

    if isinstance(files, CheckpointGroup):
        files = files.files
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if path.suffix == ".safetensors":
            part = load_file(str(path))
        else:
            part = load_torch_state(path)
        for key, tensor in part.items():
            state[key] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
    return state


def init_args(cls: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `config` (a diffusers `config.json`: `_class_name`, `_diffusers_version`, keys
    of other versions, ...) that `cls`'s constructor takes, to call `cls(**init_args(cls, config))`."""
    import inspect

    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    return {k: v for k, v in config.items() if k in params}


def build_module(
    factory: Callable[[], torch.nn.Module],
    state_dict: dict[str, torch.Tensor],
    source: str | CheckpointGroup = "checkpoint",
    dtype: torch.dtype | None = None,
) -> torch.nn.Module:
    """Construct with parameters on the meta device, then assign the loaded tensors.

    `dtype` is the compute dtype floating tensors are cast to, one at a time while assigning.
    When `source` is a `CheckpointGroup` the core marked for FP8 storage (`--fp8_models`), the
    layers FP8 covers (`precision.fp8_layer_names`) are cast straight to FP8 instead, so the load
    never holds the module in the compute dtype (with memory-mapped files, the peak is about the
    FP8 size). Buffers computed in `__init__` (rotary tables, ...) stay real. Missing or
    unexpected keys are a `UserError` naming a few of them.
    """
    from accelerate import init_empty_weights

    name = source.source if isinstance(source, CheckpointGroup) else source
    fp8 = isinstance(source, CheckpointGroup) and source.storage == "fp8"
    with init_empty_weights(include_buffers=False):
        module = factory()
    expected = set(module.state_dict().keys())
    given = set(state_dict)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise UserError(f"{name}: weights do not fit {type(module).__name__}: {'; '.join(parts)}")
    if dtype is not None or fp8:
        state_dict = _cast_one_by_one(module, state_dict, dtype, fp8)
    module.load_state_dict(state_dict, strict=True, assign=True)
    # assign=True gives every name its own Parameter; tie what the model shares again (T5's
    # `shared` / `encoder.embed_tokens`), or the device would hold it twice
    tie_weights = getattr(module, "tie_weights", None)
    if callable(tie_weights):
        tie_weights()
    if fp8:
        from diffsynth.training.precision import store_in_fp8

        store_in_fp8(module, dtype if dtype is not None else next(iter(state_dict.values())).dtype)
    return module.eval()


def _cast_one_by_one(
    module: torch.nn.Module, state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None, fp8: bool
) -> dict[str, torch.Tensor]:
    """A new dict with each floating tensor in its final dtype; each source tensor is dropped
    from `state_dict` as soon as it is converted, so only one extra tensor is alive at a time."""
    from diffsynth.training.precision import FP8, fp8_tensor_names

    in_fp8 = fp8_tensor_names(module) if fp8 else set()
    out: dict[str, torch.Tensor] = {}
    for key in list(state_dict):
        tensor = state_dict.pop(key)
        target = FP8 if key in in_fp8 else dtype
        cast = tensor.to(target) if target is not None and tensor.is_floating_point() else tensor
        if fp8 and cast.data_ptr() == tensor.data_ptr():
            cast = cast.clone()  # a view would keep the whole memory-mapped file resident
        out[key] = cast
    return out
