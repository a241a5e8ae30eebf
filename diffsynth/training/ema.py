"""`--ema_decay`: an exponential moving average of the trained weights.

After every optimizer step, `ema = decay * ema + (1 - decay) * weight` for every trainable
parameter, starting from the weights before the first step; kept in fp32 on the training device.
Saved as its own weight file next to the raw one (`epoch-0-ema.safetensors`), through the family's
split, so it loads wherever the raw file does; resumable through the training-state checkpoint.
"""

from __future__ import annotations

import torch


class EMA:
    """Shadow copies of named parameters (`component.name` keys, as the checkpoints name them)."""

    def __init__(self, params: dict[str, torch.nn.Parameter], decay: float) -> None:
        self.decay = float(decay)
        self.params = params
        self.shadow = {k: p.detach().float().clone() for k, p in params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for key, param in self.params.items():
            self.shadow[key].mul_(self.decay).add_(param.detach().float(), alpha=1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("EMA state holds other parameters than this run trains")
        for key, value in state.items():
            self.shadow[key].copy_(value)

    def component_states(self, states: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
        """`states` (full state dicts per component) with every trained entry replaced by its average,
        in the entry's dtype."""
        out = {c: dict(s) for c, s in states.items()}
        for key, value in self.shadow.items():
            component, name = key.split(".", 1)
            if component in out and name in out[component]:
                out[component][name] = value.to(out[component][name].dtype)
        return out
