"""What every benchmark shares: the record format, machine info, A/B alternation, RSS readers
and a way to run one function in a fresh process. Import-light (no torch at import time)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = ROOT / "examples" / "data"
MB = 1024 * 1024


@dataclass
class Record:
    """One figure. `met` is None where no goal applies (or in --quick mode for size-bound goals)."""

    name: str
    figure: float | None
    unit: str
    goal: str | None = None
    met: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    """Passed to each group: mode, a scratch folder, and artifacts shared between groups."""

    quick: bool
    workdir: Path
    cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "device": device,
        "python": platform.python_version(),
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


def alternate(a: Callable[[], list[float]], b: Callable[[], list[float]], rounds: int) -> tuple[list[float], list[float]]:
    """Run A B A B ... `rounds` times each; every call returns samples; returns all samples."""
    sa: list[float] = []
    sb: list[float] = []
    for _ in range(rounds):
        sa += a()
        sb += b()
    return sa, sb


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


# --- memory ---------------------------------------------------------------------------------


def rss_bytes() -> int:
    """Current resident set size of this process."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def rss_parts() -> dict[str, int]:
    """RssAnon / RssFile of this process in bytes (anonymous memory vs mapped file pages)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) * 1024
    return out


class PeakRss:
    """Samples RSS (total and anonymous) every `interval` s in a thread; `peak`/`peak_anon` are
    the highest values seen while inside the `with` block, minus the value at entry."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.peak = self.peak_anon = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            parts = rss_parts()
            self._max = max(self._max, parts["RssAnon"] + parts["RssFile"])
            self._max_anon = max(self._max_anon, parts["RssAnon"])
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        parts = rss_parts()
        self._base, self._base_anon = parts["RssAnon"] + parts["RssFile"], parts["RssAnon"]
        self._max, self._max_anon = self._base, self._base_anon
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        parts = rss_parts()
        self._max = max(self._max, parts["RssAnon"] + parts["RssFile"])
        self._max_anon = max(self._max_anon, parts["RssAnon"])
        self.peak, self.peak_anon = self._max - self._base, self._max_anon - self._base_anon


def touch(module) -> None:
    """Read one byte of every page of `module`'s weights: safetensors tensors are memory-mapped
    and cost no RSS until used, so a load figure without this would measure nothing."""
    for t in [*module.parameters(), *module.buffers()]:
        t.detach().reshape(-1).view(-1).contiguous().view(__import__("torch").uint8)[::4096].sum()


# --- fresh processes --------------------------------------------------------------------------

#: glibc returns freed blocks >= 64 KiB to the OS at once, so RSS follows live tensor memory
#: (the default threshold grows to 32 MiB and keeps freed tensors resident).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child: offline, no test-only plugins, `benchmarks` importable."""
    env = dict(os.environ)
    env.pop("DIFFSYNTH_PLUGINS", None)
    env["DIFFSYNTH_SKIP_DOWNLOAD"] = "True"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def in_subprocess(target: str, timeout: float = 600, env: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run `module:function(**kwargs)` in a fresh interpreter; returns its JSON-able result."""
    cmd = [sys.executable, "-m", "benchmarks.child", target, json.dumps(kwargs)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env or clean_env(**MALLOC_ENV), cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{target} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def trainer_step_seconds(registry: Any, config: Any) -> list[float]:
    """Seconds between consecutive optimizer steps of one `Trainer(registry, config).run()`
    (stamped as each step's loss is logged), so the first step's start-up is left out."""
    import itertools

    from diffsynth.training.outputs import RunOutputs
    from diffsynth.training.trainer import Trainer

    stamps: list[float] = []
    original = RunOutputs.append_loss

    def stamped(self, record):
        stamps.append(time.perf_counter())
        return original(self, record)

    RunOutputs.append_loss = stamped
    try:
        Trainer(registry, config).run()
    finally:
        RunOutputs.append_loss = original
    return [b - a for a, b in itertools.pairwise(stamps)]
