"""Run the `diffsynth` CLI in the calling process as a subprocess would run it, for tests of what
a command does (not of processes): the same entry point `python -m diffsynth` calls
(`diffsynth.cli.main`), the same exit status, and stdout/stderr as a
`subprocess.run(..., capture_output=True, text=True)` would give them, without paying the
torch + diffusers import (~5 s of CPU) that every subprocess pays.

What makes it faithful:
- file descriptors 1 and 2 are captured, so what native code prints lands in the output too;
- warnings print to stderr under a fresh interpreter's default filters (pytest would record them);
- an exception escaping `main` prints its traceback and gives status 1, `sys.exit("text")` prints
  the text and gives 1, as the interpreter does;
- the environment changes, the working directory and DIFFSYNTH_DEBUG are undone afterwards.

Keep real subprocesses for tests about processes: signals and kills, a lock held by another
process, `accelerate launch`, resource limits, what a start-up imports, `python -m` itself."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal
from unittest.mock import patch

#: CPython's default warning filters (no -W option), first match wins.
INTERPRETER_WARNING_FILTERS: tuple[tuple[Literal["default", "ignore"], type[Warning], str], ...] = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
)


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_cli_in_process(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, unset: Iterable[str] = ()
) -> subprocess.CompletedProcess:
    """`diffsynth ARGS` in this process, in `cwd`, with `env` set and the variables in `unset`
    removed (DIFFSYNTH_DEBUG always, as it leaks from a `--debug` run otherwise)."""
    from diffsynth.cli import main

    argv = [str(a) for a in args]
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
            with patch.dict(os.environ, env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    warnings.catch_warnings():
                for name in ("DIFFSYNTH_DEBUG", *unset):
                    os.environ.pop(name, None)
                warnings.resetwarnings()
                for action, category, module in reversed(INTERPRETER_WARNING_FILTERS):
                    warnings.filterwarnings(action, category=category, module=module)
                warnings.showwarning = _print_warning
                try:
                    if cwd is not None:
                        os.chdir(cwd)
                    main(argv)
                    code = 0
                except SystemExit as exc:
                    if exc.code is None or isinstance(exc.code, int):
                        code = exc.code or 0
                    else:  # sys.exit("text"): the interpreter prints it, status 1
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
    return subprocess.CompletedProcess(["diffsynth", *argv], code, stdout, stderr)
