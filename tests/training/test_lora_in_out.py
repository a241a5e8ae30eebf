"""`--lora_checkpoint` in every common format and `--preset_lora_path` merging (toy family)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.plugins import load_registry
from diffsynth.training.precision import FP8
from diffsynth.training.trainer import Trainer
from tests.conftest import EXAMPLE_DATA

RANK, ALPHA = 4, 8.0


@pytest.fixture
def offline(toy_models, monkeypatch):
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(toy_models))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")


def config(out, **kw) -> TrainConfig:
    base = dict(family="toy", dataset_base_path=str(EXAMPLE_DATA), lora_base_model="dit", learning_rate=1e-2,
                output_path=str(out), seed=3)
    return TrainConfig(**{**base, **kw})


def dit_output(trainer: Trainer) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    tokens, sigmas = torch.randn(1, 16, 3, generator=g), torch.tensor([0.4])
    text = torch.randint(0, 256, (1, 6), generator=g)
    with torch.no_grad():
        return trainer.pipeline.modules["dit"](tokens, sigmas, text)


@pytest.fixture
def trained(tmp_path, offline):
    """A LoRA (rank 4, alpha 8) trained for a few steps: its file and the module that holds it."""
    trainer = Trainer(load_registry(), config(tmp_path / "first", lora_rank=RANK, lora_alpha=ALPHA, dataset_repeat=2))
    result = trainer.run()
    return result.files[0], trainer


def foreign_formats(ours: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The same LoRA written as other tools write it (alpha kept as tensors, or folded into B)."""
    ours = {k.removeprefix("diffusion_model."): v for k, v in ours.items() if not k.endswith(".alpha")}
    layers = sorted({k.rsplit(".", 2)[0] for k in ours})
    a = {m: ours[f"{m}.lora_A.weight"] for m in layers}
    b = {m: ours[f"{m}.lora_B.weight"] for m in layers}
    alpha = lambda: torch.tensor(ALPHA)  # noqa: E731 - a fresh tensor per key (safetensors refuses shared ones)
    folded = {m: b[m] * (ALPHA / RANK) for m in layers}  # formats without alpha: scale 1
    kohya = lambda m: "lora_unet_" + m.replace(".", "_")  # noqa: E731
    return {
        "diffsynth-default": {**{f"{m}.lora_A.default.weight": a[m] for m in layers},
                              **{f"{m}.lora_B.default.weight": folded[m] for m in layers}},
        "peft": {**{f"base_model.model.{m}.lora_A.weight": a[m] for m in layers},
                 **{f"base_model.model.{m}.lora_B.weight": folded[m] for m in layers}},
        "transformer": {**{f"transformer.{m}.lora_A.weight": a[m] for m in layers},
                        **{f"transformer.{m}.lora_B.weight": b[m] for m in layers},
                        **{f"transformer.{m}.alpha": alpha() for m in layers}},
        "diffusion_model": {**{f"diffusion_model.{m}.lora_A.weight": a[m] for m in layers},
                            **{f"diffusion_model.{m}.lora_B.weight": b[m] for m in layers},
                            **{f"diffusion_model.{m}.alpha": alpha() for m in layers}},
        "kohya": {**{f"{kohya(m)}.lora_down.weight": a[m] for m in layers},
                  **{f"{kohya(m)}.lora_up.weight": b[m] for m in layers},
                  **{f"{kohya(m)}.alpha": alpha() for m in layers}},
    }


@pytest.mark.parametrize("fmt", ["ours", "diffsynth-default", "peft", "transformer", "diffusion_model", "kohya"])
def test_lora_checkpoint_continues_from_the_same_weights(fmt, trained, tmp_path):
    path, first = trained
    if fmt != "ours":
        path = tmp_path / f"{fmt}.safetensors"
        save_file(foreign_formats(load_file(trained[0]))[fmt], str(path))
    resumed = Trainer(load_registry(), config(tmp_path / "again", lora_checkpoint=str(path), learning_rate=1e-30,
                                              weight_decay=0.0, max_steps=1))
    resumed.run()
    torch.testing.assert_close(dit_output(resumed), dit_output(first), rtol=1e-5, atol=1e-6)
    assert resumed.config.lora_rank == RANK


def test_lora_rank_clash_is_an_error(trained, tmp_path):
    with pytest.raises(UserError, match=r"--lora_rank 8 clashes with --lora_checkpoint .* which has rank 4"):
        Trainer(load_registry(), config(tmp_path / "x", lora_checkpoint=str(trained[0]), lora_rank=8)).run()


def test_lora_matching_nothing_is_an_error(trained, tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"encoder.layer.lora_A.weight": torch.zeros(4, 8), "encoder.layer.lora_B.weight": torch.zeros(8, 4)}, str(other))
    with pytest.raises(UserError, match=r"--lora_checkpoint .*other.safetensors: none of its 1 layers is a module of dit \(e.g. encoder.layer\)"):
        Trainer(load_registry(), config(tmp_path / "x", lora_checkpoint=str(other))).run()


def test_preset_lora_merge_equals_the_lora_applied_unmerged(trained, tmp_path):
    path, first = trained
    merged = Trainer(load_registry(), config(tmp_path / "merged", preset_lora_path=str(path), lora_rank=2,
                                             learning_rate=1e-30, weight_decay=0.0, max_steps=1))
    merged.run()  # the new LoRA starts at zero (B = 0), so the output is the merged base's
    torch.testing.assert_close(dit_output(merged), dit_output(first), rtol=1e-4, atol=1e-5)


def test_preset_lora_merges_into_an_fp8_base(trained, tmp_path):
    path, first = trained
    merged = Trainer(load_registry(), config(tmp_path / "fp8", preset_lora_path=str(path), fp8_models="dit",
                                             lora_rank=2, learning_rate=1e-30, weight_decay=0.0, max_steps=1))
    merged.run()
    assert merged.pipeline.modules["dit"].blocks[0].to_q.base_layer.weight.dtype == FP8
    expected, got = dit_output(first), dit_output(merged)
    assert (got - expected).norm() / expected.norm() < 0.1  # equal up to FP8 rounding
