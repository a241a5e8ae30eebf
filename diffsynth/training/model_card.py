"""The short README.md model card written next to the trained weights."""

from __future__ import annotations

from pathlib import Path

from diffsynth.config import TrainConfig
from diffsynth.spec import FamilySpec


def model_card(
    family: FamilySpec, config: TrainConfig, files: list[Path], steps: int, sources: list[str], lora_targets: list[str]
) -> str:
    """Markdown describing what was trained, on what, and how to load it."""
    kind = "LoRA" if config.lora_base_model else "full fine-tune"
    lines = [
        f"# {family.name} {kind}",
        "",
        f"Trained with diffsynth (family plugin {family.plugin} {family.plugin_version}).",
        "",
        f"- base model: {', '.join(sources)}",
        f"- optimizer steps: {steps}, learning rate {config.learning_rate}, seed {config.seed}",
    ]
    if config.lora_base_model:
        lines += [
            f"- LoRA on `{config.lora_base_model}`: rank {config.effective_lora_rank()}, alpha {config.effective_lora_alpha():g}",
            f"- target modules: `{','.join(lora_targets)}`",
        ]
    else:
        lines.append(f"- trained components: `{config.trainable_models}`")
    lines += ["", "## Files", ""] + [f"- `{p.name}`" for p in files]
    if config.lora_base_model and files:
        lines += [
            "",
            "## Use",
            "",
            "Load the file unchanged with diffusers (`pipe.load_lora_weights(path)`) or a ComfyUI",
            "LoRA loader node. All training options are in `training_args.json`.",
        ]
    return "\n".join(lines) + "\n"
