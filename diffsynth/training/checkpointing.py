"""Training-state checkpoints: everything needed to continue a run exactly.

`<output_path>/checkpoints/step-N/` holds the trainable weights, optimizer and LR-scheduler
state, every RNG state and the position in the data order (`state.json`, written last). A
checkpoint is written into a hidden temporary folder, fsynced, and renamed into place; only then
is `checkpoints/latest` (a one-line file naming the folder) replaced, atomically. A crash at any
instant leaves the previous checkpoint and `latest` intact.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffsynth.errors import UserError
from diffsynth.training.outputs import atomic_write_text, give_user_mode, write_error_reason, write_errors

FORMAT_VERSION = 1
STATE_FILE = "state.json"
LATEST_FILE = "latest"
STEP_NAME = re.compile(r"step-\d+")


@dataclass(frozen=True)
class TrainingPosition:
    """Where a run stands: optimizer steps done, current epoch, micro-batches of it consumed."""

    step: int
    epoch: int
    micro_batches_in_epoch: int


@dataclass(frozen=True)
class CheckpointState:
    """`state.json`: the position plus what must match for a resume to be meaningful."""

    format: int
    position: TrainingPosition
    fingerprint: dict[str, Any]
    rng: dict[str, Any]


@dataclass
class LoadedCheckpoint:
    path: Path
    state: CheckpointState
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    torch_rng: dict[str, torch.Tensor]
    #: `--ema_decay`'s averaged weights (ema.safetensors), None when the run kept none.
    ema: dict[str, torch.Tensor] | None = None


# -- RNG ------------------------------------------------------------------------------------------


def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(JSON-able python/numpy states, torch CPU/CUDA states as tensors)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    return plain, tensors


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_rng() -> list[tuple[dict[str, Any], dict[str, torch.Tensor]]]:
    """Every process's RNG states, on the main process (rank order; others get []). Every process
    must call it in a multi-process run: each rank draws its own noise, so a resume restores each
    rank's own states (rank 0's everywhere would change every other rank's noise)."""
    mine = capture_rng()
    rank, world = _rank_and_world()
    if world == 1:
        return [mine]
    import torch.distributed as dist

    found: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(mine, found, dst=0)
    return list(found) if found is not None else []


def restore_rng(plain: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Restore this process's RNG states: rank 0's are the checkpoint's top-level ones (all a
    one-process checkpoint has), rank i's are under `ranks` (plain) and `rank<i>.` (tensors)."""
    rank, _ = _rank_and_world()
    if rank and str(rank) in plain.get("ranks", {}):
        plain = plain["ranks"][str(rank)]
        prefix = f"rank{rank}."
        tensors = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    elif rank:  # written before checkpoints kept every rank's: this rank keeps its device-specific seed
        sys.stderr.write(f"warning: the checkpoint holds no random state for process {rank} (written by an older "
                         "version); its noise from here on differs from the uninterrupted run's\n")
        return
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _merge_rng(states: list[tuple[dict[str, Any], dict[str, torch.Tensor]]]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """One (plain, tensors) pair holding every rank's states: rank 0's at the top level, as a
    one-process checkpoint has them."""
    plain, tensors = dict(states[0][0]), dict(states[0][1])
    if len(states) > 1:
        plain["ranks"] = {str(i): p for i, (p, _) in enumerate(states) if i}
        for i, (_, t) in enumerate(states):
            if i:
                tensors.update({f"rank{i}.{k}": v for k, v in t.items()})
    return plain, tensors


# -- the store ------------------------------------------------------------------------------------


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        give_user_mode(path)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CheckpointStore:
    """The `checkpoints/` folder of one output path."""

    def __init__(self, output_path: Path) -> None:
        self.root = output_path / "checkpoints"

    def clean_incomplete(self) -> None:
        """Remove temporary folders a killed save left behind (never a complete checkpoint)."""
        if self.root.is_dir():
            for tmp in self.root.glob(".incomplete-*"):
                shutil.rmtree(tmp, ignore_errors=True)

    def latest(self) -> Path | None:
        pointer = self.root / LATEST_FILE
        if not pointer.is_file():
            return None
        path = self.root / pointer.read_text().strip()
        return path if (path / STATE_FILE).is_file() else None

    def complete(self) -> list[Path]:
        """Complete checkpoints (state.json is written last), oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if STEP_NAME.fullmatch(p.name) and (p / STATE_FILE).is_file()]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def resume_point(self) -> Path | None:
        """What `--resume_from_checkpoint latest` continues from: the folder `latest` names; the
        newest complete checkpoint when a save was killed before `latest` was first written; None
        when there are no checkpoints at all (a fresh start). A `latest` naming a missing folder
        is an error, never a silent fresh start over the checkpoints that exist."""
        pointer = self.root / LATEST_FILE
        complete = self.complete()
        if not pointer.is_file():
            if complete:
                return complete[-1]
            if self.root.is_dir() and any(STEP_NAME.fullmatch(p.name) for p in self.root.iterdir()):
                raise UserError(f"--resume_from_checkpoint latest: {self.root} holds only incomplete checkpoints "
                                "(no state.json); pass --overwrite to start afresh")
            return None
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--resume_from_checkpoint latest: cannot read {pointer} ({exc})") from exc
        path = self.root / name
        if STEP_NAME.fullmatch(name) and path.is_dir():
            return path  # load_checkpoint reports a corrupt one
        others = ", ".join(str(p) for p in complete[-2:])
        instead = f"resume from one by its path ({others}) or" if others else "no complete checkpoint is left;"
        raise UserError(
            f"--resume_from_checkpoint latest: {pointer} names {name!r}, which is not a checkpoint folder; "
            f"{instead} pass --overwrite to start afresh"
        )

    def _publish(self, tmp: Path, final: Path) -> None:
        """Rename a complete checkpoint folder into place, then point `latest` at it."""
        if final.exists():  # the same step saved by an earlier, interrupted attempt
            old = self.root / f".incomplete-old-{final.name}-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        atomic_write_text(self.root / LATEST_FILE, final.name + "\n")

    def save(
        self,
        position: TrainingPosition,
        fingerprint: dict[str, Any],
        trainable: dict[str, torch.Tensor],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        limit: int | None = None,
        ema: dict[str, torch.Tensor] | None = None,
        rng: list[tuple[dict[str, Any], dict[str, torch.Tensor]]] | None = None,
    ) -> Path:
        """Write `step-N/` atomically, point `latest` at it, keep the newest `limit`.

        `rng`: every process's RNG states (`gather_rng`); this process's alone when None.
        A full disk (or any write error) is one line; the previous checkpoint and `latest` stay
        untouched and the partial folder is removed."""
        from safetensors.torch import save_file

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            final = self.root / f"step-{position.step}"
            tmp = self.root / f".incomplete-step-{position.step}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            rng_plain, rng_tensors = _merge_rng(rng or [capture_rng()])
            save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
            save_file(rng_tensors, str(tmp / "rng.safetensors"))
            if ema is not None:
                save_file({k: v.detach().cpu().contiguous() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
            torch.save(optimizer, tmp / "optimizer.pt")
            torch.save(scheduler, tmp / "scheduler.pt")
            state = CheckpointState(FORMAT_VERSION, position, fingerprint, rng_plain)
            (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))  # last: marks completeness
            _fsync_tree(tmp)
            self._publish(tmp, final)
        except write_errors() as exc:  # torch/safetensors wrap ENOSPC/EFBIG in their own types
            for tmp in self.root.glob(f".incomplete-step-*-{os.getpid()}"):
                shutil.rmtree(tmp, ignore_errors=True)
            previous = self.latest()
            kept = (f"the previous checkpoint {previous} is intact; free some space and continue with "
                    "--resume_from_checkpoint latest") if previous else "no earlier checkpoint exists"
            raise UserError(f"{self.root}: cannot write a checkpoint ({write_error_reason(exc, self.root)}); {kept}") from exc
        if limit is not None and limit >= 1:  # validate() refuses < 1; never prune the one just written
            self.prune(limit)
        return final

    def prune(self, limit: int) -> None:
        """Delete all but the newest `limit` complete checkpoints."""
        for old in self.complete()[:-limit]:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, flag: str = "--resume_from_checkpoint") -> LoadedCheckpoint:
    """Read a checkpoint folder; a folder that is not one (or a truncated, corrupt one) is a
    UserError naming the file that fails."""
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise UserError(f"{flag}: {path} is not a training checkpoint (no {STATE_FILE})")
    state = _read_state(state_file, flag)
    return LoadedCheckpoint(
        path=path,
        state=state,
        trainable=_read_part(path / "trainable.safetensors", flag),
        optimizer=_read_part(path / "optimizer.pt", flag),
        scheduler=_read_part(path / "scheduler.pt", flag),
        torch_rng=_read_part(path / "rng.safetensors", flag),
        ema=_read_part(path / "ema.safetensors", flag) if (path / "ema.safetensors").is_file() else None,
    )


def _read_state(state_file: Path, flag: str) -> CheckpointState:
    try:
        raw = json.loads(state_file.read_text(encoding="utf-8"))
        state = CheckpointState(
            format=raw["format"],
            position=TrainingPosition(**raw["position"]),
            fingerprint=dict(raw["fingerprint"]),
            rng=dict(raw["rng"]),
        )
    except (OSError, KeyError, TypeError, ValueError) as exc:  # ValueError covers bad JSON and UTF-8
        raise UserError(f"{flag}: {state_file} is not a readable checkpoint state ({_why(exc)})") from exc
    if state.format != FORMAT_VERSION:
        raise UserError(f"{flag}: {state_file} has format {state.format!r}; this version reads format {FORMAT_VERSION}")
    return state


def _read_part(file: Path, flag: str) -> Any:
    """One tensor file of a checkpoint; safetensors and torch raise their own types for a bad file."""
    from safetensors.torch import load_file

    try:
        if file.suffix == ".safetensors":
            return load_file(str(file))
        return torch.load(file, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - SafetensorError, UnpicklingError, RuntimeError, OSError, ...
        raise UserError(f"{flag}: {file} is truncated or corrupt ({_why(exc)}); resume from another checkpoint") from exc


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r}"
    text = str(exc).strip()
    first = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else "")
    return (first or type(exc).__name__)[:160]


def check_fingerprint(loaded: LoadedCheckpoint, fingerprint: dict[str, Any]) -> None:
    """The checkpoint must come from a run with the same family and trainable set-up. Called
    with part of the fingerprint (what the flags alone say) before models load, in full after."""
    theirs = loaded.state.fingerprint
    for key in fingerprint:
        if theirs.get(key) != fingerprint[key]:
            raise UserError(
                f"--resume_from_checkpoint: {loaded.path} was written by a different run "
                f"({key} {theirs.get(key)!r} there, {fingerprint[key]!r} here)"
            )
