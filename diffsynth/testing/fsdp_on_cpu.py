"""`python -m diffsynth.testing.fsdp_on_cpu ARGS` runs `diffsynth ARGS` under accelerate's FSDP on
CPU processes over gloo, for tests launched with
`accelerate launch --config_file examples/accelerate/fsdp.yaml --num_processes 2`.

Why a tool: accelerate (1.15) turns an FSDP launch on a machine without GPUs into multi-CPU DDP
(`AcceleratorState` sets FSDP only for GPU-like devices), although torch's FSDP2 (`fully_shard`)
and torch.distributed.checkpoint run on CPU over gloo. This sets the distributed type back to
FSDP right after accelerate chose MULTI_CPU, as accelerate itself does for GPUs, so the rest
(accelerate's `prepare` sharding the modules, `get_state_dict`, the trainer's checkpoint save and
restore) is the real FSDP code. After `prepare`, every process prints
`rank R: <engine>, holds N of M trainable values` so a test can see the sharding.
Test tooling: the trainer itself has no such switch."""

from __future__ import annotations

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

from diffsynth.cli import main
from diffsynth.training.trainer import Trainer

_init = AcceleratorState.__init__
_prepare = Trainer._prepare


def _keep_fsdp(self, *args, fsdp_plugin=None, **kwargs) -> None:  # noqa: ANN001 - AcceleratorState's signature
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as accelerate does for GPUs


def _reporting_prepare(self: Trainer, dataset):  # noqa: ANN001 - Trainer._prepare's signature
    run = _prepare(self, dataset)
    held = total = 0
    for param in (p for n in run.plan.components for p in run.pipeline.modules[n].parameters() if p.requires_grad):
        total += param.numel()
        held += param.to_local().numel() if hasattr(param, "to_local") else param.numel()
    kind = str(run.accelerator.distributed_type).rsplit(".", 1)[-1]
    print(f"rank {run.accelerator.process_index}: {kind}, holds {held} of {total} trainable values", flush=True)
    return run


if __name__ == "__main__":
    AcceleratorState.__init__ = _keep_fsdp  # type: ignore[method-assign]
    Trainer._prepare = _reporting_prepare  # type: ignore[method-assign]
    main()
