"""Run the real CLI in a subprocess, as a user's shell would (for seed-command tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_diffsynth(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """`python -m diffsynth ARGS` in `cwd`, offline (`DIFFSYNTH_SKIP_DOWNLOAD=True`), with the
    default `./models` base path as in the seed's commands; `env` adds variables. One torch
    thread by default: tiny presets run faster so, above all on a CPU shared with other jobs."""
    full_env = dict(os.environ, DIFFSYNTH_SKIP_DOWNLOAD="True", OMP_NUM_THREADS="1", **env)
    if "DIFFSYNTH_MODEL_BASE_PATH" not in env:
        full_env.pop("DIFFSYNTH_MODEL_BASE_PATH", None)
    return subprocess.run(
        [sys.executable, "-m", "diffsynth", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
