"""Core tests use the toy family in tests/plugins/, registered like any plugin."""

from __future__ import annotations

import os

# One intra-op thread, set before torch loads: tiny models run ~30x faster so on 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_PLUGINS = ROOT / "tests" / "plugins"
EXAMPLE_DATA = ROOT / "examples" / "data"

sys.path.insert(0, str(TEST_PLUGINS))
os.environ["DIFFSYNTH_PLUGINS"] = "toy_family:plugin"


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a `python -m diffsynth` subprocess that sees the toy family, offline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TEST_PLUGINS), env.get("PYTHONPATH", "")])
    env["DIFFSYNTH_PLUGINS"] = "toy_family:plugin"
    env["DIFFSYNTH_SKIP_DOWNLOAD"] = "True"
    env.pop("DIFFSYNTH_DEBUG", None)
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run `python -m diffsynth ARGS` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "diffsynth", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_main(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """run_cli's command through the same entry point in this process (same exit status, stdout
    and stderr; diffsynth.testing.inprocess), without a torch import per command. For tests of what
    a command does; tests about processes (signals, a lock another process holds, `accelerate
    launch`, resource limits, what a start-up imports, `python -m`) keep run_cli."""
    from diffsynth.testing.inprocess import run_cli_in_process

    variables = {"DIFFSYNTH_PLUGINS": "toy_family:plugin", "DIFFSYNTH_SKIP_DOWNLOAD": "True", **env}
    return run_cli_in_process(*args, cwd=cwd, env=variables)


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory) -> Path:
    """A model base folder holding the toy family's tiny preset at its default repo id."""
    base = tmp_path_factory.mktemp("models")
    result = run_main("models", "init", "toy", str(base / "toy" / "Toy"), "--preset", "tiny")
    assert result.returncode == 0, result.stderr
    return base
