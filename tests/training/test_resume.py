"""Never lose a run: exact resume after SIGKILL/SIGTERM/SIGINT, crash inside a save, pruning,
non-finite losses. All on the toy family, through the real CLI: the runs that are killed or
signalled in subprocesses of their own; the uninterrupted reference, the runs that resume them
and the rest in this process (run_main), from what the killed ones left on disk."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import EXAMPLE_DATA, cli_env, run_main

ARGS = [
    "--dataset_base_path", str(EXAMPLE_DATA), "--lora_base_model", "dit", "--lora_rank", "4",
    "--dataset_repeat", "24", "--learning_rate", "1e-3", "--gradient_accumulation_steps", "2",
    "--checkpointing_steps", "5",
]
TOTAL_STEPS = 8 * 24 // 2  # 96: every kill below lands mid-run (the furthest after ~50 steps)


def train_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "diffsynth", "train", "toy", *ARGS, "--output_path", str(out), *extra]


def log_steps(out: Path) -> int:
    try:
        return len((out / "loss_log.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def start(out: Path, models: Path, module: str = "diffsynth", **env: str) -> subprocess.Popen:
    cmd = train_cmd(out, "--resume_from_checkpoint", "latest")
    return subprocess.Popen(
        [cmd[0], "-m", module, *cmd[3:]],
        env=cli_env(DIFFSYNTH_MODEL_BASE_PATH=str(models), **env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_steps(proc: subprocess.Popen, out: Path, steps: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while log_steps(out) < steps:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.01)


def finish(out: Path, models: Path) -> None:
    """Run to the end, resuming from the latest checkpoint if there is one."""
    result = run_main("train", "toy", *ARGS, "--output_path", str(out), "--resume_from_checkpoint", "latest",
                      DIFFSYNTH_MODEL_BASE_PATH=str(models))
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def reference(toy_models, tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("reference")
    finish(out, toy_models)
    return out


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "epoch-0.safetensors"), load_file(b / "epoch-0.safetensors")
    assert wa.keys() == wb.keys()
    assert all(wa[k].equal(wb[k]) for k in wa), "final weights differ"
    losses = lambda p: [json.loads(line)["loss"] for line in (p / "loss_log.jsonl").read_text().splitlines()]  # noqa: E731
    assert losses(a) == losses(b) and len(losses(a)) == TOTAL_STEPS


def test_sigkill_at_random_points_and_inside_a_save_resume_exactly(reference, toy_models, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(1234)
    for _ in range(3):  # killed mid-step at random points
        proc = start(out, toy_models)
        wait_for_steps(proc, out, log_steps(out) + rng.randint(3, 40))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # killed inside a save, between writing the new checkpoint and renaming it into place
    before = (out / "checkpoints" / "latest").read_text()
    proc = start(out, toy_models, module="killed_before_rename")  # tests/plugins/killed_before_rename.py
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert (out / "checkpoints" / "latest").read_text() == before
    assert list((out / "checkpoints").glob(".incomplete-*")), "the killed save left its temporary folder"
    assert (out / "checkpoints" / before.strip() / "state.json").is_file()
    finish(out, toy_models)
    assert not list((out / "checkpoints").glob(".incomplete-*"))
    assert_same_run(reference, out)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_exits_and_resumes_exactly(reference, toy_models, tmp_path, sig, code):
    out = tmp_path / "run"
    proc = start(out, toy_models)
    wait_for_steps(proc, out, 23)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    line = err.strip().splitlines()[-1]
    step = json.loads((out / "loss_log.jsonl").read_text().splitlines()[-1])["step"]
    assert line == (f"interrupted by {sig.name} after step {step}: checkpoint {out / 'checkpoints' / f'step-{step}'}; "
                    "continue with --resume_from_checkpoint latest")
    assert (out / "checkpoints" / "latest").read_text().strip() == f"step-{step}"
    finish(out, toy_models)
    assert_same_run(reference, out)


def test_second_signal_exits_at_once_leaving_last_checkpoint_intact(toy_models, tmp_path):
    out = tmp_path / "run"
    proc = start(out, toy_models)
    wait_for_steps(proc, out, 12)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    latest = (out / "checkpoints" / "latest").read_text().strip()
    assert (out / "checkpoints" / latest / "state.json").is_file()
    finish(out, toy_models)  # and it still resumes


def test_total_limit_keeps_newest_checkpoints(toy_models, tmp_path):
    out = tmp_path / "run"
    result = run_main("train", "toy", *ARGS, "--output_path", str(out), "--max_steps", "23",
                     "--checkpoints_total_limit", "2", DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-15", "step-20"]


def test_resume_from_a_folder_that_is_not_a_checkpoint(toy_models, tmp_path):
    result = run_main("train", "toy", *ARGS, "--output_path", str(tmp_path / "o"),
                     "--resume_from_checkpoint", str(tmp_path), DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --resume_from_checkpoint: {tmp_path} is not a training checkpoint (no state.json)"


def test_resume_with_a_different_config_is_refused(toy_models, tmp_path):
    out = tmp_path / "o"
    first = run_main("train", "toy", *ARGS, "--output_path", str(out), "--max_steps", "5", DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    assert first.returncode == 0, first.stderr
    args = [a if a != "4" else "8" for a in ARGS]  # --lora_rank 8
    result = run_main("train", "toy", *args, "--output_path", str(out), "--resume_from_checkpoint", "latest",
                     DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: --resume_from_checkpoint: {out / 'checkpoints' / 'step-5'} was written by a "
                                     "different run (lora_rank 4 there, 8 here)")


@pytest.fixture
def nan_dataset(tmp_path) -> Path:
    """The example data with row 6's prompt (line 7) replaced by the toy family's NaN trigger."""
    data = tmp_path / "data"
    shutil.copytree(EXAMPLE_DATA, data, ignore=shutil.ignore_patterns("edit", "metadata.json*"))
    lines = (data / "metadata.csv").read_text().splitlines()
    image = lines[6].split(",")[0]
    lines[6] = f"{image},<nan>"
    (data / "metadata.csv").write_text("\n".join(lines) + "\n")
    return data


def test_nonfinite_loss_stops_naming_step_and_row(toy_models, tmp_path, nan_dataset):
    out = tmp_path / "o"
    result = run_main("train", "toy", "--dataset_base_path", str(nan_dataset), "--lora_base_model", "dit",
                     "--checkpointing_steps", "2", "--output_path", str(out), DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    steps_done = log_steps(out)
    image = (nan_dataset / "metadata.csv").read_text().splitlines()[6].split(",")[0]
    last = out / "checkpoints" / f"step-{steps_done - steps_done % 2}"
    assert line == (f"error: non-finite loss (nan) at step {steps_done + 1}, dataset row 6 ({image}); stopped without "
                    f"updating the weights; last checkpoint: {last}; --skip_nonfinite N skips up to N such micro-batches")
    assert (last / "state.json").is_file()


def test_skip_nonfinite_continues(toy_models, tmp_path, nan_dataset):
    out = tmp_path / "o"
    result = run_main("train", "toy", "--dataset_base_path", str(nan_dataset), "--lora_base_model", "dit",
                     "--skip_nonfinite", "1", "--output_path", str(out), DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    assert result.returncode == 0, result.stderr
    assert "warning: non-finite loss (nan)" in result.stderr and "skipped (1 of --skip_nonfinite 1)" in result.stderr
    weights = load_file(out / "epoch-0.safetensors")
    assert all(v.isfinite().all() for v in weights.values())
