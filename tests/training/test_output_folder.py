"""One run owns its output folder: earlier results are never replaced unless asked, a lock stops a
second run (a stale one is taken over), files get the user's umask. Real runs of the toy family
through the CLI: in-process (run_main), but for the run that holds the lock, its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import EXAMPLE_DATA, cli_env, run_main

LOCK = ".diffsynth.lock"


def args(out: Path, *extra: str) -> list[str]:
    return ["train", "toy", "--dataset_base_path", str(EXAMPLE_DATA), "--lora_base_model", "dit", "--lora_rank", "4",
            "--output_path", str(out), *extra]


def train(models: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_main(*args(out, *extra), DIFFSYNTH_MODEL_BASE_PATH=str(models))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerun_is_refused_and_overwrite_replaces_the_earlier_run(toy_models, tmp_path):
    out = tmp_path / "out"
    first = train(toy_models, out, "--max_steps", "4", "--checkpointing_steps", "2")
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    again = train(toy_models, out, "--max_steps", "2")
    assert again.returncode == 2 and "holds the results of an earlier run" in again.stderr
    assert snapshot(out) == before, "the refused run changed the earlier results"
    assert not (out / LOCK).exists()

    replaced = train(toy_models, out, "--max_steps", "2", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert not (out / "checkpoints").exists(), "the earlier run's checkpoints were left to mix with this run"
    assert len((out / "loss_log.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "training_args.json").read_text())["max_steps"] == 2
    assert (out / "epoch-0.safetensors").read_bytes() != before["epoch-0.safetensors"]


def test_overwrite_keeps_everything_when_the_run_fails_before_training(toy_models, tmp_path):
    out = tmp_path / "out"
    assert train(toy_models, out, "--max_steps", "2").returncode == 0
    before = snapshot(out)
    bad = train(toy_models, out, "--max_steps", "2", "--overwrite", "--model_paths", f'["{tmp_path / "nope.safetensors"}"]')
    assert bad.returncode == 2
    assert snapshot(out) == before


def test_resume_latest_starts_afresh_after_a_run_killed_before_its_first_checkpoint(toy_models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "training_args.json").write_text("{}")  # what a run killed in its first steps leaves
    (out / "loss_log.jsonl").write_text('{"step": 1}\n{"st')
    result = train(toy_models, out, "--max_steps", "3", "--resume_from_checkpoint", "latest")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["step"] for line in (out / "loss_log.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_resume_latest_without_the_pointer_uses_the_newest_complete_checkpoint(toy_models, tmp_path):
    out = tmp_path / "out"
    assert train(toy_models, out, "--max_steps", "4", "--checkpointing_steps", "2").returncode == 0
    (out / "checkpoints" / "latest").unlink()  # a save killed between its rename and the pointer
    result = train(toy_models, out, "--max_steps", "6", "--resume_from_checkpoint", "latest")
    assert result.returncode == 0, result.stderr
    steps = [json.loads(line)["step"] for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_checkpoints_total_limit_one_keeps_the_newest(toy_models, tmp_path):
    out = tmp_path / "out"
    result = train(toy_models, out, "--max_steps", "6", "--checkpointing_steps", "2", "--checkpoints_total_limit", "1")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-6"]


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(toy_models, tmp_path):
    out = tmp_path / "out"
    running = subprocess.Popen(
        [sys.executable, "-m", "diffsynth", *args(out, "--dataset_repeat", "100000")],
        env=cli_env(DIFFSYNTH_MODEL_BASE_PATH=str(toy_models)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "loss_log.jsonl").is_file() or not (out / "loss_log.jsonl").read_text():
            assert running.poll() is None, running.communicate()[1]
            assert time.monotonic() < deadline, "the first run made no progress"
            time.sleep(0.05)
        log_before = (out / "loss_log.jsonl").stat().st_size
        second = train(toy_models, out, "--max_steps", "1", "--overwrite")
        assert second.returncode == 2
        assert second.stderr.strip().startswith(f"error: --output_path {out} is in use by another run (pid {running.pid} on ")
        assert (out / "loss_log.jsonl").stat().st_size >= log_before  # the first run's log was not truncated
    finally:
        running.send_signal(signal.SIGTERM)
        _, err = running.communicate(timeout=120)
    assert running.returncode == 143, err
    assert not (out / LOCK).exists(), "the lock outlived its run"


def test_a_stale_lock_of_a_dead_process_is_taken_over(toy_models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    import socket

    (out / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "1"}))
    result = train(toy_models, out, "--max_steps", "1")
    assert result.returncode == 0, result.stderr
    assert f"removing the lock of a run that no longer runs (pid {dead.pid})" in result.stderr
    assert not (out / LOCK).exists()


def test_files_get_the_users_umask(toy_models, tmp_path):
    out = tmp_path / "out"
    mask = os.umask(0o027)  # the whole run under the user's umask, as a shell with `umask 027` starts it
    try:
        result = train(toy_models, out, "--max_steps", "2", "--checkpointing_steps", "2")
    finally:
        os.umask(mask)
    assert result.returncode == 0, result.stderr
    modes = {str(p.relative_to(out)): oct(p.stat().st_mode & 0o777) for p in out.rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {oct(0o640)}, modes


def test_models_init_refuses_a_model_folder_and_overwrite_replaces_it(tmp_path):
    folder = tmp_path / "Toy"
    assert run_main("models", "init", "toy", str(folder), "--preset", "tiny").returncode == 0
    before = snapshot(folder)
    again = run_main("models", "init", "toy", str(folder), "--preset", "tiny", "--seed", "1")
    assert again.returncode == 2 and "folder is not empty" in again.stderr
    assert snapshot(folder) == before
    replaced = run_main("models", "init", "toy", str(folder), "--preset", "tiny", "--seed", "1", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert snapshot(folder) != before
    mask = os.umask(0)
    os.umask(mask)
    assert {oct(p.stat().st_mode & 0o777) for p in folder.rglob("*") if p.is_file()} == {oct(0o666 & ~mask)}
