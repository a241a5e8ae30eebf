"""For a family's `plan_pipeline`: its real-size modules on the meta device, without weights.

    from diffsynth.plan.meta import empty_module
    dit = empty_module(lambda: QwenImageTransformer2DModel(**REAL_DIT), context.torch_dtype)

Built as `build_module` builds them (`init_empty_weights(include_buffers=False)`, shared weights
tied again with the model's `tie_weights`) and cast as it casts a loaded state dict (every floating parameter and persistent buffer to the compute dtype),
so the planned module holds what the loaded one would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def empty_module(factory: Callable[[], torch.nn.Module], dtype: torch.dtype) -> torch.nn.Module:
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        module = factory()
    tie_weights = getattr(module, "tie_weights", None)
    if callable(tie_weights):  # as build_module does: T5's shared embedding once
        tie_weights()
    persistent = set(module.state_dict(keep_vars=True))
    with torch.no_grad():
        for param in module.parameters():
            if param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)
        for name, buf in module.named_buffers():
            if name in persistent and buf.is_floating_point() and buf.dtype != dtype:
                owner, _, attr = name.rpartition(".")
                module.get_submodule(owner)._buffers[attr] = buf.to(dtype)
    return module.eval()
