"""What sequence a family's transformer is given: one prediction with a hook on its input
embedder, for tests that reference tokens (edit, Kontext) join the target's."""

from __future__ import annotations

from typing import Any


def predict_flow_seeing_lengths(plugin: Any, pipe: Any, inputs: Any, embedder: Any) -> tuple[Any, list[int]]:
    """`plugin.predict_flow(pipe, inputs, noise, t=0.5)` without gradients (noise like the
    latents) and the sequence lengths (dim 1 of the first argument) `embedder` was called with
    meanwhile, one entry a call."""
    import torch

    seen: list[int] = []
    hook = embedder.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        with torch.no_grad():
            out = plugin.predict_flow(pipe, inputs, torch.randn_like(inputs.latents), torch.tensor([0.5]))
    finally:
        hook.remove()
    return out, seen
