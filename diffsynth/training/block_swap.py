"""`--blocks_to_swap N`: the frozen weights of the denoiser's last N repeated blocks live in host
memory (pinned on a GPU machine) and are copied to the device just before each of those blocks
runs, in forward and in the recomputation of backward (gradient checkpointing), then dropped.

Only frozen parameters move: the LoRA's parameters, their gradients and optimizer state stay on
the device, and buffers too (they are small, and DDP broadcasts them). FP8-stored weights move as
their FP8 bytes (the layer-wise casting hooks upcast them after the copy). A family declares its
repeated blocks in `FamilySpec.repeated_blocks`; nothing else is family-specific.

Prefetch: when a block starts, the next swapped block in the direction of travel (ascending in
forward, descending in backward's recomputation) is copied ahead, on a side CUDA stream, so the
copy overlaps the running block's compute; at most one block is fetched ahead. Without CUDA the
same bookkeeping runs with plain copies (that is what the CPU tests check).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch

from diffsynth.errors import UserError


@dataclass
class Fetched:
    """One block's weights copied ahead: the device copies and the side stream's event."""

    copies: list[torch.Tensor]
    done: torch.cuda.Event | None


@dataclass
class BlockSwap:
    """The swapped blocks of one module, their frozen weights' host copies, and the prefetch state."""

    device: torch.device
    #: every repeated block, in forward order (the unswapped ones too: they drive the prefetch)
    blocks: list[torch.nn.Module] = field(default_factory=list)
    index: dict[torch.nn.Module, int] = field(default_factory=dict)
    #: per swapped block: (parameter, host copy) of each frozen parameter
    host: dict[torch.nn.Module, list[tuple[torch.nn.Parameter, torch.Tensor]]] = field(default_factory=dict)
    handles: list = field(default_factory=list)
    prefetch: bool = True
    stream: torch.cuda.Stream | None = None
    ahead: dict[torch.nn.Module, Fetched] = field(default_factory=dict)
    #: swapped blocks whose weights are on the device now
    loaded: set[torch.nn.Module] = field(default_factory=set)
    last: int = -1
    direction: int = 1
    #: copies made (a block fetched ahead and then used counts once): a test's window into the prefetch
    copies: int = 0
    used_ahead: int = 0

    @property
    def host_parameters(self) -> set[torch.nn.Parameter]:
        return {p for weights in self.host.values() for p, _ in weights}

    def copy(self, block: torch.nn.Module) -> Fetched:
        self.copies += 1
        weights = self.host[block]
        if self.stream is None:
            return Fetched([host.to(self.device, non_blocking=True, copy=True) for _, host in weights], None)
        with torch.cuda.stream(self.stream):
            copies = [host.to(self.device, non_blocking=True, copy=True) for _, host in weights]
            done = torch.cuda.Event()
            done.record(self.stream)
        return Fetched(copies, done)

    def start(self, block: torch.nn.Module, *_: object) -> None:
        """Forward pre-hook of every repeated block: its weights in, the next swapped block's ahead."""
        index = self.index[block]
        for other in [b for b in self.loaded if b is not block]:
            # backward's recomputation stops early (torch's checkpoint early stop), so a block's
            # forward hook may never run there: the next block to start drops its weights instead
            self.unload(other)
        # the same block twice in a row is a turn: forward's last block is backward's first, and so on
        self.direction = (1 if index > self.last else -1) if index != self.last else -self.direction
        self.last = index
        if block in self.host:
            fetched = self.ahead.pop(block, None)
            self.used_ahead += fetched is not None
            fetched = fetched or self.copy(block)
            if fetched.done is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(fetched.done)
                for tensor in fetched.copies:
                    tensor.record_stream(current)  # freed after unload only once this stream is done with it
            for (param, _), tensor in zip(self.host[block], fetched.copies):
                param.data = tensor
            self.loaded.add(block)
        following = index + self.direction
        if self.prefetch and 0 <= following < len(self.blocks) and self.blocks[following] in self.host:
            ahead = self.blocks[following]
            if ahead not in self.ahead:
                self.ahead = {ahead: self.copy(ahead)}  # a stale guess is dropped: one block ahead at most

    def unload(self, block: torch.nn.Module, *_: object) -> None:
        for param, host in self.host[block]:
            param.data = host
        self.loaded.discard(block)

    def restore(self) -> None:
        """Undo the swap: hooks removed, every swapped weight back on the device."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.ahead.clear()
        self.loaded.clear()
        with torch.no_grad():
            for weights in self.host.values():
                for param, host in weights:
                    param.data = host.to(self.device)
        self.host.clear()


def repeated_blocks(module: torch.nn.Module, paths: tuple[str, ...], family: str) -> list[torch.nn.Module]:
    """The blocks of every `ModuleList` named in `paths`, in order."""
    if not paths:
        raise UserError(f"--blocks_to_swap: {family} does not declare its repeated blocks (FamilySpec.repeated_blocks)")
    blocks: list[torch.nn.Module] = []
    for path in paths:
        blocks += list(cast(torch.nn.ModuleList, module.get_submodule(path)))
    return blocks


def swap_blocks(
    module: torch.nn.Module, paths: tuple[str, ...], count: int, device: torch.device, family: str, prefetch: bool = True
) -> BlockSwap:
    """Keep the frozen weights of the last `count` blocks in host memory and hook those blocks so
    the weights are on `device` only while they run. Call before moving `module` to `device` (then
    move it with `to_device_except`), so the full model is never on the device at once."""
    blocks = repeated_blocks(module, paths, family)
    if not 0 < count < len(blocks):
        raise UserError(f"--blocks_to_swap {count}: expected 1 to {len(blocks) - 1} ({family}'s denoiser has {len(blocks)} blocks)")
    pin = device.type == "cuda"
    swap = BlockSwap(device, blocks=blocks, index={b: i for i, b in enumerate(blocks)}, prefetch=prefetch)
    swap.stream = torch.cuda.Stream(device) if pin and prefetch else None
    for block in blocks[len(blocks) - count:]:
        weights = []
        for param in block.parameters():
            if not param.requires_grad:
                host = torch.empty_like(param.data, device="cpu", pin_memory=pin).copy_(param.data)
                param.data = host
                weights.append((param, host))
        swap.host[block] = weights
        swap.handles.append(block.register_forward_hook(swap.unload))
    swap.handles += [block.register_forward_pre_hook(swap.start) for block in blocks]
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
