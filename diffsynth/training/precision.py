"""Memory: FP8 weight storage, and activations kept in CPU memory.

FP8 weight storage: a module's weights kept in float8_e4m3fn and computed in the training dtype.

Works with peft LoRA (including backward) only in this order, checked on CPU: cast the base to
the compute dtype -> enable layer-wise casting -> add the LoRA -> keep the LoRA parameters in
fp32 (peft would create them in fp8). `apply_plan` follows it.
"""

from __future__ import annotations

import contextlib

import torch

FP8 = torch.float8_e4m3fn


def store_in_fp8(module: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """Store `module`'s layer weights in FP8; each layer is upcast to `compute_dtype` just for
    its own forward (diffusers' layer-wise casting hook, which works on any nn.Module)."""
    from diffusers.hooks import apply_layerwise_casting

    module.to(compute_dtype)
    apply_layerwise_casting(module, storage_dtype=FP8, compute_dtype=compute_dtype)


def is_fp8(module: torch.nn.Module) -> bool:
    return any(p.dtype == FP8 for p in module.parameters())


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes held by parameters and buffers (what the weights cost in memory)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def activations_offloaded(enabled: bool):
    """Keep tensors saved for backward (with checkpointing: the block inputs) in CPU memory."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available())
