"""Memory: FP8 weight storage, and activations kept in CPU memory.

FP8 weight storage: a module's layer weights (Linear, Conv, Embedding) kept in float8_e4m3fn
and upcast to the compute dtype just for their own forward (diffusers' layer-wise casting hook,
which works on any nn.Module). Norms, embeddings of positions/patches, the layers a module marks
as precision-sensitive, and parameters outside such layers stay in the compute dtype.

Works with peft LoRA (including backward) only in this order, checked on CPU: FP8 storage ->
add the LoRA -> keep the LoRA parameters in fp32 (peft would create them in fp8). `apply_plan`
follows it. `build_module` can store FP8 while loading (`fp8_layer_names` says which layers),
so an FP8 load never holds the whole model in the compute dtype.
"""

from __future__ import annotations

import contextlib
import re

import torch

FP8 = torch.float8_e4m3fn


def fp8_skip_patterns(module: torch.nn.Module) -> tuple[str, ...]:
    """Name patterns of layers kept in the compute dtype: diffusers' defaults (norms, position
    and patch embeddings, proj_in/out), the model's own `_skip_layerwise_casting_patterns`, and
    transformers' `_keep_in_fp32_modules` (e.g. T5's `wo`, whose input the model casts to the
    weight's dtype)."""
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    patterns = list(DEFAULT_SKIP_MODULES_PATTERN)
    patterns += list(getattr(module, "_skip_layerwise_casting_patterns", None) or ())
    for name in getattr(module, "_keep_in_fp32_modules", None) or ():
        patterns.append(rf"(^|\.){re.escape(name)}($|\.)")
    return tuple(dict.fromkeys(patterns))


def fp8_layer_names(module: torch.nn.Module) -> list[str]:
    """The sub-modules that FP8 storage covers: supported layers not under a skipped name
    (the same walk as diffusers' `apply_layerwise_casting`). Works on a meta-device module."""
    from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS

    patterns = fp8_skip_patterns(module)
    found: list[str] = []

    def walk(child: torch.nn.Module, prefix: str) -> None:
        if prefix and any(re.search(p, prefix) for p in patterns):
            return
        if isinstance(child, _GO_LC_SUPPORTED_PYTORCH_LAYERS):
            found.append(prefix)
            return
        for name, sub in child.named_children():
            walk(sub, f"{prefix}.{name}" if prefix else name)

    walk(module, "")
    return found


def fp8_tensor_names(module: torch.nn.Module) -> set[str]:
    """State-dict keys stored in FP8 (the parameters and buffers of `fp8_layer_names`)."""
    names: set[str] = set()
    for layer in fp8_layer_names(module):
        sub = module.get_submodule(layer)
        names.update(f"{layer}.{key}" for key, t in sub.state_dict(keep_vars=True).items() if t.is_floating_point())
    return names


def store_in_fp8(module: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """Store `module`'s layer weights in FP8, computed in `compute_dtype`. Idempotent: a module
    loaded straight into FP8 (`build_module(..., fp8=True)`) only gets its hooks here.

    Layer by layer, so converting never holds a second full copy of the module."""
    from diffusers.hooks.layerwise_casting import _is_layerwise_casting_active, apply_layerwise_casting

    if _is_layerwise_casting_active(module):
        return
    in_fp8 = fp8_tensor_names(module)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if name not in in_fp8 and tensor.is_floating_point() and tensor.dtype != compute_dtype:
                tensor.data = tensor.data.to(compute_dtype)
    apply_layerwise_casting(module, storage_dtype=FP8, compute_dtype=compute_dtype,
                            skip_modules_pattern=fp8_skip_patterns(module))  # fmt: skip


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes held by parameters and buffers (what the weights cost in memory)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def activations_offloaded(enabled: bool):
    """Keep tensors saved for backward (with checkpointing: the block inputs) in CPU memory."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available())
