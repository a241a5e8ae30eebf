"""A small but real family used by the core's tests: a `Family` registered like any plugin (via
`DIFFSYNTH_PLUGINS=toy_family:plugin`), so core tests never need a real family plugin.

Its "VAE" is a fixed 4x average pool of the image, its text encoder a byte embedding, and its
denoiser a stack of residual Linear blocks over pixel tokens: tiny, fast, and able to learn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from diffsynth.plugin import ComponentSpec, Family, FamilySpec, PresetSpec, VariantSpec

NAME = "toy"
REPO = "toy/Toy"
NAN_PROMPT = "<nan>"


def _is_dit(header) -> bool:
    return header.has("in_proj.weight", "text_embed.weight")


SPEC = FamilySpec(
    name=NAME,
    description="Test family: pooled pixels, byte text embedding, Linear denoiser.",
    components=(ComponentSpec("dit", "Linear denoiser", _is_dit, "toy_family.ToyDenoiser"),),
    variants=(VariantSpec("base", "the toy model", (f"{REPO}:dit/*.safetensors",)),),
    default_lora_targets=("to_q", "to_out"),
    presets=(PresetSpec("tiny", "hidden 32, 2 blocks"),),
    resolution_multiple=8,
    repeated_blocks=("blocks",),
)


def _modules():
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, hidden: int) -> None:
            super().__init__()
            self.to_q = nn.Linear(hidden, hidden)
            self.to_out = nn.Linear(hidden, hidden)

        def forward(self, x):
            return x + self.to_out(torch.nn.functional.gelu(self.to_q(x)))

    class ToyDenoiser(nn.Module):
        def __init__(self, hidden: int = 32, num_blocks: int = 2, channels: int = 3) -> None:
            super().__init__()
            self.config = {"hidden": hidden, "num_blocks": num_blocks, "channels": channels}
            self.in_proj = nn.Linear(channels + 1, hidden)
            self.text_embed = nn.Embedding(256, hidden)
            self.blocks = nn.ModuleList(Block(hidden) for _ in range(num_blocks))
            self.out_proj = nn.Linear(hidden, channels)
            self.gradient_checkpointing = False

        def enable_gradient_checkpointing(self) -> None:
            self.gradient_checkpointing = True

        def forward(self, tokens, sigmas, text_ids):
            sig = sigmas.reshape(-1, 1, 1).expand(tokens.shape[0], tokens.shape[1], 1).to(tokens.dtype)
            x = self.in_proj(torch.cat([tokens, sig], dim=-1))
            x = x + self.text_embed(text_ids).mean(dim=1, keepdim=True)
            for block in self.blocks:
                if self.gradient_checkpointing and torch.is_grad_enabled():
                    x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            return self.out_proj(x)

    return ToyDenoiser


def write_preset(directory, seed):
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = _modules()()
    out = Path(directory) / "dit"
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(model.config))


@dataclass
class ToyConditioning:
    text_ids: object  # torch.LongTensor (1, L)


def encode_prompt(prompt: str):
    import torch

    data = prompt.encode("utf-8")[:64] or b" "
    return torch.tensor([list(data)], dtype=torch.long)


def image_latents(image):
    import numpy as np
    import torch

    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    pooled = torch.nn.functional.avg_pool2d(pixels, 4)
    return pooled.flatten(2).transpose(1, 2)  # (1, tokens, 3)


class Toy(Family):
    spec = SPEC

    def init_model(self, preset, directory, seed):
        write_preset(directory, seed)

    def load_pipeline(self, models, context):
        from diffsynth.plugin import FamilyPipeline, FlowMatchSchedule, build_module, load_state_dict

        group = models.components["dit"]
        cfg = group.sibling_config() or {}
        dit = build_module(lambda: _modules()(**cfg), load_state_dict(group), group, context.torch_dtype)
        return FamilyPipeline(modules={"dit": dit}, schedule=FlowMatchSchedule(shift=1.0), denoiser="dit")

    def preprocess_inputs(self, pipeline, sample, context):
        from diffsynth.plugin import TrainingInputs

        latents = image_latents(sample.fields["image"]).to(pipeline.device, pipeline.dtype)
        if sample.prompt == NAN_PROMPT:  # lets tests force a non-finite loss on one known row
            latents = latents * float("nan")
        text_ids = encode_prompt(sample.prompt).to(pipeline.device)
        return TrainingInputs(latents=latents, conditioning=ToyConditioning(text_ids))

    def predict_flow(self, pipeline, inputs, noisy_latents, sigmas):
        return pipeline.modules["dit"](noisy_latents, sigmas, inputs.conditioning.text_ids)


plugin = Toy()
