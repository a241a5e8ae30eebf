"""Everything a run writes into `--output_path`, each file written atomically, and the claim a
run holds on that folder (a lock file; earlier results are never replaced unless asked).

Atomic: write to a temporary name in the same folder, fsync, rename over the target, so a
crash leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from diffsynth.errors import TrainingStopped, UserError
from diffsynth.types import OutputFile

LOCK_NAME = ".diffsynth.lock"
#: What a finished or interrupted run leaves in its output folder.
RESULT_FILES = ("training_args.json", "loss_log.jsonl")
WEIGHT_PATTERNS = ("step-*.safetensors", "epoch-*.safetensors")


# -- writing files --------------------------------------------------------------------------------


def user_file_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file under the current umask."""
    mask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(mask)
    return 0o666 & ~mask


def give_user_mode(path: Path) -> None:
    """mkstemp and safetensors create files 0600; give them the mode the user's umask allows."""
    os.chmod(path, user_file_mode())


def write_error_reason(exc: BaseException, near: Path | None = None) -> str:
    """"no space left on device" / "File too large" / ... from an OSError or a library's
    wrapper of one (safetensors: "...: File too large (os error 27)"; torch: an opaque message)."""
    code = getattr(exc, "errno", None)
    text = str(exc).strip()
    if code == errno.ENOSPC or "(os error 28)" in text or "No space left on device" in text:
        return "no space left on device"
    if getattr(exc, "strerror", None):
        return exc.strerror  # type: ignore[attr-defined]
    wrapped = re.search(r"([^:()]+?) \(os error \d+\)", text)
    if wrapped:
        return wrapped.group(1).strip()
    if near is not None and _disk_full(near):  # torch's stream writer does not say why
        return "no space left on device"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _disk_full(path: Path) -> bool:
    try:
        stats = os.statvfs(path if path.is_dir() else path.parent)
    except OSError:
        return False
    return stats.f_bavail == 0


def write_errors() -> tuple[type[BaseException], ...]:
    """What a writer raises when the disk or the file system refuses: OSError, safetensors'
    own error type, torch's RuntimeError (its zip writer wraps ENOSPC)."""
    from safetensors import SafetensorError

    return (OSError, RuntimeError, SafetensorError)


class WriteFailed(UserError):
    """A file could not be written; the message names it, the reason, and what is intact."""

    def __init__(self, path: Path, reason: str, kept: str, hint: str = "fix that and run again") -> None:
        super().__init__(f"{path}: cannot write ({reason}); {kept}; {hint}")
        self.path, self.reason, self.kept = path, reason, kept


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, fsync it, and rename it to `path`. Any failure is a `WriteFailed`
    and leaves the previous `path` untouched."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        give_user_mode(tmp)
        os.replace(tmp, path)
    except write_errors() as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        kept = "the previous file is intact" if path.exists() else "nothing was written"
        reason = write_error_reason(exc, path.parent)
        hint = "free some space and run again" if reason == "no space left on device" else "fix that and run again"
        raise WriteFailed(path, reason, kept, hint) from exc
    except BaseException:
        if tmp is not None:
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
        raise UserError(f"--output_path: cannot write to {path} ({write_error_reason(exc)})") from exc
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
            for line in self.loss_log.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    if json.loads(line)["step"] <= keep_through_step:
                        kept.append(line + "\n")
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # a torn last line from a killed run
        atomic_write_text(self.loss_log, "".join(kept))

    def append_loss(self, record: dict[str, Any]) -> None:
        try:
            with open(self.loss_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise WriteFailed(
                self.loss_log, write_error_reason(exc, self.root), "the steps logged before are intact",
                self._continue_hint(),
            ) from exc

    def remove_earlier_results(self) -> None:
        """--overwrite: delete what an earlier run left (weights, args, log, checkpoints), so the
        folder never mixes two runs."""
        for name in RESULT_FILES:
            (self.root / name).unlink(missing_ok=True)
        for pattern in WEIGHT_PATTERNS:
            for path in self.root.glob(pattern):
                path.unlink(missing_ok=True)
        shutil.rmtree(self.root / "checkpoints", ignore_errors=True)

    def write_weights(self, stem: str, files: list[OutputFile]) -> list[Path]:
        """Write `<stem><suffix>.safetensors` for each output file; returns the paths."""
        written = []
        for out in files:
            path = self.root / f"{stem}{out.suffix}.safetensors"
            try:
                write_safetensors(path, out)
            except WriteFailed as exc:
                raise WriteFailed(path, exc.reason, exc.kept, self._continue_hint()) from exc
            written.append(path)
        return written

    def write_model_card(self, text: str) -> None:
        atomic_write_text(self.root / "README.md", text)

    def _continue_hint(self) -> str:
        """How to go on after a failed write: from the last checkpoint if there is one."""
        pointer = self.root / "checkpoints" / "latest"
        try:
            latest = self.root / "checkpoints" / pointer.read_text().strip()
        except OSError:
            return "free some space and run again"
        return f"free some space and continue from {latest} with --resume_from_checkpoint latest"


# -- claiming the output folder -------------------------------------------------------------------


def earlier_results(root: Path) -> list[str]:
    """Names of files in `root` that an earlier run wrote (weights, args, log, checkpoints)."""
    if not root.is_dir():
        return []
    found = [name for name in RESULT_FILES if (root / name).exists()]
    found += sorted(p.name for pattern in WEIGHT_PATTERNS for p in root.glob(pattern))
    if has_checkpoints(root):
        found.append("checkpoints/")
    return found


def has_checkpoints(root: Path) -> bool:
    folder = root / "checkpoints"
    return folder.is_dir() and any(p.name == "latest" or p.name.startswith("step-") for p in folder.iterdir())


def check_earlier_results(root: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to touch another run's results unless the user asked: --resume_from_checkpoint
    (continue it) or --overwrite (replace it)."""
    if resume and overwrite:
        raise UserError("--overwrite and --resume_from_checkpoint: give one (replace the earlier run, or continue it)")
    found = earlier_results(root)
    if not found or overwrite or (resume and resume != "latest"):
        return
    shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
    if not resume:
        raise UserError(
            f"--output_path {root} holds the results of an earlier run ({shown}); pass "
            "--resume_from_checkpoint latest to continue it, --overwrite to replace it, or choose another --output_path"
        )
    weights = [name for name in found if name.endswith(".safetensors")]
    if not has_checkpoints(root) and weights:  # nothing to continue, but trained weights to lose
        raise UserError(
            f"--resume_from_checkpoint latest: {root} holds trained weights ({weights[0]}) but no checkpoint to "
            "continue from; pass --overwrite to replace them, or choose another --output_path"
        )


@dataclass(frozen=True)
class LockOwner:
    pid: int
    host: str
    started: str  # the process's start time (clock ticks since boot), so a reused pid is not mistaken

    def is_running(self) -> bool:
        if self.host != socket.gethostname():
            return True  # another machine's process: we cannot tell, so assume it runs
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's live process
        return process_start_time(self.pid) in (self.started, "")


def process_start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat; "" where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def this_process() -> LockOwner:
    return LockOwner(os.getpid(), socket.gethostname(), process_start_time(os.getpid()))


class OutputLock:
    """`<output>/.diffsynth.lock`: one run per output folder. The lock file is created complete
    (written aside, then hard-linked into place), so a reader never sees a half-written one."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        for _ in range(2):  # a second try after removing a stale lock
            if self._link_new():
                self.held = True
                return
            owner = self._owner()
            if owner is not None and owner.is_running():
                raise UserError(
                    f"--output_path {self.path.parent} is in use by another run (pid {owner.pid} on {owner.host}); "
                    f"wait for it to end or choose another --output_path (delete {self.path} if no run uses it)"
                )
            self._remove_stale(owner)
        raise UserError(f"--output_path {self.path.parent}: another run took the lock {self.path} at the same moment")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def _link_new(self) -> bool:
        me = this_process()
        fd, tmp = tempfile.mkstemp(prefix=".diffsynth-lock-", dir=self.path.parent)
        try:
            os.write(fd, json.dumps({"pid": me.pid, "host": me.host, "started": me.started}).encode())
            os.close(fd)
            give_user_mode(Path(tmp))
            os.link(tmp, self.path)  # fails if the lock exists: atomic test-and-set
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def _owner(self) -> LockOwner | None:
        try:
            raw = json.loads(self.path.read_text())
            return LockOwner(int(raw["pid"]), str(raw["host"]), str(raw["started"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not a lock we wrote: treated as stale

    def _remove_stale(self, owner: LockOwner | None) -> None:
        who = f"pid {owner.pid}" if owner else "unreadable"
        if self.path.exists():
            sys.stderr.write(f"warning: {self.path}: removing the lock of a run that no longer runs ({who})\n")
        self.path.unlink(missing_ok=True)


@contextmanager
def claimed_output_dir(root: Path, resume: str | None, overwrite: bool) -> Iterator[Path]:
    """Hold `root` for one run: create it, lock it, refuse another run's results unless asked.
    The lock is released on any exit (SIGTERM included); a folder this created and left empty
    is removed again."""
    created = not root.exists()
    prepare_output_dir(root)
    lock = OutputLock(root)
    try:
        lock.acquire()
        check_earlier_results(root, resume, overwrite)
        with _sigterm_raises():
            yield root
    finally:
        lock.release()
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Until training installs its own handler: SIGTERM ends the run through `finally` blocks
    (so the lock is released) instead of killing it outright."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise TrainingStopped(f"interrupted by {signal.Signals(signum).name} before training started", 128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
