"""Figure 1: framework overhead. Median time per optimizer step of `Trainer.run()` vs a
hand-written PyTorch loop doing the same work on the same model files, alternated in one process.

Both sides do, per step: read + resize one example image (PIL), VAE-encode it, encode the
prompt, flow-matching noise, DiT forward with LoRA (rank 32, fp32, CPU), backward, AdamW step.
The trainer's step time is the interval between consecutive loss-log writes (timestamps taken
by wrapping `RunOutputs.append_loss`, so it covers everything the loop does: DataLoader,
sampler, accelerate, hook dispatch, progress bar, loss log). The hand loop is timed per step.
The first step of every run is dropped on both sides (warm-up).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.common import EXAMPLE_DATA, Context, Record, alternate, at_most, median, trainer_step_seconds
from benchmarks.models import SOURCES, STEP_DIT, write_tiny, write_with_dit

GOAL = 1.03
SIZE = 64  # training images are resized/cropped to SIZE x SIZE: 16 image tokens


def _config(base: Path, out: Path, steps: int, size: int):
    from diffsynth.config import TrainConfig

    return TrainConfig(
        dataset_base_path=str(EXAMPLE_DATA), dataset_metadata_path=str(EXAMPLE_DATA / "metadata.csv"),
        height=size, width=size, dataset_repeat=1000, model_id_with_origin_paths=SOURCES,
        lora_base_model="dit", lora_rank=32, dtype="fp32", max_steps=steps, output_path=str(out),
        family="qwen-image",
    )  # fmt: skip


def trainer_steps(registry, base: Path, out: Path, steps: int, size: int) -> list[float]:
    """Seconds between consecutive optimizer steps of one `Trainer.run()`, first step dropped."""
    os.environ["DIFFSYNTH_MODEL_BASE_PATH"] = str(base)
    return trainer_step_seconds(registry, _config(base, out, steps, size))


class HandLoop:
    """The same training step written directly against torch/peft/diffusers modules."""

    def __init__(self, registry, base: Path, size: int) -> None:
        import torch
        from diffsynth_qwen_image import inputs
        from peft import LoraConfig, inject_adapter_in_model
        from PIL import Image  # noqa: F401

        from diffsynth.models.resolve import resolve_model_files
        from diffsynth.training.family_hooks import FamilyHooks
        from diffsynth.types import RunContext

        os.environ["DIFFSYNTH_MODEL_BASE_PATH"] = str(base)
        family = registry.get("qwen-image")
        config = _config(base, base, 1, size)
        # loading is set-up, not the step: use the family's loader so both sides get the same modules
        context = RunContext.for_run(config, family.options_value())
        self.pipe = FamilyHooks(registry, family).load_pipeline(resolve_model_files(family, config), context)
        for module in self.pipe.modules.values():
            module.requires_grad_(False).eval()
        targets = family.expand_lora_targets(list(family.default_lora_targets))
        self.dit = inject_adapter_in_model(LoraConfig(r=32, lora_alpha=32, target_modules=targets), self.pipe.dit)
        self.dit.train()
        params = [p for p in self.dit.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
        lines = (EXAMPLE_DATA / "metadata.csv").read_text().splitlines()[1:]
        self.rows = [line.split(",", 1) for line in lines]
        self.size, self.inputs, self.k = size, inputs, 0

    def step(self) -> None:
        import torch
        from PIL import Image

        path, prompt = self.rows[self.k % len(self.rows)]
        self.k += 1
        image = Image.open(EXAMPLE_DATA / path).convert("RGB").resize((self.size, self.size), Image.BICUBIC)
        with torch.no_grad():
            latents = self.inputs.pack(self.inputs.encode_image(self.pipe, image))
            embeds, mask = self.inputs.encode_prompt(self.pipe, prompt)
        sigma = torch.rand(1)
        noise = torch.randn_like(latents)
        noisy = (1 - sigma) * latents + sigma * noise
        grid = (1, self.size // 16, self.size // 16)  # latent /8, packed 2x2
        pred = self.dit(
            hidden_states=noisy, timestep=sigma, encoder_hidden_states=embeds,
            encoder_hidden_states_mask=None if bool(mask.all()) else mask, img_shapes=[[grid]], return_dict=False,
        )[0]  # fmt: skip
        loss = torch.nn.functional.mse_loss(pred, noise - latents)
        loss.item()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def steps(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            self.step()
            times.append(time.perf_counter() - t)
        return times[1:]


def measure(ctx: Context, name: str, base: Path, size: int, rounds: int, steps: int) -> Record:
    import torch

    from diffsynth.plugins import load_registry

    # One intra-op thread on both sides: on a shared 2-core machine, OpenMP threads of two busy
    # processes spin against each other and step times swing 10x, which hides any overhead.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    registry = load_registry()
    hand = HandLoop(registry, base, size)
    runs = iter(range(10**6))
    ours, theirs = alternate(
        lambda: trainer_steps(registry, base, ctx.workdir / f"train-{name}-{next(runs)}", steps, size),
        lambda: hand.steps(steps),
        rounds,
    )
    torch.set_num_threads(threads)
    ratio = median(ours) / median(theirs)
    return Record(
        f"overhead.{name}", round(ratio, 3), "x hand loop", f"<= {GOAL}", at_most(ratio, GOAL),
        {"trainer_step_ms": round(median(ours) * 1e3, 2), "hand_step_ms": round(median(theirs) * 1e3, 2),
         "rounds": rounds, "steps_per_run": steps, "image": f"{size}x{size}", "torch_threads": 1},
    )  # fmt: skip


def run(ctx: Context) -> list[Record]:
    tiny = ctx.once("tiny_models", lambda: write_tiny(ctx.workdir / "models-tiny"))
    if ctx.quick:
        return [measure(ctx, "tiny", tiny, SIZE, rounds=1, steps=4)]
    medium = write_with_dit(tiny, ctx.workdir / "models-step", STEP_DIT)
    return [
        measure(ctx, "tiny", tiny, SIZE, rounds=5, steps=20),
        measure(ctx, "medium", medium, 2 * SIZE, rounds=4, steps=8),
    ]
