"""Validation loss (issue 15): deterministic held-out loss at fixed noise, best file by it, and
a run with validation trains exactly as one without."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.plugins import load_registry
from diffsynth.training.trainer import Trainer
from tests.conftest import EXAMPLE_DATA


@pytest.fixture
def offline(toy_models, monkeypatch):
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(toy_models))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")


@pytest.fixture
def held_out(tmp_path):
    """Two of the example rows as a validation metadata file (paths relative to the dataset)."""
    rows = list(csv.DictReader(open(EXAMPLE_DATA / "metadata.csv")))[:2]
    path = tmp_path / "validation.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def config(out, **extra) -> TrainConfig:
    flags = dict(family="toy", dataset_base_path=str(EXAMPLE_DATA), lora_base_model="dit", lora_rank=4,
                 learning_rate=3e-2, dataset_repeat=2, output_path=str(out))
    return TrainConfig(**{**flags, **extra})


def log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]


def test_val_loss_is_logged_and_training_is_unchanged(offline, held_out, tmp_path):
    plain = Trainer(load_registry(), config(tmp_path / "plain")).run()
    checked = Trainer(load_registry(), config(tmp_path / "val", validation_metadata_path=str(held_out),
                                              validation_steps=4)).run()
    assert checked.losses == plain.losses  # validation draws from its own generator
    a, b = load_file(str(plain.files[0])), load_file(str(checked.files[0]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = log(tmp_path / "val")
    with_val = [r["step"] for r in rows if "val_loss" in r]
    assert with_val == [4, 8, 12, 16]  # every 4 steps, the last one included
    assert all(r["val_loss"] > 0 for r in rows if "val_loss" in r)


def test_val_loss_is_deterministic_for_the_same_weights(offline, held_out, tmp_path):
    """Same weights, same val_loss: a frozen step (lr 1e-30) twice gives equal figures; training
    at a real rate moves it."""
    frozen = dict(validation_metadata_path=str(held_out), validation_steps=1, learning_rate=1e-30, max_steps=2)
    Trainer(load_registry(), config(tmp_path / "a", **frozen)).run()
    values = [r["val_loss"] for r in log(tmp_path / "a")]
    assert values[0] == values[1]
    Trainer(load_registry(), config(tmp_path / "b", validation_metadata_path=str(held_out), validation_steps=4)).run()
    moved = [r["val_loss"] for r in log(tmp_path / "b") if "val_loss" in r]
    assert moved[0] != moved[-1]


def test_keep_best_writes_the_lowest_val_loss_weights(offline, held_out, tmp_path):
    out = tmp_path / "best"
    result = Trainer(load_registry(), config(out, validation_metadata_path=str(held_out), validation_steps=2,
                                             keep_best=True)).run()
    rows = [r for r in log(out) if "val_loss" in r]
    lowest = min(rows, key=lambda r: r["val_loss"])
    record = json.loads((out / "best.json").read_text())
    assert record == {"step": lowest["step"], "val_loss": lowest["val_loss"]}
    assert [p.name for p in result.best_files] == ["best.safetensors"]
    if lowest["step"] == rows[-1]["step"]:  # the best is the final weights: same file content
        final = load_file(str(result.files[0]))
        best = load_file(str(out / "best.safetensors"))
        assert all(torch.equal(final[k], best[k]) for k in final)


def test_keep_best_without_validation_data_is_refused(offline, tmp_path):
    with pytest.raises(UserError, match="--keep_best needs --validation_metadata_path"):
        Trainer(load_registry(), config(tmp_path / "x", keep_best=True)).run()


def test_the_run_ends_with_a_loss_plot_and_one_line_naming_everything(offline, held_out, tmp_path):
    from PIL import Image

    from diffsynth.cli.train_cmd import final_line

    out = tmp_path / "run"
    result = Trainer(load_registry(), config(out, validation_metadata_path=str(held_out), validation_steps=4)).run()
    plot = Image.open(out / "loss.png")
    assert plot.size == (800, 450)
    # the val_loss points are drawn in their own colour
    assert (220, 90, 30) in {c for _, c in plot.getcolors(maxcolors=1 << 16)}
    line = final_line(result)
    assert line.startswith(f"trained {result.steps} steps in ") and f"final smoothed loss {result.smoothed_loss:.4g}" in line
    assert "epoch-0.safetensors" in line and "loss.png" in line and line.endswith(f"in {out}")


def test_validation_prompts_need_a_family_that_can_sample(offline, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    with pytest.raises(UserError, match="--validation_prompts: toy cannot be sampled"):
        Trainer(load_registry(), config(tmp_path / "x", validation_prompts=str(prompts))).run()
    assert not (tmp_path / "x" / "loss_log.jsonl").exists()  # refused before training


def test_validation_split_holds_out_the_last_rows_from_training(offline, tmp_path):
    out = tmp_path / "split"
    Trainer(load_registry(), config(out, validation_split=0.25, validation_steps=3)).run()
    rows = log(out)
    trained_on = {r for row in rows for r in row["rows"]}
    assert trained_on == set(range(6))  # 8 example rows: the last 2 are held out
    assert [r["step"] for r in rows if "val_loss" in r] == [3, 6, 9, 12]


@pytest.mark.parametrize("flags, message", [
    ({"validation_split": 1.5}, "--validation_split: expected a fraction between 0 and 1"),
    ({"validation_split": 0.99}, "--validation_split 0.99: 8 row"),
    ({"validation_steps": 2}, "--validation_steps needs"),
])
def test_bad_validation_flags_are_one_line(offline, tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        Trainer(load_registry(), config(tmp_path / "x", **flags)).run()


def test_resume_keeps_val_loss_and_the_best_file_consistent(offline, held_out, tmp_path):
    flags = dict(validation_metadata_path=str(held_out), validation_steps=4, keep_best=True, checkpointing_steps=4)
    straight = tmp_path / "straight"
    Trainer(load_registry(), config(straight, **flags)).run()
    resumed = tmp_path / "resumed"
    Trainer(load_registry(), config(resumed, max_steps=8, **flags)).run()
    Trainer(load_registry(), config(resumed, resume_from_checkpoint="latest", **flags)).run()
    pick = lambda out: [(r["step"], r.get("val_loss")) for r in log(out)]  # noqa: E731
    assert pick(resumed) == pick(straight)
    assert (resumed / "best.json").read_text() == (straight / "best.json").read_text()
    a, b = load_file(str(straight / "best.safetensors")), load_file(str(resumed / "best.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
