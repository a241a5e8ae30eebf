"""Fake tensors for a pipeline built on the meta device: shapes and dtypes, no data.

Parameters and buffers become `FakeTensor`s on a fake CPU device, so the families' own code
(`.to(pipeline.device)`, dtype casts, tokenizer outputs) runs unchanged. Small tensors made
from data (token ids, attention masks) are kept as constants, so code that looks at their
values (`mask.all()`, `hidden[mask]`, sequence lengths) sees the real values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch._subclasses import fake_tensor
from torch._subclasses.fake_tensor import FakeTensorMode

#: Tensors of at most this many elements built from data (`torch.tensor(...)`: token ids,
#: masks) keep their values; torch's default (1) would make a mask's values unknown.
CONSTANT_ELEMENTS = 1 << 16


@contextlib.contextmanager
def fake_mode() -> Iterator[FakeTensorMode]:
    """A `FakeTensorMode` (real tensors allowed as inputs) with data-made constants kept.

    `Module.to` on fake parameters (FP8 layer-wise casting does it every forward) swaps tensors,
    which `torch.utils.swap_tensors` refuses when a weak reference (the mode's conversion cache)
    or autograd (a weight saved for backward) holds one; then `.data` is replaced instead, what
    `Module.to` does for real tensors."""
    previous_limit, previous_swap = fake_tensor.CONSTANT_NUMEL_LIMIT, torch.utils.swap_tensors
    fake_tensor.CONSTANT_NUMEL_LIMIT = CONSTANT_ELEMENTS
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:

            def swap_tensors(t1, t2):
                try:
                    return previous_swap(t1, t2)
                except RuntimeError:
                    t1.data = t2.data

            torch.utils.swap_tensors = swap_tensors
            yield mode
    finally:
        fake_tensor.CONSTANT_NUMEL_LIMIT, torch.utils.swap_tensors = previous_limit, previous_swap


def _fake_like(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fake tensor like `tensor` on `device`, made from a meta tensor (allocates nothing).
    Made directly, not by a factory op under the mode, so that no weak reference points at it:
    `Module.to` swaps fake parameters (`torch.utils.swap_tensors`), which refuses those."""
    mode = torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE)
    meta = tensor if tensor.device.type == "meta" else torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta")
    return fake_tensor.FakeTensor(mode, meta.detach(), device)


def make_fake(module: torch.nn.Module, device: torch.device, done: dict[int, torch.Tensor] | None = None) -> None:
    """Replace `module`'s parameters and buffers (meta or real) by fake tensors on `device`, in
    place, keeping `requires_grad` and ties (a tensor shared by two modules stays shared).
    Call inside `fake_mode()`."""
    done = {} if done is None else done
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            if id(param) not in done:
                done[id(param)] = torch.nn.Parameter(_fake_like(param, device), requires_grad=param.requires_grad)
            sub._parameters[name] = done[id(param)]
        for name, buf in list(sub._buffers.items()):
            if buf is None:
                continue
            if id(buf) not in done:
                done[id(buf)] = _fake_like(buf, device)
            sub._buffers[name] = done[id(buf)]


class UnknownValuesAreOne(torch.utils._python_dispatch.TorchDispatchMode):
    """Reading a number out of a fake tensor whose data is unknown (`bool(mask.all())`,
    `.item()`) gives 1 (True) instead of failing: the value a single, unpadded sample has
    (an attention mask of ones). Enter it inside `fake_mode()`."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            tensor = args[0]
            if isinstance(tensor, fake_tensor.FakeTensor) and tensor.constant is None:
                return True if tensor.dtype == torch.bool else (1.0 if tensor.is_floating_point() else 1)
        return func(*args, **(kwargs or {}))


def tensor_attributes(module: torch.nn.Module, mode: FakeTensorMode) -> list[torch.Tensor]:
    """The fake tensors of the tensors a module keeps as plain attributes, neither parameters
    nor buffers (Qwen-Image's rotary tables `pos_freqs`/`neg_freqs`). Made in `__init__` as real
    CPU tensors, they stay so; an op under the mode converts them to the fake returned here as
    long as it lives (the converter's memo), so hold the list while simulating. On a GPU the
    model copies them to the device on first use and keeps the copy (diffusers caches it), so a
    plan counts them as device memory from the start."""
    return [mode.from_tensor(v) for sub in module.modules() for v in vars(sub).values() if isinstance(v, torch.Tensor)]
