"""One test per row of docs/errors.md: the documented one-line message, exactly; exit status 2;
no traceback; nothing already under --output_path changed.

Each row of the table in docs/errors.md is `| id | when | message |`; the message may hold
`{placeholders}` that the scenario below fills in (paths of this test's temporary files).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from diffsynth.cli import main
from tests.conftest import EXAMPLE_DATA, ROOT, cli_env
from tests.conftest import run_main as run_in_process

DOC = ROOT / "docs" / "errors.md"
ROW = re.compile(r"^\| `(?P<id>[a-z0-9-]+)` \| (?P<when>[^|]+) \| `(?P<message>.+)` \|$")


def documented() -> dict[str, tuple[str, str]]:
    """id -> (when, message template)."""
    rows = {m["id"]: (m["when"].strip(), m["message"]) for line in DOC.read_text().splitlines() if (m := ROW.match(line))}
    assert rows, "no rows found in docs/errors.md"
    return rows


class Case:
    """A scenario: a dataset folder and output folder in tmp, and the CLI arguments."""

    def __init__(self, tmp: Path, models: Path) -> None:
        self.tmp, self.models = tmp, models
        self.data = tmp / "data"
        shutil.copytree(EXAMPLE_DATA, self.data, ignore=shutil.ignore_patterns("edit", "video"))
        self.out = tmp / "out"
        self.out.mkdir()
        (self.out / "keep.txt").write_text("written by an earlier run")
        self.subs: dict[str, str] = {"data": str(self.data), "out": str(self.out)}
        self.args: list[str] = []

    def train(self, *extra: str, data: Path | None = None) -> None:
        self.args = ["train", "toy", "--dataset_base_path", str(data or self.data), "--output_path", str(self.out),
                     "--lora_base_model", "dit", *extra]

    def metadata(self, name: str, content: str | bytes) -> Path:
        path = self.data / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        self.subs["metadata"] = str(path)
        return path

    def image_row(self, name: str, content: bytes) -> None:
        (self.data / "images" / name).write_bytes(content)
        self.metadata("broken.csv", f"image,prompt\nimages/{name},a broken picture\n")
        self.subs["image"] = str(self.data / "images" / name)
        self.train("--dataset_metadata_path", self.subs["metadata"])


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (and holds no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def scenario(case: Case, id: str) -> None:  # noqa: C901 - one branch per documented row
    c = case
    if id == "csv-fields":
        c.train("--dataset_metadata_path", str(c.metadata("m.csv", "image,prompt\nimages/red_circle.png,a,b\n")))
    elif id == "metadata-empty":
        c.train("--dataset_metadata_path", str(c.metadata("m.csv", "")))
    elif id == "metadata-no-rows":
        c.train("--dataset_metadata_path", str(c.metadata("m.jsonl", "\n")))
    elif id == "json-invalid":
        c.train("--dataset_metadata_path", str(c.metadata("m.json", '[{"image": "images/red_circle.png",\n')))
    elif id == "json-not-list":
        c.train("--dataset_metadata_path", str(c.metadata("m.json", '{"image": "images/red_circle.png"}')))
    elif id == "jsonl-not-object":
        c.train("--dataset_metadata_path", str(c.metadata("m.jsonl", '{"image": "images/red_circle.png", "prompt": "x"}\n[1, 2]\n')))
    elif id == "not-utf8":
        c.train("--dataset_metadata_path", str(c.metadata("m.csv", "image,prompt\nimages/red_circle.png,caf\xe9\n".encode("latin-1"))))
    elif id == "missing-column":
        c.subs["metadata"] = str(c.data / "metadata.csv")
        c.train("--data_file_keys", "image,edit_image")
    elif id == "missing-file":
        c.train("--dataset_metadata_path", str(c.metadata("m.csv", "image,prompt\nimages/red_circle.png,a\nimages/nope.png,b\n")))
    elif id == "image-empty":
        c.image_row("empty.png", b"")
    elif id == "image-truncated":
        whole = (EXAMPLE_DATA / "images" / "red_circle.png").read_bytes()
        c.image_row("cut.png", whole[: len(whole) // 2])
    elif id == "image-not-image":
        c.image_row("notes.png", b"these are my notes, not a picture\n")
    elif id == "image-too-large":
        c.image_row("huge.png", png_header_only(20000, 20000))
    elif id == "model-paths-json":
        c.train("--model_paths", "[oops")
    elif id == "model-paths-missing":
        c.subs["path"] = str(c.tmp / "nope.safetensors")
        c.train("--model_paths", f'["{c.subs["path"]}"]')
    elif id == "checkpoint-unknown":
        c.subs["path"] = str(c.tmp / "other.safetensors")
        save_file({"encoder.weight": torch.zeros(2)}, c.subs["path"])
        c.train("--model_paths", f'["{c.subs["path"]}"]')
    elif id == "pth-pickle":
        c.subs["path"] = str(c.tmp / "model.pth")
        torch.save({"weight": torch.zeros(2), "config": Case}, c.subs["path"])
        c.train("--model_paths", f'["{c.subs["path"]}"]')
    elif id == "unknown-family":
        from diffsynth.plugins import load_registry

        c.subs["families"] = ", ".join(sorted(load_registry().families))
        c.args = ["train", "no-such-family", "--output_path", str(c.out)]
    elif id == "unknown-flag":
        c.train("--lora_rnak", "8")
    elif id == "lora-targets":
        c.train("--lora_target_modules", "to_v,ff.net.2")
    elif id == "lora-targets-partial":  # one typo among good names would train the others silently
        c.train("--lora_target_modules", "to_q,to_kk")
    elif id == "nothing-to-train":
        c.train()
        c.args.remove("--lora_base_model")
        c.args.remove("dit")
    elif id == "output-not-writable":
        blocker = c.tmp / "a-file"
        blocker.write_text("x")
        c.subs["path"] = str(blocker / "out")
        c.train()
        c.args[c.args.index("--output_path") + 1] = c.subs["path"]
    elif id == "height-multiple":
        c.train("--height", "60", "--width", "64")
    elif id == "resume-not-checkpoint":
        c.train("--resume_from_checkpoint", str(c.data))
    elif id == "resume-other-run":
        first = c.tmp / "first"
        assert run_main([*c.args_for(first), "--max_steps", "2", "--checkpointing_steps", "2"])[0] == 0
        shutil.copytree(first / "checkpoints", c.out / "checkpoints")
        c.subs["checkpoint"] = str(c.out / "checkpoints" / "step-2")
        c.train("--lora_rank", "8", "--resume_from_checkpoint", "latest")
    elif id in ("disk-full", "weights-disk-full"):
        pass  # subprocesses; see test_disk_full_during_save_keeps_the_previous_checkpoint and below
    elif id in NEW_SCENARIOS:
        NEW_SCENARIOS[id](c)
    else:
        raise AssertionError(f"docs/errors.md row {id!r} has no scenario in tests/test_errors.py")


def earlier_run(c: Case) -> Path:
    """A real finished run with a checkpoint at step 2, its checkpoints copied into c.out."""
    first = c.tmp / "first"
    assert run_main([*c.args_for(first), "--max_steps", "2", "--checkpointing_steps", "2"])[0] == 0
    shutil.copytree(first / "checkpoints", c.out / "checkpoints")
    c.subs["checkpoints"] = str(c.out / "checkpoints")
    c.subs["checkpoint"] = str(c.out / "checkpoints" / "step-2")
    return c.out / "checkpoints" / "step-2"


def _earlier_results(c: Case, *names: str) -> None:
    for name in names:  # what a finished run leaves (their content does not matter to the check)
        (c.out / name).write_text("from an earlier run")


def _output_has_results(c: Case) -> None:
    _earlier_results(c, "training_args.json", "epoch-0.safetensors")
    c.train()


def _resume_weights_only(c: Case) -> None:
    _earlier_results(c, "epoch-0.safetensors")
    c.train("--resume_from_checkpoint", "latest")


def _output_in_use(c: Case) -> None:
    from diffsynth.training.outputs import LOCK_NAME, this_process

    me = this_process()  # a live process holds the lock: this one
    (c.out / LOCK_NAME).write_text(json.dumps({"pid": me.pid, "host": me.host, "started": me.started}))
    c.subs.update(pid=str(me.pid), host=me.host, lock=str(c.out / LOCK_NAME))
    c.train()


def _resume_latest_missing(c: Case) -> None:
    checkpoints = c.out / "checkpoints"
    (checkpoints / "step-2").mkdir(parents=True)
    (checkpoints / "step-2" / "state.json").write_text("{}")
    (checkpoints / "latest").write_text("step-7\n")
    c.subs["checkpoints"] = str(checkpoints)
    c.train("--resume_from_checkpoint", "latest")


def _resume_truncated(c: Case) -> None:
    weights = earlier_run(c) / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    c.train("--resume_from_checkpoint", "latest")


def _resume_other_family(c: Case) -> None:
    state = earlier_run(c) / "state.json"
    raw = json.loads(state.read_text())
    raw["fingerprint"]["family"] = "other"
    state.write_text(json.dumps(raw))
    c.train("--resume_from_checkpoint", "latest")


def _safetensors(c: Case, header: dict | None = None, raw: bytes | None = None) -> None:
    path = c.tmp / "model.safetensors"
    if header is not None:
        raw = json.dumps(header).encode()
        raw = struct.pack("<Q", len(raw)) + raw + bytes(4)
    path.write_bytes(raw)
    c.subs["path"] = str(path)
    c.train("--model_paths", f'["{path}"]')


def _safetensors_truncated(c: Case) -> None:
    whole = c.tmp / "whole.safetensors"
    save_file({"w": torch.zeros(1000)}, str(whole))
    c.subs["size"] = str(whole.stat().st_size)
    _safetensors(c, raw=whole.read_bytes()[:1000])


def _csv(c: Case, text: str) -> None:
    c.train("--dataset_metadata_path", str(c.metadata("m.csv", text)))


def _jsonl(c: Case, text: str) -> None:
    c.train("--dataset_metadata_path", str(c.metadata("m.jsonl", text)))


def _models_init(c: Case) -> None:
    c.args = ["models", "init", "toy", str(c.out), "--preset", "tiny"]


NEW_SCENARIOS = {
    "output-has-results": _output_has_results,
    "resume-weights-only": _resume_weights_only,
    "overwrite-and-resume": lambda c: c.train("--overwrite", "--resume_from_checkpoint", "latest"),
    "output-in-use": _output_in_use,
    "resume-latest-missing": _resume_latest_missing,
    "resume-truncated": _resume_truncated,
    "resume-other-family": _resume_other_family,
    "resume-path-missing": lambda c: c.train("--resume_from_checkpoint", str(c.data / "nope")),
    "checkpoints-limit": lambda c: c.train("--checkpoints_total_limit", "-1"),
    "max-steps": lambda c: c.train("--max_steps", "0"),
    "save-steps": lambda c: c.train("--save_steps", "-5"),
    "lora-rank": lambda c: c.train("--lora_rank", "0"),
    "learning-rate": lambda c: c.train("--learning_rate", "nan"),
    "learning-rate-negative": lambda c: c.train("--learning_rate", "-1e-4"),
    "lora-alpha": lambda c: c.train("--lora_alpha", "-4"),
    "weight-decay": lambda c: c.train("--weight_decay", "inf"),
    "seed-range": lambda c: c.train("--seed", "-1"),
    "workers-negative": lambda c: c.train("--dataset_num_workers", "-1"),
    "component-unknown": lambda c: (c.train(), c.args.__setitem__(c.args.index("dit"), "unet")),
    "lora-checkpoint-missing": lambda c: (c.subs.__setitem__("path", str(c.tmp / "nope.safetensors")),
                                          c.train("--lora_checkpoint", c.subs["path"])),
    "prompt-empty": lambda c: _csv(c, "image,prompt\nimages/red_circle.png,a\nimages/red_square.png,  \n"),
    "prompt-missing": lambda c: _jsonl(c, '{"image": "images/red_circle.png"}\n'
                                          '{"image": "images/red_square.png", "prompt": "x"}\n'),
    "prompt-not-text": lambda c: _jsonl(c, '{"image": "images/red_circle.png", "prompt": 5}\n'),
    "csv-swallowed": lambda c: _csv(c, 'image,prompt\nimages/red_circle.png,"a red circle\n'
                                       "images/red_square.png,a red square\nimages/blue_circle.png,a blue circle\n"),
    "accumulation-rows": lambda c: c.train("--gradient_accumulation_steps", "9"),
    "safetensors-truncated": _safetensors_truncated,
    "safetensors-not-object": lambda c: _safetensors(c, raw=struct.pack("<Q", 2) + b"[]"),
    "safetensors-bad-entry": lambda c: _safetensors(c, header={"w": {"dtype": "F32", "shape": "x", "data_offsets": [0, 4]}}),
    "init-not-empty": _models_init,
    "tokenizer-folder": lambda c: c.train("--tokenizer_path", str(c.data)),
}


def _args_for(self: Case, out: Path) -> list[str]:
    return ["train", "toy", "--dataset_base_path", str(self.data), "--output_path", str(out), "--lora_base_model", "dit"]


Case.args_for = _args_for


def run_main(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("row_id", [i for i in documented() if i not in ("disk-full", "weights-disk-full")])
def test_documented_error(row_id, tmp_path, toy_models, monkeypatch):
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(toy_models))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    case = Case(tmp_path, toy_models)
    scenario(case, row_id)
    before = snapshot(case.out)
    code, stderr = run_main(case.args)
    when, template = documented()[row_id]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.strip() == "error: " + template.format(**case.subs)
    after = snapshot(case.out)
    if when == "when the row is loaded":  # the run had started: it may have begun its logs
        assert all(after[name] == data for name, data in before.items()), "files written before were changed"
    else:
        assert after == before, "the failed run changed files under --output_path"


def test_disk_full_during_save_keeps_the_previous_checkpoint(tmp_path, toy_models):
    case = Case(tmp_path, toy_models)
    base = ["train", "toy", "--dataset_base_path", str(case.data), "--output_path", str(case.out),
            "--trainable_models", "dit", "--checkpointing_steps", "2"]
    env = cli_env(DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    first = run_in_process(*base, "--max_steps", "2", DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    assert first.returncode == 0, first.stderr
    previous = snapshot(case.out / "checkpoints" / "step-2")

    def small_files() -> None:  # files may not grow past 16 KiB: writes fail like on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    full = subprocess.run([sys.executable, "-m", "diffsynth", *base, "--max_steps", "4", "--resume_from_checkpoint", "latest"],
                          env=env, capture_output=True, text=True, preexec_fn=small_files)  # a process: its own file size limit
    assert full.returncode == 2
    expected = "error: " + documented()["disk-full"][1].format(
        checkpoints=case.out / "checkpoints", previous=case.out / "checkpoints" / "step-2")
    assert full.stderr.strip().splitlines()[-1] == expected and "Traceback" not in full.stderr
    assert snapshot(case.out / "checkpoints" / "step-2") == previous
    assert (case.out / "checkpoints" / "latest").read_text().strip() == "step-2"
    assert not list((case.out / "checkpoints").glob(".incomplete-*"))


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A real tmpfs of `size` mounted at `folder` (needs root); skips the test where it can't."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()[:80]})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` until `leave` bytes are free."""
    stats = os.statvfs(folder)
    (folder / "filler").write_bytes(bytes(max(0, stats.f_bavail * stats.f_frsize - leave)))


def test_full_disk_at_the_final_save_keeps_the_weights_and_says_how_to_continue(tmp_path, toy_models):
    case = Case(tmp_path, toy_models)
    with small_disk(tmp_path / "disk", "2m") as disk:
        out = disk / "out"
        base = ["train", "toy", "--dataset_base_path", str(case.data), "--output_path", str(out), "--lora_base_model", "dit"]
        models = str(toy_models)
        first = run_in_process(*base, "--max_steps", "2", "--checkpointing_steps", "2", DIFFSYNTH_MODEL_BASE_PATH=models)
        assert first.returncode == 0, first.stderr
        weights = out / "epoch-0.safetensors"
        before = snapshot(out)
        fill(disk, leave=16 * 1024)  # room for the args and the log, not for the weights
        full = run_in_process(*base, "--max_steps", "4", "--resume_from_checkpoint", "latest", DIFFSYNTH_MODEL_BASE_PATH=models)
        assert full.returncode == 2, full.stderr
        expected = "error: " + documented()["weights-disk-full"][1].format(weights=weights, checkpoint=out / "checkpoints" / "step-2")
        assert full.stderr.strip().splitlines() == [expected]
        after = snapshot(out)
        assert after["epoch-0.safetensors"] == before["epoch-0.safetensors"]  # the previous weights are intact
        assert not [name for name in after if name.endswith(".tmp")]
        assert oct(weights.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
        (disk / "filler").unlink()  # and the run continues as the message says
        again = run_in_process(*base, "--max_steps", "4", "--resume_from_checkpoint", "latest", DIFFSYNTH_MODEL_BASE_PATH=models)
        assert again.returncode == 0, again.stderr
        assert snapshot(out)["epoch-0.safetensors"] != before["epoch-0.safetensors"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
