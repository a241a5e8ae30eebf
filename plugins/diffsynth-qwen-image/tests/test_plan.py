"""`diffsynth train qwen-image --vram SIZE` on the tiny preset: plan's choice (the fastest option
set whose predicted peak fits) is printed, applied and recorded in training_args.json; when
nothing fits, one line names the smallest predicted peak."""

import json
import re
from pathlib import Path

import pytest

from diffsynth.cli import main
from diffsynth.plan import choices

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"
MIB = 1024**2
FLAGS = ["--lora_base_model", "dit", "--lora_rank", "4", "--max_pixels", "4096"]


def train(tmp_path: Path, vram: str) -> None:
    main(["train", "qwen-image", "--dataset_base_path", str(DATA), "--dataset_metadata_path", str(DATA / "metadata.csv"),
          "--max_steps", "1", "--output_path", str(tmp_path), *FLAGS, "--vram", vram])  # fmt: skip


def needed(peak: int) -> int:
    """Card memory an option set's predicted peak needs (margin and reserve of choices.fits)."""
    return int(peak * (1 + choices.MARGIN) + choices.RESERVED)


@pytest.mark.slow  # about 70 s: up to 8 option sets planned twice (test, then train) and a step
def test_train_vram_applies_and_records_plans_choice(model_base, monkeypatch, tmp_path, capsys):
    from diffsynth.config import TrainConfig
    from diffsynth.plan.run import Planner
    from diffsynth.plugins import load_registry

    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(model_base))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    planner = Planner(load_registry(), TrainConfig(family="qwen-image", lora_base_model="dit", lora_rank=4, max_pixels=4096), "cpu")
    order = choices.candidates(planner.floor, planner.can_fp8_denoiser, bool(planner.encoders), planner.can_offload)
    smallest = min(needed(planner.predicted(o).peak) for o in order)
    assert smallest < needed(planner.base.peak)  # some option saves memory on the tiny preset too
    vram = (smallest + needed(planner.base.peak)) // 2  # the run as given does not fit, something does
    options, _ = planner.choose(vram)
    assert options != planner.floor
    train(tmp_path, f"{vram / MIB:.3f}MiB")
    out = capsys.readouterr().out
    assert f"{options.label()} fits" in out and choices.flags(options, planner.denoiser, planner.encoders) in out
    recorded = json.loads((tmp_path / "training_args.json").read_text())
    applied = planner.config_for(options)
    assert recorded["use_gradient_checkpointing"] == applied.use_gradient_checkpointing
    assert recorded["fp8_models"] == applied.fp8_models
    assert recorded["offload_models"] == applied.offload_models
    assert (tmp_path / "loss_log.jsonl").read_text().count("\n") == 1  # and it trained

    # nothing fits (1 GiB is the reserve alone): one line naming the smallest predicted peak
    with pytest.raises(SystemExit):
        train(tmp_path / "none", "1GiB")
    error = capsys.readouterr().err.strip()
    assert re.fullmatch(r"error: --vram 1\.0 GiB: nothing fits; the smallest predicted peak is [0-9.]+ GiB \(.+\), "
                        r"which needs [0-9.]+ GiB with the margin", error), error  # fmt: skip
    assert not (tmp_path / "none").exists()
