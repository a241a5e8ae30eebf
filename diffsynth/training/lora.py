"""Add a peft LoRA to any module and read its trained weights back."""

from __future__ import annotations

import re

import torch

from diffsynth.errors import UserError

ADAPTER = "default"


def lora_targetable_names(module: torch.nn.Module) -> list[str]:
    """Distinct names a user can pass to `--lora_target_modules`: each Linear layer's name with
    the block prefix (everything up to the first numeric index) removed."""
    names = set()
    for full_name, sub in module.named_modules():
        if isinstance(sub, torch.nn.Linear):
            parts = full_name.split(".")
            first_index = next((i for i, p in enumerate(parts) if p.isdigit()), None)
            names.add(".".join(parts[first_index + 1 :]) if first_index is not None and first_index + 1 < len(parts) else full_name)
    return sorted(names)


def matching_module_names(module: torch.nn.Module, targets: list[str]) -> list[str]:
    """Full names of modules that peft would wrap: name == target or name ends with `.target`."""
    pattern = re.compile(r"(^|.*\.)(" + "|".join(re.escape(t) for t in targets) + r")$")
    return [name for name, _ in module.named_modules() if name and pattern.match(name)]


#: Name fragments of the parameters peft adds, per adapter kind (LoRA/DoRA, LoKr, LoHa).
ADAPTER_PARTS = ("lora_", "lokr_", "hada_")


def is_adapter_param(name: str) -> bool:
    """A parameter peft added (`to_q.lora_A.default.weight`, `to_q.lokr_w1.default`, ...)."""
    return any(f".{part}" in f".{name}" for part in ADAPTER_PARTS) and f".{ADAPTER}" in name


def adapter_config(lora_type: str, targets: list[str], rank: int, alpha: float, lokr_factor: int = -1):
    """The peft config of one adapter kind: lora, dora (LoRA + magnitude), lokr, loha."""
    from peft import LoHaConfig, LoKrConfig, LoraConfig

    if lora_type == "lokr":
        return LoKrConfig(r=rank, alpha=alpha, target_modules=targets, decompose_factor=lokr_factor, init_weights=True)
    if lora_type == "loha":
        return LoHaConfig(r=rank, alpha=alpha, target_modules=targets, init_weights=True)
    if lora_type in ("lora", "dora"):
        return LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True, use_dora=lora_type == "dora")
    raise UserError(f"--lora_type: expected lora, lokr, loha or dora, got {lora_type!r}")


def add_lora(
    module: torch.nn.Module, component: str, targets: list[str], rank: int, alpha: float,
    lora_type: str = "lora", lokr_factor: int = -1,
) -> int:
    """Inject an adapter (peft; `lora_type` lora, dora, lokr or loha) into `module` in place;
    returns the number of wrapped layers.

    A target list that matches nothing is a `UserError` listing the names that exist.
    """
    from peft import inject_adapter_in_model

    if rank < 1:
        raise UserError(f"--lora_rank: expected a positive integer, got {rank}")
    matched = matching_module_names(module, targets)
    if not matched:
        available = ", ".join(lora_targetable_names(module))
        raise UserError(
            f"--lora_target_modules: {','.join(targets)} matches no module of {component}; "
            f"Linear layers it has: {available}"
        )
    inject_adapter_in_model(adapter_config(lora_type, targets, rank, alpha, lokr_factor), module, adapter_name=ADAPTER)
    for name, param in module.named_parameters():
        param.requires_grad = is_adapter_param(name)
        if param.requires_grad and param.dtype != torch.float32:
            # adapters train in fp32 even when the base is stored in bf16
            param.data = param.data.float()
    return len(matched)


def lora_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter's entries of a module's state dict, with peft's names minus the adapter name:
    `blocks.0.attn.to_q.lora_A.weight` (and `.lora_magnitude_vector.weight` for DoRA,
    `.lokr_w1`, `.hada_w1_a`, ... for LoKr/LoHa)."""
    out = {}
    for key, value in state_dict.items():
        if not is_adapter_param(key):
            continue
        key = key.replace(f".{ADAPTER}.", ".")
        out[key.removesuffix(f".{ADAPTER}")] = value
    return out
