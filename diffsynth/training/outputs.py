"""Everything a run writes into `--output_path`, each file written atomically.

Atomic: write to a temporary name in the same folder, fsync, rename over the target, so a
crash leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from diffsynth.errors import UserError
from diffsynth.types import OutputFile


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, fsync it, and rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = "the previous file is intact" if path.exists() else "nothing was written"
        raise UserError(f"{path}: cannot write ({exc.strerror or exc}); {kept}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def prepare_output_dir(path: Path) -> Path:
    """Create `--output_path` (and fail early, with the flag's name, when it can't be written)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise UserError(f"--output_path: cannot write to {path} ({exc.strerror})") from exc
    return path


def write_safetensors(path: Path, out: OutputFile) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in out.tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=out.metadata or None))


@dataclass
class RunOutputs:
    """The files of one training run in its output folder."""

    root: Path

    @property
    def loss_log(self) -> Path:
        return self.root / "loss_log.jsonl"

    def write_training_args(self, args: dict[str, Any]) -> None:
        atomic_write_text(self.root / "training_args.json", json.dumps(args, indent=2, sort_keys=True) + "\n")

    def start_loss_log(self, keep_through_step: int = 0) -> None:
        """Start the log; when resuming, keep the records of the steps up to the checkpoint."""
        kept = []
        if keep_through_step and self.loss_log.is_file():
            for line in self.loss_log.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] <= keep_through_step:
                        kept.append(line + "\n")
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # a torn last line from a killed run
        atomic_write_text(self.loss_log, "".join(kept))

    def append_loss(self, record: dict[str, Any]) -> None:
        with open(self.loss_log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def write_weights(self, stem: str, files: list[OutputFile]) -> list[Path]:
        """Write `<stem><suffix>.safetensors` for each output file; returns the paths."""
        written = []
        for out in files:
            path = self.root / f"{stem}{out.suffix}.safetensors"
            write_safetensors(path, out)
            written.append(path)
        return written

    def write_model_card(self, text: str) -> None:
        atomic_write_text(self.root / "README.md", text)
