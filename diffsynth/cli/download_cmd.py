"""`diffsynth download FAMILY [--variant V]` and `diffsynth download "repo/id:pattern" ...`.

An argument containing `:` is a source (`repo/id:glob`, or `repo/id:folder/`); anything else is
a family name, standing for what `train FAMILY` would fetch with its default sources: the
variant's model sources plus its tokenizer and processor folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffsynth.cli.train_cmd import underscores_to_dashes
from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.models.download import download_pattern, ensure_downloaded, format_size
from diffsynth.models.resolve import choose_variant
from diffsynth.models.sources import (
    SKIP_DOWNLOAD_ENV,
    DownloadSettings,
    parse_origin_path,
)
from diffsynth.plugins import FamilyRegistry


def sources_to_download(registry: FamilyRegistry, targets: list[str], variant: str | None) -> list[tuple[str, str]]:
    """(repo id, pattern) pairs, in order, without duplicates."""
    pairs: list[tuple[str, str]] = []
    for target in targets:
        if ":" in target:
            specs = [target]
        else:
            family = registry.get(target)
            chosen = choose_variant(family, TrainConfig(variant=variant))
            specs = [*chosen.model_sources, *filter(None, (chosen.tokenizer_source, chosen.processor_source))]
        for spec in specs:
            source = parse_origin_path(spec)
            if source.repo_id is None:
                continue  # a local path: nothing to fetch
            pair = (source.repo_id, download_pattern(source.pattern))
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def register_download(app: typer.Typer, registry: FamilyRegistry) -> None:
    @app.command("download", context_settings={"token_normalize_func": underscores_to_dashes})
    def download(
        targets: Annotated[
            list[str], typer.Argument(help='Family names and/or sources like "repo/id:glob".', show_default=False)
        ],
        variant: Annotated[str | None, typer.Option(help="Variant of the family (see `models info`).")] = None,
        download_source: Annotated[
            str | None,
            typer.Option(help="modelscope (default) or huggingface; default $DIFFSYNTH_DOWNLOAD_SOURCE."),
        ] = None,
    ) -> None:
        """Fetch model files into $DIFFSYNTH_MODEL_BASE_PATH (default ./models), skipping complete ones."""
        settings = DownloadSettings.from_env(download_source)
        pairs = sources_to_download(registry, targets, variant)
        seen: dict[Path, int] = {}
        for repo_id, pattern in pairs:
            if settings.skip:
                files = sorted(p for p in (settings.base_path / repo_id).glob(pattern) if p.is_file())
                if not files:
                    raise UserError(
                        f"{repo_id}:{pattern}: no file matches {settings.base_path / repo_id / pattern}"
                        f" and downloads are disabled ({SKIP_DOWNLOAD_ENV}=True)"
                    )
            else:
                files = ensure_downloaded(settings.base_path, settings.source, repo_id, pattern)
            size = sum(p.stat().st_size for p in files)
            seen.update({p: p.stat().st_size for p in files})
            where = _common_parent(files)
            typer.echo(f"{repo_id}:{pattern} -> {where} ({len(files)} file(s), {format_size(size)})")
        origin = "local files only" if settings.skip else f"from {settings.source}"
        typer.echo(
            f"{len(seen)} file(s), {format_size(sum(seen.values()))} in {settings.base_path} ({origin})"
        )


def _common_parent(files: list[Path]) -> Path:
    parents = [p.parent for p in files]
    common = parents[0]
    while not all(common == q or common in q.parents for q in parents):
        common = common.parent
    return common
