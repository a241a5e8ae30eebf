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
from diffsynth.errors import UserError
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
    option = typer.Option(*_flag_names(name), help=help, rich_help_panel=panel, show_default=default is not None)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def _family_parameters(family: FamilySpec) -> list[inspect.Parameter]:
    core = set(f.name for f in cli_fields())
    params = []
    for opt in family.options:
        if opt.name in core:
            raise UserError(f"family {family.name}: option --{opt.name} clashes with a core option")
        params.append(option_parameter(opt.name, opt.type, opt.default, opt.help, f"{family.name} options"))
    return params


def make_train_command(registry: FamilyRegistry, family: FamilySpec) -> Callable[..., None]:
    """A function whose signature typer turns into the family's `train` command."""
    hints = typing.get_type_hints(TrainConfig)
    core_fields = cli_fields()
    params = [
        option_parameter(f.name, hints[f.name], f.default, f.metadata["help"], f.metadata["panel"]) for f in core_fields
    ]
    params += _family_parameters(family)
    family_option_names = [o.name for o in family.options]

    def command(**kwargs: Any) -> None:
        config = TrainConfig(**{f.name: kwargs[f.name] for f in core_fields})
        config.family = family.name
        config.family_options = {n: kwargs[n] for n in family_option_names}
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
        typer.echo(f"trained {result.steps} steps; wrote {', '.join(str(p) for p in result.files)}")


class FamilyGroup(TyperGroup):
    """`train` subcommands; an unknown family names the registered ones."""

    registry: FamilyRegistry | None = None

    def get_command(self, ctx, cmd_name):  # noqa: ANN001 - click signature
        command = super().get_command(ctx, cmd_name)
        if command is None and self.registry is not None:
            self.registry.get(cmd_name)  # raises UserError listing the families
        return command


def build_train_app(registry: FamilyRegistry) -> typer.Typer:
    group = type("BoundFamilyGroup", (FamilyGroup,), {"registry": registry})
    app = typer.Typer(cls=group, help="Train a model family (one subcommand per family).", no_args_is_help=True)
    for family in registry.families.values():
        app.command(
            name=family.name,
            help=f"Train {family.name}: {family.description}",
            context_settings={"token_normalize_func": underscores_to_dashes},
        )(
            make_train_command(registry, family)
        )
    return app
