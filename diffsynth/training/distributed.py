"""Multi-process details: wrapped modules that still look like the family's module, and the
training state of a sharded (FSDP) run read and written in the same full form as everywhere else.

A training-state checkpoint holds full tensors: the trainable parameters by `component.name` and
the optimizer state as `torch.optim.Optimizer.state_dict()` gives it on one process (state keyed
by the parameter's index). Under FSDP each process holds a shard of every parameter and of its
optimizer state, so saving gathers them (torch.distributed.checkpoint's `get_model_state_dict` /
`get_optimizer_state_dict` with `full_state_dict`, on every process) and restoring scatters them
back (`set_model_state_dict` / `set_optimizer_state_dict`). The files are the same whether a run
was sharded or not.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping

import torch

from diffsynth.errors import UserError


def _module_getattr(self: torch.nn.Module, name: str):
    try:
        return torch.nn.Module.__getattr__(self, name)
    except AttributeError:
        return getattr(self.__dict__["_modules"]["module"], name)


def expose_module_attributes(wrapped: torch.nn.Module, module: torch.nn.Module) -> torch.nn.Module:
    """Let a DDP-style wrapper answer attribute look-ups (`.config`, `.dtype`) from the module it
    wraps, so family code reading them works the same on one process and on many."""
    if wrapped is module or "module" not in getattr(wrapped, "_modules", {}):
        return wrapped
    cls = type(wrapped)
    wrapped.__class__ = type(cls.__name__, (cls,), {"__getattr__": _module_getattr})
    return wrapped


# -- which engine -------------------------------------------------------------------------------


def _kind(accelerator) -> str:
    return str(getattr(accelerator, "distributed_type", "NO")).rsplit(".", 1)[-1]


def is_fsdp(accelerator) -> bool:
    return _kind(accelerator) == "FSDP"


def check_engine(accelerator, config) -> None:
    """Call right after the Accelerator exists: refuse, in one line, what this engine cannot do
    (rather than a crash, a hang or a silently wrong resume later); say when accelerate did not
    give the engine the launch config asked for."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not is_fsdp(accelerator):
        if accelerator.is_main_process:
            sys.stderr.write(
                f"warning: the accelerate config asks for FSDP, but accelerate runs these {accelerator.num_processes} "
                f"process(es) as {_kind(accelerator)} (it shards only on GPUs): every process holds the whole model\n"
            )
    if _kind(accelerator) == "DEEPSPEED" and (config.checkpointing_steps or config.resume_from_checkpoint):
        flag = "--checkpointing_steps" if config.checkpointing_steps else "--resume_from_checkpoint"
        raise UserError(f"{flag}: training-state checkpoints are not implemented under DeepSpeed (its optimizer state "
                        "is partitioned per process); use FSDP (examples/accelerate/fsdp.yaml) or DDP to resume runs")
    if is_fsdp(accelerator):
        if getattr(accelerator.state.fsdp_plugin, "fsdp_version", 1) != 2:
            raise UserError("FSDP1 is not supported: set `fsdp_version: 2` in the accelerate config's fsdp_config "
                            "(examples/accelerate/fsdp.yaml)")
        for flag, value in (("--ema_decay", config.ema_decay), ("--blocks_to_swap", config.blocks_to_swap),
                            ("--validation_prompts", config.validation_prompts)):
            if value:
                raise UserError(f"{flag}: not implemented under FSDP yet (parameters are sharded across processes); "
                                "use DDP (examples/accelerate/multi_gpu_ddp.yaml)")


# -- full state of a sharded run ----------------------------------------------------------------


def _container(modules: Mapping[str, torch.nn.Module]) -> torch.nn.Module:
    """One module over the prepared components: its parameter names are the checkpoint's
    (`component.name`), which torch.distributed.checkpoint strips of wrapper prefixes."""
    return torch.nn.ModuleDict(dict(modules))


def _options(**kw: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def _fqns(container: torch.nn.Module, optimizer) -> list[str]:
    """The checkpoint name of each optimizer parameter, in `optimizer.state_dict()`'s index order."""
    from torch.distributed.checkpoint.state_dict import _get_fqns

    names = {}
    for name, param in container.named_parameters():
        fqns = _get_fqns(container, name)
        names[id(param)] = next(iter(fqns))
    optim = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
    return [names[id(p)] for group in optim.param_groups for p in group["params"]]


def trainable_state(accelerator, modules: Mapping[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """The trainable parameters, full, as `component.name` -> tensor. Under FSDP this gathers the
    shards (every process must call it) and only the main process gets them (others: {})."""
    if is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(_container(modules), options=_options(cpu_offload=True, ignore_frozen_params=True))
        return full if accelerator.is_main_process else {}
    unwrapped = {n: accelerator.unwrap_model(m) for n, m in modules.items()}
    states = {n: accelerator.get_state_dict(m) for n, m in modules.items()}
    return {
        f"{component}.{name}": states[component][name]
        for component, module in unwrapped.items()
        for name, p in module.named_parameters()
        if p.requires_grad
    }


def optimizer_state(accelerator, modules: Mapping[str, torch.nn.Module], optimizer) -> dict[str, Any]:
    """`optimizer.state_dict()` as one process holding everything would give it. Under FSDP this
    gathers the shards (every process must call it; others get {})."""
    if not is_fsdp(accelerator):
        if _kind(accelerator) == "DEEPSPEED":
            raise UserError("training-state checkpoints are not implemented under DeepSpeed (its optimizer state is "
                            "partitioned per process); use FSDP (examples/accelerate/fsdp.yaml) or DDP")
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    container = _container(modules)
    optim = getattr(optimizer, "optimizer", optimizer)
    full = get_optimizer_state_dict(container, optim, options=_options(cpu_offload=True))
    if not accelerator.is_main_process:
        return {}
    index = {fqn: i for i, fqn in enumerate(_fqns(container, optimizer))}
    plain = optim.state_dict()  # its param_groups (hyper-parameters, indices) are the same on every process
    return {"state": {index[fqn]: state for fqn, state in full["state"].items()}, "param_groups": plain["param_groups"]}


def load_training_state(accelerator, modules: Mapping[str, torch.nn.Module], trainable: dict[str, torch.Tensor],
                        optimizer, saved: dict[str, Any]) -> None:
    """Put a checkpoint's full trainable tensors and optimizer state into the (possibly sharded)
    run; every process calls it, each with the whole checkpoint."""
    if not is_fsdp(accelerator):
        unwrapped = {n: accelerator.unwrap_model(m) for n, m in modules.items()}
        live = {f"{c}.{n}": p for c, m in unwrapped.items() for n, p in m.named_parameters() if p.requires_grad}
        with torch.no_grad():
            for name, param in live.items():
                param.copy_(trainable[name])
        optimizer.load_state_dict(saved)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    container = _container(modules)
    result = set_model_state_dict(container, dict(trainable), options=_options(strict=False))  # it changes the dict
    if result.unexpected_keys:
        raise UserError(f"--resume_from_checkpoint: the checkpoint holds parameters this run lacks: {result.unexpected_keys[:3]}")
    fqns = _fqns(container, optimizer)
    optim = getattr(optimizer, "optimizer", optimizer)
    groups = [{**g, "params": [fqns[i] for i in g["params"]]} for g in saved["param_groups"]]
    full = {"state": {fqns[int(i)]: s for i, s in saved["state"].items()}, "param_groups": groups}
    set_optimizer_state_dict(container, optim, full, options=_options())


def trainable_parameters(modules: Mapping[str, torch.nn.Module]) -> list[torch.nn.Parameter]:
    """The trainable parameters of the prepared modules (under FSDP `prepare` replaced the
    originals with sharded ones, which the optimizer now holds)."""
    return [p for m in modules.values() for p in m.parameters() if p.requires_grad]


def trainable_names(accelerator, modules: Mapping[str, torch.nn.Module]) -> set[str]:
    """`component.name` of every trainable parameter (no gathering)."""
    if is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import _get_fqns

        container = _container(modules)
        return {next(iter(_get_fqns(container, n))) for n, p in container.named_parameters() if p.requires_grad}
    unwrapped = {c: accelerator.unwrap_model(m) for c, m in modules.items()}
    return {f"{c}.{n}" for c, m in unwrapped.items() for n, p in m.named_parameters() if p.requires_grad}
