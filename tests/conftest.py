"""Core tests use the toy family in tests/plugins/, registered like any plugin."""

from __future__ import annotations

import os

# One intra-op thread, set before torch loads: tiny models run ~30x faster so on 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import contextlib
import io
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from unittest.mock import patch

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


# The warning filters of a fresh interpreter (CPython's defaults, no -W): pytest records warnings
# instead of printing them, where a subprocess would print them on stderr.
INTERPRETER_WARNING_FILTERS = [("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, None),
                               ("ignore", PendingDeprecationWarning, None), ("ignore", ImportWarning, None),
                               ("ignore", ResourceWarning, None)]


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_main(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """`diffsynth ARGS` through the entry point `python -m diffsynth` calls (`diffsynth.cli.main`),
    in this process, as run_cli would run it: its environment (the toy family, offline), file
    descriptors 1 and 2 captured (what Python and native code print), warnings printed as a fresh
    interpreter prints them, an exception that escapes `main` as its traceback on stderr and status 1,
    `SystemExit` as the exit status. It saves the torch import a subprocess pays (~5 s of CPU each).
    For tests of what a command does; tests about processes (signals, a lock another process holds,
    `accelerate launch`, what a start-up imports, `python -m`) keep run_cli."""
    from diffsynth.cli import main

    variables = {"DIFFSYNTH_PLUGINS": "toy_family:plugin", "DIFFSYNTH_SKIP_DOWNLOAD": "True", **env}
    previous = Path.cwd()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        os.dup2(out_file.fileno(), 1)
        os.dup2(err_file.fileno(), 2)
        out = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
        err = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", write_through=True)
        try:
            with patch.dict(os.environ, variables), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    warnings.catch_warnings():
                os.environ.pop("DIFFSYNTH_DEBUG", None)
                warnings.resetwarnings()
                for action, category, module in reversed(INTERPRETER_WARNING_FILTERS):
                    warnings.filterwarnings(action, category=category, module=module or "")
                warnings.showwarning = _print_warning
                try:
                    if cwd is not None:
                        os.chdir(cwd)
                    main([str(a) for a in args])
                    code = 0
                except SystemExit as exc:
                    if exc.code is None or isinstance(exc.code, int):
                        code = exc.code or 0
                    else:  # sys.exit("message"): the interpreter prints it, status 1
                        err.write(f"{exc.code}\n")
                        code = 1
                except Exception:
                    traceback.print_exc()
                    code = 1
        finally:
            os.chdir(previous)
            out.flush()
            err.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out_file.seek(0)
        err_file.seek(0)
        stdout, stderr = out_file.read().decode(), err_file.read().decode()
    return subprocess.CompletedProcess(["diffsynth", *map(str, args)], code, stdout, stderr)


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory) -> Path:
    """A model base folder holding the toy family's tiny preset at its default repo id."""
    base = tmp_path_factory.mktemp("models")
    result = run_main("models", "init", "toy", str(base / "toy" / "Toy"), "--preset", "tiny")
    assert result.returncode == 0, result.stderr
    return base
