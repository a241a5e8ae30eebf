"""The `diffsynth` command. User errors print one line and exit non-zero; `--debug` (or
`DIFFSYNTH_DEBUG=1`) shows the traceback instead.

Import-light: torch and the trainer are imported only inside the commands that need them.
"""

from __future__ import annotations

import os
import sys

import typer

from diffsynth.cli.dataset_cmd import dataset_app
from diffsynth.cli.download_cmd import register_download
from diffsynth.cli.models_cmd import models_app
from diffsynth.cli.plan_cmd import build_plan_app
from diffsynth.cli.sample_cmd import build_sample_app
from diffsynth.cli.train_cmd import build_train_app
from diffsynth.errors import PluginError, TrainingStopped, UserError
from diffsynth.plugins import FamilyRegistry, load_registry

DEBUG_ENV = "DIFFSYNTH_DEBUG"


def build_app(registry: FamilyRegistry) -> typer.Typer:
    app = typer.Typer(
        name="diffsynth",
        help="One trainer for every diffusion model family.",
        no_args_is_help=True,
        add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root_options)
    app.add_typer(models_app(registry), name="models")
    app.add_typer(build_train_app(registry), name="train")
    app.add_typer(build_plan_app(registry), name="plan")
    app.add_typer(build_sample_app(registry), name="sample")
    app.add_typer(dataset_app(registry), name="dataset")
    register_download(app, registry)
    return app


def _show_version(value: bool) -> None:
    if value:
        from diffsynth import __version__

        typer.echo(f"diffsynth {__version__}")
        raise typer.Exit()


def _root_options(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_show_version, metavar=""
    ),
) -> None:
    """One trainer for every diffusion model family."""


def _recognized_elsewhere(exc: UserError, registry: FamilyRegistry | None) -> str:
    """For a checkpoint the run's family does not recognise: which other families do."""
    header = getattr(exc, "header", None)
    if header is None or registry is None:
        return ""
    found = registry.recognize(header)
    return "".join(f"; {family} recognises it as its {component}" for family, component in found)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `diffsynth` and `python -m diffsynth`."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV) == "1" or "--debug" in args
    args = [a for a in args if a != "--debug"]
    if debug:
        os.environ[DEBUG_ENV] = "1"
    registry = None
    try:
        registry = load_registry()
        code = build_app(registry)(args=args, prog_name="diffsynth", standalone_mode=False)
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except typer.TyperException as exc:
        if debug or not hasattr(exc, "format_message"):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise SystemExit(2) from None
        _fail(" ".join(exc.format_message().split()), getattr(exc, "exit_code", 2))
    except UserError as exc:
        if debug:
            raise
        _fail(str(exc) + _recognized_elsewhere(exc, registry), exc.exit_code)
    except TrainingStopped as exc:  # on purpose: the message is the whole report
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(exc.exit_code) from None
    except PluginError as exc:
        if debug:
            raise
        _fail(f"plugin error: {exc}", 3)
    except typer.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
