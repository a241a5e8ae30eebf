"""`--blocks_to_swap N`: the frozen weights of the denoiser's last N repeated blocks live in host
memory (pinned on a GPU machine) and are copied to the device just before each of those blocks
runs, in forward and in the recomputation of backward (gradient checkpointing), then dropped.

Only frozen parameters move: the LoRA's parameters, their gradients and optimizer state stay on
the device, and buffers too (they are small, and DDP broadcasts them). FP8-stored weights move as
their FP8 bytes (the layer-wise casting hooks upcast them after the copy). A family declares its
repeated blocks in `FamilySpec.repeated_blocks`; nothing else is family-specific.

Copies are made on the current stream (from pinned memory, so the host is not blocked); a side
stream that prefetches the next block has not been measured on a GPU yet and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch

from diffsynth.errors import UserError


@dataclass
class BlockSwap:
    """The swapped blocks of one module and their frozen weights' host copies."""

    device: torch.device
    #: per swapped block: (parameter, host copy) of each frozen parameter
    host: dict[torch.nn.Module, list[tuple[torch.nn.Parameter, torch.Tensor]]] = field(default_factory=dict)
    handles: list = field(default_factory=list)

    @property
    def host_parameters(self) -> set[torch.nn.Parameter]:
        return {p for weights in self.host.values() for p, _ in weights}

    def load(self, block: torch.nn.Module, *_: object) -> None:
        for param, host in self.host[block]:
            param.data = host.to(self.device, non_blocking=True, copy=True)

    def unload(self, block: torch.nn.Module, *_: object) -> None:
        for param, host in self.host[block]:
            param.data = host


def repeated_blocks(module: torch.nn.Module, paths: tuple[str, ...], family: str) -> list[torch.nn.Module]:
    """The blocks of every `ModuleList` named in `paths`, in order."""
    if not paths:
        raise UserError(f"--blocks_to_swap: {family} does not declare its repeated blocks (FamilySpec.repeated_blocks)")
    blocks: list[torch.nn.Module] = []
    for path in paths:
        blocks += list(cast(torch.nn.ModuleList, module.get_submodule(path)))
    return blocks


def swap_blocks(module: torch.nn.Module, paths: tuple[str, ...], count: int, device: torch.device, family: str) -> BlockSwap:
    """Keep the frozen weights of the last `count` blocks in host memory and hook those blocks so
    the weights are on `device` only while they run. Call before moving `module` to `device` (then
    move it with `to_device_except`), so the full model is never on the device at once."""
    blocks = repeated_blocks(module, paths, family)
    if not 0 < count < len(blocks):
        raise UserError(f"--blocks_to_swap {count}: expected 1 to {len(blocks) - 1} ({family}'s denoiser has {len(blocks)} blocks)")
    swap = BlockSwap(device)
    pin = device.type == "cuda"
    for block in blocks[len(blocks) - count:]:
        weights = []
        for param in block.parameters():
            if not param.requires_grad:
                host = param.data.to("cpu", copy=True)
                host = host.pin_memory() if pin else host
                param.data = host
                weights.append((param, host))
        swap.host[block] = weights
        swap.handles.append(block.register_forward_pre_hook(swap.load))
        swap.handles.append(block.register_forward_hook(swap.unload))
    return swap


def to_device_except(module: torch.nn.Module, device: torch.device, keep: set[torch.nn.Parameter]) -> None:
    """`module.to(device)` for every parameter and buffer but those in `keep`."""
    with torch.no_grad():
        for param in module.parameters():
            if param not in keep:
                param.data = param.data.to(device)
        for name, buffer in list(module.named_buffers()):
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            owner._buffers[leaf] = buffer.to(device)


def swap_for_run(count: int, family, module: torch.nn.Module, accelerator) -> BlockSwap | None:
    """`--blocks_to_swap count` on the denoiser `module` of `family` (a FamilySpec), before it is
    moved to `accelerator.device`; None when no block is swapped."""
    if not count:
        return None
    kind = str(accelerator.distributed_type)
    if "FSDP" in kind or "DEEPSPEED" in kind:
        raise UserError(f"--blocks_to_swap does not work under {kind.rsplit('.', 1)[-1]}: it shards and moves the "
                        "weights itself; use one process or DDP (each process swaps its own copy)")  # fmt: skip
    swap = swap_blocks(module, family.repeated_blocks, count, accelerator.device, family.name)
    host = swap.host_parameters
    ignored = [name for name, p in module.named_parameters() if p in host]
    # frozen and identical on every process: DDP need not broadcast them (and NCCL cannot from the CPU)
    torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignored)
    return swap
