"""`LoraKeyFormat`: how a family's LoRA files spell their keys, as data (torch-free).

Most loaders (diffusers' `load_lora_weights`, ComfyUI) agree on one shape: a prefix, the model's
module name, `.lora_A.weight` / `.lora_B.weight`, and a scalar `<module>.alpha` giving the scale
`alpha / rank`. Families differ only in the prefix and in whether module names are translated
(e.g. back to the original repo's names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


@dataclass(frozen=True)
class LoraKeyFormat:
    """`<prefix><rename(module)>.lora_A.weight` + `.lora_B.weight` + `.alpha` per module."""

    prefix: str = "diffusion_model."
    #: The module name as the file should spell it, from the denoiser's (diffusers) name.
    rename: Callable[[str], str] | None = None
    description: str = "diffusion_model.<module>.lora_A/lora_B.weight + .alpha"

    def keys(self, peft_tensors: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
        """peft names without adapter (`blocks.0.attn.to_q.lora_A.weight`) -> this format."""
        import torch

        from diffsynth.errors import PluginError

        out: dict[str, torch.Tensor] = {}
        modules = set()
        for key, tensor in peft_tensors.items():
            if not key.endswith(LORA_SUFFIXES):
                raise PluginError(f"unexpected LoRA tensor {key!r} (expected *.lora_A.weight / *.lora_B.weight)")
            module, part, _ = key.rsplit(".", 2)
            name = self.rename(module) if self.rename else module
            out[f"{self.prefix}{name}.{part}.weight"] = tensor.contiguous()
            modules.add(name)
        for name in sorted(modules):
            out[f"{self.prefix}{name}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
        return out


#: ComfyUI's generic loader and kohya-style tools read it; diffusers reads it for the families
#: whose LoRA loader converts `diffusion_model.` keys (each family's tests check its own loader).
DEFAULT_LORA_KEY_FORMAT = LoraKeyFormat()
