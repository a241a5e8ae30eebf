"""From the model flags of a `TrainConfig` to identified files (`ModelFiles`) for a family."""

from __future__ import annotations

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.models.checkpoints import identify_all
from diffsynth.models.sources import (
    DownloadSettings,
    ModelSource,
    parse_model_paths,
    parse_origin_path,
    parse_origin_paths,
    resolve_files,
    resolve_folder,
)
from diffsynth.spec import FamilySpec, VariantSpec
from diffsynth.types import ModelFiles


def choose_variant(family: FamilySpec, config: TrainConfig) -> VariantSpec:
    """`--variant`, else the variant an `--extra_inputs` entry asks for, else the default."""
    if config.variant:
        try:
            return family.variant(config.variant)
        except KeyError:
            names = ", ".join(v.name for v in family.variants)
            raise UserError(f"--variant: {family.name} has no variant {config.variant!r}; variants: {names}") from None
    for extra in family.extra_inputs:
        if extra.name in config.extra_input_names() and extra.variant:
            return family.variant(extra.variant)
    return family.variant(None)


def folders_variant(family: FamilySpec, config: TrainConfig) -> VariantSpec:
    """The variant whose tokenizer and processor folders a run uses when it names none: without
    `--variant`, the one whose default sources share the most repos with
    `--model_id_with_origin_paths` (DiffSynth-Studio's commands name repos, not variants: a
    FLUX.2-dev command needs dev's tokenizer, an Edit-2509 one its processor), when it shares more
    than `choose_variant`'s does."""
    chosen = choose_variant(family, config)
    if config.variant or not config.model_id_with_origin_paths:
        return chosen
    given = {s.repo_id for s in parse_origin_paths(config.model_id_with_origin_paths) if s.repo_id}

    def shared(variant: VariantSpec) -> int:
        return len({parse_origin_path(s).repo_id for s in variant.model_sources} & given)

    best = max(family.variants, key=shared)  # the first of the most shared, in the family's order
    return best if shared(best) > shared(chosen) else chosen


def model_sources(family: FamilySpec, config: TrainConfig) -> list[ModelSource]:
    """The user's sources (both flags may be mixed), or the variant's defaults when none."""
    sources: list[ModelSource] = []
    if config.model_paths:
        sources += parse_model_paths(config.model_paths)
    if config.model_id_with_origin_paths:
        sources += parse_origin_paths(config.model_id_with_origin_paths)
    if not sources:
        sources = [parse_origin_path(s) for s in choose_variant(family, config).model_sources]
    return sources


def resolve_model_files(
    family: FamilySpec, config: TrainConfig, settings: DownloadSettings | None = None
) -> ModelFiles:
    """Find (or download) every checkpoint, identify its component, and locate the tokenizer
    and processor folders. `settings` default to the environment's (base path, skip, source)."""
    settings = settings or DownloadSettings.from_env(config.download_source)
    pairs = [(s.spec, resolve_files(s, settings)) for s in model_sources(family, config)]
    components = identify_all(family, pairs)
    variant = folders_variant(family, config)
    tokenizer_spec = config.tokenizer_path or variant.tokenizer_source
    processor_spec = config.processor_path or variant.processor_source
    return ModelFiles(
        components=components,
        tokenizer_path=resolve_folder(tokenizer_spec, settings, "--tokenizer_path") if tokenizer_spec else None,
        processor_path=resolve_folder(processor_spec, settings, "--processor_path") if processor_spec else None,
    )
