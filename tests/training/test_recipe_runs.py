"""Caption dropout, LR schedules, EMA and gradient clipping do what they say, in real toy runs
through the Trainer (8 example rows; steps = 8 x --dataset_repeat)."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from diffsynth.data.caption_dropout import drops_caption, dropout_draw
from tests.conftest import EXAMPLE_DATA
from tests.training.recipe_runs import losses, train, weights

# -- caption dropout ------------------------------------------------------------------------------


def test_dropout_rate_is_kept_within_tolerance_over_many_draws():
    for rate in (0.05, 0.3, 0.5):
        drawn = sum(drops_caption(rate, 7, epoch, 0, pos) for epoch in range(4) for pos in range(10_000))
        assert abs(drawn / 40_000 - rate) < 4 * math.sqrt(rate * (1 - rate) / 40_000)
    assert not any(drops_caption(0.0, 7, 0, 0, pos) for pos in range(1000))
    assert all(drops_caption(1.0, 7, 0, 0, pos) for pos in range(1000))


def test_dropout_is_a_function_of_seed_epoch_rank_and_position():
    a = [dropout_draw(1, 0, 0, pos) for pos in range(200)]
    assert a == [dropout_draw(1, 0, 0, pos) for pos in range(200)]  # same again (so a resume drops the same)
    for other in ([dropout_draw(2, 0, 0, p) for p in range(200)], [dropout_draw(1, 1, 0, p) for p in range(200)],
                  [dropout_draw(1, 0, 1, p) for p in range(200)]):
        assert other != a


def _relabelled_dataset(tmp_path):
    """examples/data with every prompt changed (same images, same order)."""
    folder = tmp_path / "relabelled"
    shutil.copytree(EXAMPLE_DATA / "images", folder / "images")
    rows = (EXAMPLE_DATA / "metadata.csv").read_text().splitlines()
    (folder / "metadata.csv").write_text("\n".join([rows[0]] + [f"{r.split(',')[0]},something else {i}" for i, r in enumerate(rows[1:])]) + "\n")
    return folder


def test_dropped_prompts_train_as_the_empty_prompt(toy_models, tmp_path):
    """With rate 1 every prompt is replaced, so the prompts cannot matter; with rate 0 they do."""
    relabelled = _relabelled_dataset(tmp_path)
    runs = {}
    for rate in (0.0, 1.0):
        for name, data in (("orig", str(EXAMPLE_DATA)), ("relabelled", str(relabelled))):
            out = tmp_path / f"{name}-{rate}"
            train(toy_models, out, dataset_base_path=data, caption_dropout_rate=rate, trainable_models="dit", lora_base_model=None)
            runs[name, rate] = weights(out / "epoch-0.safetensors")
    assert all(torch.equal(runs["orig", 1.0][k], runs["relabelled", 1.0][k]) for k in runs["orig", 1.0])
    assert not all(torch.equal(runs["orig", 0.0][k], runs["relabelled", 0.0][k]) for k in runs["orig", 0.0])


# -- LR schedules ---------------------------------------------------------------------------------

TOTAL, WARMUP, LR = 16, 4, 1e-3


def expected_lr(name: str, step: int) -> float:
    """diffusers' schedules, written out: `step` counts optimizer steps done before this one."""
    if name == "constant":
        return LR
    if step < WARMUP:
        return LR * step / WARMUP
    progress = (step - WARMUP) / (TOTAL - WARMUP)
    if name == "constant_with_warmup":
        return LR
    if name == "linear":
        return LR * (TOTAL - step) / (TOTAL - WARMUP)
    if name == "cosine":
        return LR * 0.5 * (1 + math.cos(math.pi * progress))
    if name == "cosine_with_restarts":  # 2 cycles
        return LR * 0.5 * (1 + math.cos(math.pi * ((2 * progress) % 1.0)))
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts"])
def test_the_schedule_sets_the_lr_of_each_step(toy_models, tmp_path, name):
    warmup = 0 if name == "constant" else WARMUP  # constant has no warm-up (refused with one)
    train(toy_models, tmp_path, dataset_repeat=2, lr_scheduler=name, lr_warmup_steps=warmup, lr_num_cycles=2, learning_rate=LR)
    logged = [row["lr"] for row in losses(tmp_path)]
    assert len(logged) == TOTAL
    assert logged == pytest.approx([expected_lr(name, s) for s in range(TOTAL)], rel=1e-6, abs=1e-12)


def test_the_schedule_counts_optimizer_steps_with_accumulation(toy_models, tmp_path):
    train(toy_models, tmp_path, dataset_repeat=4, gradient_accumulation_steps=2, lr_scheduler="linear",
          lr_warmup_steps=WARMUP, learning_rate=LR)
    logged = [row["lr"] for row in losses(tmp_path)]
    assert logged == pytest.approx([expected_lr("linear", s) for s in range(TOTAL)], rel=1e-6, abs=1e-12)


# -- EMA ------------------------------------------------------------------------------------------


def test_ema_weights_equal_the_formula(toy_models, tmp_path):
    decay, steps = 0.6, 4
    train(toy_models, tmp_path, trainable_models="dit", lora_base_model=None, ema_decay=decay, max_steps=steps,
          checkpointing_steps=1, save_steps=steps)
    initial = {f"dit.{k}": v for k, v in load_file(str(toy_models / "toy" / "Toy" / "dit" / "model.safetensors")).items()}
    ema = {k: v.float().clone() for k, v in initial.items()}
    for step in range(1, steps + 1):
        trained = load_file(str(tmp_path / "checkpoints" / f"step-{step}" / "trainable.safetensors"))
        for k in ema:
            ema[k] = decay * ema[k] + (1 - decay) * trained[k].float()
        in_checkpoint = load_file(str(tmp_path / "checkpoints" / f"step-{step}" / "ema.safetensors"))
        assert all(torch.allclose(in_checkpoint[k], ema[k], rtol=1e-6, atol=1e-7) for k in ema)
    saved = weights(tmp_path / f"step-{steps}-ema.safetensors")
    raw = weights(tmp_path / f"step-{steps}.safetensors")
    assert set(saved) == set(raw)  # the same keys as the raw file: it loads where that one does
    assert all(torch.allclose(saved[k], ema[f"dit.{k}"], rtol=1e-6, atol=1e-7) for k in saved)
    assert not all(torch.equal(saved[k], raw[k]) for k in saved)
    assert "EMA" in (tmp_path / "README.md").read_text()


def test_lora_ema_file_has_the_raw_files_keys(toy_models, tmp_path):
    train(toy_models, tmp_path, ema_decay=0.9, max_steps=3)
    raw, ema = weights(tmp_path / "epoch-0.safetensors"), weights(tmp_path / "epoch-0-ema.safetensors")
    assert set(raw) == set(ema) and all(raw[k].shape == ema[k].shape for k in raw)


def test_resume_continues_ema_schedule_and_dropout_exactly(toy_models, tmp_path):
    options = dict(ema_decay=0.8, lr_scheduler="constant_with_warmup", lr_warmup_steps=3, caption_dropout_rate=0.5,
                   timestep_sampling="logit_normal", max_grad_norm=0.05, dataset_repeat=2, checkpointing_steps=5)
    straight = tmp_path / "straight"
    train(toy_models, straight, **options)
    resumed = tmp_path / "resumed"
    train(toy_models, resumed, **{**options, "max_steps": 7})  # stops after the checkpoint at step 5
    for f in resumed.glob("*.safetensors"):
        f.unlink()
    train(toy_models, resumed, **options, resume_from_checkpoint=str(resumed / "checkpoints" / "step-5"), overwrite=False)
    for name in ("epoch-0.safetensors", "epoch-0-ema.safetensors"):
        a, b = weights(straight / name), weights(resumed / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert [r["lr"] for r in losses(straight)] == [r["lr"] for r in losses(resumed)]
    assert [r["loss"] for r in losses(straight)] == [r["loss"] for r in losses(resumed)]


def test_resuming_with_ema_from_a_checkpoint_without_one_is_refused(toy_models, tmp_path):
    from diffsynth.errors import UserError

    train(toy_models, tmp_path, max_steps=2, checkpointing_steps=2)
    with pytest.raises(UserError, match="ema_decay"):
        train(toy_models, tmp_path, max_steps=4, ema_decay=0.9, resume_from_checkpoint="latest")


# -- gradient clipping ----------------------------------------------------------------------------


def test_max_grad_norm_clips_the_global_norm():
    from accelerate import Accelerator

    from diffsynth.config import TrainConfig
    from diffsynth.training.recipes import RunRecipe

    accelerator = Accelerator(cpu=True)
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))]
    for p, g in zip(params, (torch.tensor([3.0, 0, 0]), torch.tensor([0, 4.0, 0, 0]))):
        p.grad = g.clone()
    RunRecipe(TrainConfig(max_grad_norm=1.0), None, None, accelerator).clip_gradients(params)
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in params))
    assert norm == pytest.approx(1.0, rel=1e-5)
    assert params[0].grad[0] / params[1].grad[1] == pytest.approx(3 / 4)  # direction kept
    for p in params:
        p.grad = torch.full_like(p, 5.0)
    RunRecipe(TrainConfig(), None, None, accelerator).clip_gradients(params)  # default 0: off (DiffSynth-Studio)
    assert all(torch.equal(p.grad, torch.full_like(p, 5.0)) for p in params)
