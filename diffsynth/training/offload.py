"""`--offload_models` in a run that encodes as it trains (DiffSynth-Studio's flag): the named
frozen encoders keep their weights in host memory (pinned on a GPU machine) and are copied to the
device only while they encode (the step's preprocess, validation, samples), then dropped. In
split training (`--task sft:data_process` / `sft:train`) the flag instead leaves those models out
of a stage (diffsynth/cache/stage.py). Buffers move to the device once (they are small)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from diffsynth.config import TrainConfig, split_list
from diffsynth.errors import UserError
from diffsynth.types import FamilyPipeline, ModelFiles


@dataclass
class OffloadedEncoders:
    """Host copies of the offloaded components' weights, and the device they run on."""

    device: torch.device
    names: list[str]
    host: list[tuple[torch.nn.Parameter, torch.Tensor]] = field(default_factory=list)
    depth: int = 0

    @property
    def parameters(self) -> set[torch.nn.Parameter]:
        return {p for p, _ in self.host}

    @contextlib.contextmanager
    def on_device(self) -> Iterator[None]:
        """The weights on the device inside the block (a nested use copies nothing more)."""
        if self.depth:
            yield
            return
        for param, host in self.host:
            param.data = host.to(self.device, non_blocking=True, copy=True)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            for param, host in self.host:
                param.data = host


def offloaded_components(config: TrainConfig, pipeline: FamilyPipeline, models: ModelFiles | None, trained: list[str]) -> list[str]:
    """`--offload_models` entries (component names or the source strings given for them) ->
    component names; the denoiser and trained components are refused in one line."""
    by_source = {g.source: name for name, g in models.components.items()} if models else {}
    names = []
    for entry in split_list(config.offload_models):
        name = entry if entry in pipeline.modules else by_source.get(entry)
        if name is None:
            raise UserError(f"--offload_models: {entry!r} is neither a component ({', '.join(pipeline.modules)}) "
                            f"nor one of the model sources ({', '.join(by_source) or 'none'})")  # fmt: skip
        if name == pipeline.denoiser:
            raise UserError(f"--offload_models: {entry!r} is the denoiser, which runs every step; use --blocks_to_swap N to keep "
                            "some of its blocks in host memory")  # fmt: skip
        if name in trained:
            raise UserError(f"--offload_models: {name} is trained in this run; only frozen encoders can be offloaded")
        names.append(name)
    return list(dict.fromkeys(names))


def offload(pipeline: FamilyPipeline, names: list[str], device: torch.device) -> OffloadedEncoders:
    """Keep the weights of `names` in host memory; their buffers go to `device`. Call instead of
    moving those modules to `device`."""
    pin = device.type == "cuda"
    out = OffloadedEncoders(device, names)
    seen: set[int] = set()
    with torch.no_grad():
        for name in names:
            module = pipeline.modules[name]
            for param in module.parameters():
                if id(param) in seen:  # tied weights: one host copy
                    continue
                seen.add(id(param))
                host = torch.empty_like(param.data, device="cpu", pin_memory=pin).copy_(param.data)
                param.data = host
                out.host.append((param, host))
            for sub_name, buffer in list(module.named_buffers()):
                owner_name, _, leaf = sub_name.rpartition(".")
                owner = module.get_submodule(owner_name) if owner_name else module
                owner._buffers[leaf] = buffer.to(device)
    return out
