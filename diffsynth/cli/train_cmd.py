"""`diffsynth train FAMILY [options]`: one command per registered family, generated from
`TrainConfig`'s fields plus the family's own options.

Every flag accepts the seed's underscore spelling and the dashed one (`--lora_rank`,
`--lora-rank`); `--help` groups flags in panels.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable

import typer
from typer.core import TyperGroup

from diffsynth.config import TrainConfig, cli_fields
from diffsynth.plugins import FamilyRegistry
from diffsynth.spec import FamilySpec


def _flag_names(name: str) -> list[str]:
    return [f"--{name.replace('_', '-')}"]


def underscores_to_dashes(token: str) -> str:
    """click normalises option names through this, so `--lora_rank` finds `--lora-rank`."""
    return token.replace("_", "-")


def _plain_type(annotation: Any) -> Any:
    """`int | None` -> int: typer reads optionality from the default."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def option_parameter(name: str, annotation: Any, default: Any, help: str, panel: str) -> inspect.Parameter:
    kind = _plain_type(annotation)
    # an on/off switch takes no value: no metavar (typer would print `<bool>` as if it took one)
    extra = {"metavar": ""} if kind is bool else {}
    option = typer.Option(
        *_flag_names(name), help=help, rich_help_panel=panel, show_default=default is not None, **extra
    )
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def _family_parameters(family: FamilySpec) -> list[inspect.Parameter]:
    # an option named like a core flag never gets here: the plugin is refused when it registers
    return [option_parameter(o.name, o.type, o.default, o.help, f"{family.name} options") for o in family.options]


CONFIG_PANEL = "Config file"


def config_file_parameters() -> list[inspect.Parameter]:
    """`--config run.toml` and `--print_config` (CLI only: not run options, not in training_args.json)."""
    return [
        option_parameter(
            "config", str | None, None,
            "TOML file of options (flag names as keys, underscore or dashed); flags given on the command line win.",
            CONFIG_PANEL,
        ),
        option_parameter(
            "print_config", bool, False,
            "Print the effective options (config file + command line) as TOML and exit without training.",
            CONFIG_PANEL,
        ),
    ]


def make_train_command(registry: FamilyRegistry, family: FamilySpec) -> Callable[..., None]:
    """A function whose signature typer turns into the family's `train` command."""
    hints = typing.get_type_hints(TrainConfig)
    core_fields = cli_fields()
    params = [
        option_parameter(f.name, hints[f.name], f.default, f.metadata["help"], f.metadata["panel"]) for f in core_fields
    ]
    params += _family_parameters(family)
    params += config_file_parameters()
    params.append(option_parameter(
        "vram", str | None, None,
        "Card memory (24GB, 80, 81559MiB) or auto: turn on the fastest memory options (checkpointing, FP8) whose "
        "predicted peak fits (diffsynth plan); they are printed and recorded in training_args.json.", "Memory plan",
    ))  # fmt: skip
    family_option_names = [o.name for o in family.options]
    kinds = {p.name: typing.get_args(p.annotation)[0] for p in params}
    # typer hands the click context to a parameter annotated typer.Context (to tell flags given on
    # the command line from defaults, for --config)
    params.insert(0, inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

    def command(ctx: typer.Context, **kwargs: Any) -> None:
        from diffsynth.cli.config_file import apply_config_file, effective_toml

        kwargs = apply_config_file(ctx, kwargs, kinds, family.name)
        if kwargs.pop("print_config"):
            kwargs.pop("config")
            typer.echo(effective_toml(kwargs, [f.name for f in core_fields] + family_option_names), nl=False)
            return
        kwargs.pop("config")
        vram = kwargs.pop("vram")
        config = TrainConfig(**{f.name: kwargs[f.name] for f in core_fields})
        config.family = family.name
        config.family_options = {n: kwargs[n] for n in family_option_names}
        if vram is not None:  # before the Trainer: the chosen flags are the run's (training_args.json)
            from diffsynth.plan.run import fit_to_vram

            config, line = fit_to_vram(registry, config, vram)
            typer.echo(line)
        run_training(registry, config)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = f"Train {family.name}: {family.description}"
    return command


def run_training(registry: FamilyRegistry, config: TrainConfig) -> None:
    from diffsynth.training.outputs import claimed_output_dir
    from diffsynth.training.trainer import Trainer  # heavy: torch, accelerate, peft

    # One process claims the folder (lock, earlier results) before anything is read or written;
    # under `accelerate launch` that is global rank 0, the one process that writes there.
    claim = claimed_output_dir(Path(config.output_path), config.resume_from_checkpoint, config.overwrite)
    with claim if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext():
        result = Trainer(registry, config).run()
    if result.files:
        typer.echo(final_line(result))


def final_line(result) -> str:  # noqa: ANN001 - a TrainResult (heavy module)
    """The run in one line: where everything is, the files, the final smoothed loss, the time."""
    names = ", ".join(p.name for p in result.files + result.best_files)
    loss = f", final smoothed loss {result.smoothed_loss:.4g}" if result.smoothed_loss is not None else ""
    plot = f", {result.loss_plot.name}" if result.loss_plot is not None else ""
    return f"trained {result.steps} steps in {result.seconds:.1f} s{loss}; wrote {names}{plot} in {result.output}"


class FamilyGroup(TyperGroup):
    """A command's family subcommands; an unknown family names the registered ones."""

    registry: FamilyRegistry | None = None

    def get_command(self, ctx, cmd_name):  # noqa: ANN001 - click signature
        command = super().get_command(ctx, cmd_name)
        if command is None and self.registry is not None:
            self.registry.get(cmd_name)  # raises UserError listing the families
        return command


def family_app(
    registry: FamilyRegistry,
    help: str,
    command_help: Callable[[FamilySpec], str],
    make_command: Callable[[FamilyRegistry, FamilySpec], Callable],
) -> typer.Typer:
    """A command (train, plan, sample) with one subcommand per registered family, whose flags
    are accepted with dashes or underscores."""
    group = type("BoundFamilyGroup", (FamilyGroup,), {"registry": registry})
    app = typer.Typer(cls=group, help=help, no_args_is_help=True)
    for family in registry.families.values():
        app.command(
            name=family.name, help=command_help(family), context_settings={"token_normalize_func": underscores_to_dashes}
        )(make_command(registry, family))
    return app


def build_train_app(registry: FamilyRegistry) -> typer.Typer:
    return family_app(
        registry, "Train a model family (one subcommand per family).",
        lambda family: f"Train {family.name}: {family.description}", make_train_command,
    )  # fmt: skip
