"""`diffsynth dataset check`: every row and file of a dataset, before a run meets them."""

from __future__ import annotations

import inspect
import json
import typing
from typing import Annotated, Any

import typer

from diffsynth.cli.train_cmd import option_parameter, underscores_to_dashes
from diffsynth.config import DATASET, RESOLUTION, TrainConfig, cli_fields
from diffsynth.plugins import FamilyRegistry

#: A family's resolution multiple when no --family is given (VAE factor 8 x patch size 2).
DEFAULT_MULTIPLE = 16


def _check_command(registry: FamilyRegistry):
    hints = typing.get_type_hints(TrainConfig)
    fields = [f for f in cli_fields() if f.metadata["panel"] in (DATASET, RESOLUTION) and f.name != "extra_inputs"]
    params = [option_parameter(f.name, hints[f.name], f.default, f.metadata["help"], f.metadata["panel"]) for f in fields]
    params += [
        inspect.Parameter(
            "family", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[str | None, typer.Option(help="Use this family's resolution multiple and default file columns.")],
        ),
        inspect.Parameter(
            "as_json", inspect.Parameter.KEYWORD_ONLY, default=False,
            annotation=Annotated[bool, typer.Option("--json", help="Machine-readable report.")],
        ),
    ]

    def check(**kwargs: Any) -> None:
        from diffsynth.data.check import check_dataset
        from diffsynth.data.dataset import DatasetOptions

        config = TrainConfig(**{f.name: kwargs[f.name] for f in fields})
        spec = registry.get(kwargs["family"]) if kwargs["family"] else None
        options = DatasetOptions.from_config(
            config,
            multiple=spec.resolution_multiple if spec else DEFAULT_MULTIPLE,
            default_file_keys=spec.default_data_file_keys if spec else ("image",),
        )
        report = check_dataset(options)
        _print(report, kwargs["as_json"])
        if not report.ok:
            raise typer.Exit(1)

    check.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    check.__annotations__ = {p.name: p.annotation for p in params}
    check.__doc__ = "Read every row and file; report problems, sizes, resizing and duplicates (exit 1 on problems)."
    return check


def _print(report, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({
            "metadata": str(report.metadata), "rows": report.rows, "columns": list(report.columns),
            "file_keys": list(report.file_keys),
            # rows count from 1 here too, as in every message (the first row after a CSV header is row 1)
            "problems": [{"row": p.row + 1, "column": p.column, "message": p.message} for p in report.problems],
            "sizes": {f"{w}x{h}": n for (w, h), n in report.sizes.most_common()},
            "resized": report.resized, "cropped": report.cropped,
            "duplicates": [{"row": r + 1, "same_as": s + 1} for r, s in report.duplicates],
        }, indent=2))
        return
    typer.echo(f"{report.metadata}: {report.rows} rows, columns {', '.join(report.columns)}; files in {', '.join(report.file_keys)}")
    sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in report.sizes.most_common(5))
    typer.echo(f"sizes: {sizes or 'none readable'}{' ...' if len(report.sizes) > 5 else ''}")
    typer.echo(f"at the training size: {report.resized} rows resized, {report.cropped} cropped")
    for row, same in report.duplicates:
        typer.echo(f"duplicate: row {row + 1} repeats row {same + 1}")
    for p in report.problems:
        typer.echo(f"problem: row {p.row + 1}, column '{p.column}': {p.message}")
    typer.echo("ok" if report.ok else f"{len(report.problems)} problem(s): training would stop at these rows")


def dataset_app(registry: FamilyRegistry) -> typer.Typer:
    app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
    app.command("check", context_settings={"token_normalize_func": underscores_to_dashes})(_check_command(registry))
    return app
