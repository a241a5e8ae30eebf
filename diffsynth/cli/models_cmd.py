"""`diffsynth models list | info | init`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from diffsynth.errors import PluginError, UserError
from diffsynth.plugins import FamilyRegistry
from diffsynth.spec import FamilySpec


def family_summary(spec: FamilySpec) -> dict:
    return {
        "name": spec.name,
        "description": spec.description,
        "plugin": spec.plugin,
        "version": spec.plugin_version,
        "status": "ok",
    }


def family_details(spec: FamilySpec) -> dict:
    """Everything `models info` shows, as plain JSON-able data."""
    return {
        **family_summary(spec),
        "components": [
            {"name": c.name, "description": c.description, "class": c.module_class} for c in spec.components
        ],
        "variants": [
            {
                "name": v.name,
                "description": v.description,
                "model_sources": list(v.model_sources),
                "tokenizer": v.tokenizer_source,
                "processor": v.processor_source,
            }
            for v in spec.variants
        ],
        "denoiser": spec.denoiser,
        "default_lora_targets": list(spec.default_lora_targets),
        "extra_inputs": [{"name": e.name, "description": e.description} for e in spec.extra_inputs],
        "presets": [{"name": p.name, "description": p.description} for p in spec.presets],
        "options": [
            {"name": o.name, "type": o.type.__name__, "default": o.default, "help": o.help} for o in spec.options
        ],
        "resolution_multiple": spec.resolution_multiple,
    }


def models_app(registry: FamilyRegistry) -> typer.Typer:
    app = typer.Typer(help="Registered model families.", no_args_is_help=True)

    @app.command("list")
    def list_families(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
        check: Annotated[
            bool,
            typer.Option("--check", help="Also load every family's class (imports torch); exit 1 if any is broken."),
        ] = False,
    ) -> None:
        """Families from installed plugins (broken plugins are listed with their error)."""
        if check:
            registry.load_family_classes()
        rows = [family_summary(s) for s in registry.families.values()]
        rows += [
            {"name": b.name, "description": b.error, "plugin": b.distribution, "version": "", "status": "broken"}
            for b in registry.broken
        ]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            from rich.console import Console
            from rich.table import Table

            table = Table("family", "description", "plugin", "status")
            for row in rows:
                status = "[green]ok" if row["status"] == "ok" else "[red]broken"
                table.add_row(row["name"], row["description"], f"{row['plugin']} {row['version']}".strip(), status)
            Console().print(table)
        if check and registry.broken:
            raise typer.Exit(1)

    @app.command("info")
    def info(
        family: Annotated[str, typer.Argument(help="Family name.")],
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Components, default sources, LoRA targets, extra inputs, presets and options."""
        details = family_details(registry.get(family))
        if as_json:
            typer.echo(json.dumps(details, indent=2, default=str))
            return
        _print_details(details)

    @app.command("init")
    def init(
        family: Annotated[str, typer.Argument(help="Family name.")],
        directory: Annotated[Path, typer.Argument(help="Folder to write the model into.")],
        preset: Annotated[str, typer.Option(help="Model size preset (see `models info`).")] = "tiny",
        seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a folder that is not empty.")] = False,
    ) -> None:
        """Write a random model in the real repo's on-disk layout (for tests and demos)."""
        spec = registry.get(family)
        names = [p.name for p in spec.presets]
        if preset not in names:
            raise UserError(f"--preset: {family} has no preset {preset!r}; presets: {', '.join(names) or 'none'}")
        check_init_folder(directory, overwrite)
        written = registry.hook.init_model(family=spec.name, preset=preset, directory=directory, seed=seed)
        if not written:
            raise PluginError(f"no plugin implements init_model for {spec.name}")
        give_user_modes(directory)
        typer.echo(f"wrote {spec.name} preset {preset} to {directory}")

    return app


def check_init_folder(directory: Path, overwrite: bool) -> None:
    """`models init` writes random weights: never over a folder that holds something (it may be
    the real download folder) unless --overwrite says so."""
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory}: exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise UserError(
            f"{directory}: folder is not empty (it may hold a real model); choose an empty folder, "
            "or pass --overwrite to replace its files with random weights"
        )


def give_user_modes(directory: Path) -> None:
    """Library writers create some files 0600; give what init wrote the user's umask mode."""
    from diffsynth.training.outputs import give_user_mode

    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            give_user_mode(path)


def _print_details(d: dict) -> None:
    from rich.console import Console

    out = Console()
    out.print(f"[bold]{d['name']}[/bold] — {d['description']} ({d['plugin']} {d['version']})")
    out.print("\n[bold]components[/bold]")
    for c in d["components"]:
        out.print(f"  {c['name']:<14} {c['description']}  [dim]{c['class']}[/dim]")
    out.print("\n[bold]variants and default sources[/bold]")
    for v in d["variants"]:
        out.print(f"  {v['name']}: {v['description']}")
        for s in v["model_sources"]:
            out.print(f"    {s}")
        for label in ("tokenizer", "processor"):
            if v[label]:
                out.print(f"    {label}: {v[label]}")
    out.print(f"\n[bold]default LoRA targets[/bold] ({d['denoiser']}): {','.join(d['default_lora_targets'])}")
    for title, key in (("extra inputs", "extra_inputs"), ("presets", "presets")):
        out.print(f"\n[bold]{title}[/bold]")
        for e in d[key] or [{"name": "none", "description": ""}]:
            out.print(f"  {e['name']:<14} {e['description']}")
    if d["options"]:
        out.print("\n[bold]family options[/bold]")
        for o in d["options"]:
            out.print(f"  --{o['name']} ({o['type']}, default {o['default']}): {o['help']}")
