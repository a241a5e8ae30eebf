"""The encoder cache in a run: which task does what, what is refused, building and reading.

- `--task sft:data_process` (DiffSynth-Studio's split training, stage 1): load the encoders alone,
  encode every row into the cache at `--output_path`, stop.
- `--task sft:train` (stage 2): `--dataset_base_path` is such a cache; load the denoiser alone
  and train from it. No encoder is loaded, no source file is read.
- `--cache_dir PATH` / `--cache` (one command): encode the rows missing from the cache (encoders
  alone), free the encoders, load the denoiser alone and train from the cache.

Rows are encoded by the process `row % world_size` of an `accelerate launch`; every entry is
written atomically, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from diffsynth.cache.codec import inputs_to, read_entry, write_entry
from diffsynth.cache.store import CacheStore, RowKeys, _json_digest, encoder_identity
from diffsynth.config import TrainConfig, split_list
from diffsynth.errors import UserError
from diffsynth.family import Family
from diffsynth.types import ModelFiles, RunContext, Sample, TrainingInputs

DATA_PROCESS, TRAIN_FROM_CACHE = "sft:data_process", "sft:train"
TASKS = ("sft", DATA_PROCESS, TRAIN_FROM_CACHE)
DEFAULT_CACHE = "cache"  # --cache: <output_path>/cache


def cache_folder(config: TrainConfig) -> Path | None:
    """Where this run's encoder cache is, or None when it trains without one."""
    if config.task == DATA_PROCESS:
        return Path(config.output_path)
    if config.task == TRAIN_FROM_CACHE:
        return Path(config.dataset_base_path)
    if config.cache_dir:
        return Path(config.cache_dir)
    if config.cache:
        return Path(config.output_path) / DEFAULT_CACHE
    return None


def _flag(config: TrainConfig) -> str:
    if config.task == DATA_PROCESS:
        return "--task sft:data_process"
    if config.task == TRAIN_FROM_CACHE:
        return "--task sft:train"
    return "--cache_dir" if config.cache_dir else "--cache"


def validate_cache(config: TrainConfig, family) -> None:
    """Refuse, in one line and before any model loads, the runs a cache would make wrong."""
    if config.task not in TASKS:
        raise UserError(f"--task: expected one of {', '.join(TASKS)}, got {config.task!r}")
    if config.task != "sft" and (config.cache_dir or config.cache):
        raise UserError(f"--cache_dir/--cache: not with --task {config.task} (that task names the cache folder itself)")
    if cache_folder(config) is None:
        return
    flag = _flag(config)
    trained = [n for n in [config.lora_base_model, *config.trainable_model_names()] if n and n != family.denoiser]
    if trained:
        raise UserError(
            f"{flag}: {', '.join(trained)} is trained (--lora_base_model/--trainable_models), so its outputs change "
            "every step and cannot be cached; train without the cache"
        )
    if config.caption_dropout_rate > 0:
        raise UserError(
            f"{flag}: --caption_dropout_rate {config.caption_dropout_rate:g} changes the prompt from epoch to epoch; "
            "the cache holds each row's own prompt only: train without the cache or without caption dropout"
        )
    if getattr(config, "validation_metadata_path", None) or getattr(config, "validation_split", None) is not None:
        raise UserError(
            f"{flag}: --validation_metadata_path is not supported with the encoder cache yet (its rows are encoded "
            "by the encoders, which a cached run does not load); train without the cache to get val_loss"
        )
    if config.task == TRAIN_FROM_CACHE and config.dataset_metadata_path:
        raise UserError("--task sft:train: --dataset_base_path is the cache folder of stage 1; drop --dataset_metadata_path")
    if config.cache_dir and Path(config.cache_dir).exists() and not Path(config.cache_dir).is_dir():
        raise UserError(f"--cache_dir {config.cache_dir}: not a folder")


# -- model files per stage --------------------------------------------------------------------


def stage_files(family, config: TrainConfig, encoders: bool) -> ModelFiles:
    """The model files of one stage: the encoders alone (every component but the denoiser) or
    the denoiser alone; `--offload_models` sources (DiffSynth-Studio's flag) are left out."""
    from diffsynth.models.checkpoints import identify_all
    from diffsynth.models.resolve import folders_variant, model_sources
    from diffsynth.models.sources import DownloadSettings, resolve_files, resolve_folder

    settings = DownloadSettings.from_env(config.download_source)
    offload = set(split_list(config.offload_models))
    sources = [s for s in model_sources(family, config) if s.spec not in offload]
    components = identify_all(family, [(s.spec, resolve_files(s, settings)) for s in sources])
    if encoders:
        components = {n: g for n, g in components.items() if n != family.denoiser}
        if not components:
            raise UserError(f"{_flag(config)}: no encoder among the model sources (only the {family.denoiser}); add the VAE and text encoder")
        variant = folders_variant(family, config)
        tok, proc = config.tokenizer_path or variant.tokenizer_source, config.processor_path or variant.processor_source
        return ModelFiles(
            components,
            tokenizer_path=resolve_folder(tok, settings, "--tokenizer_path") if tok else None,
            processor_path=resolve_folder(proc, settings, "--processor_path") if proc else None,
        )
    if family.denoiser not in components:
        raise UserError(f"{_flag(config)}: the {family.denoiser} is not among the model sources; training needs it")
    return ModelFiles({family.denoiser: components[family.denoiser]})


def encoder_context(context: RunContext, models: ModelFiles) -> RunContext:
    return replace(context, components=tuple(models.components))


def denoiser_context(context: RunContext, family) -> RunContext:
    return replace(context, components=(family.denoiser,))


# -- building ---------------------------------------------------------------------------------


@dataclass
class CacheBuild:
    store: CacheStore
    rows: list[dict[str, Any]]  # index rows: row, key, files, fields
    encoded: int  # entries this process wrote
    seconds: float


def _family_packages(registry, family) -> tuple[str, ...]:
    """Top-level packages of the plugin(s) that registered `family`: the only place a cached
    conditioning class may come from."""
    packages = set()
    for plugin in registry.pm.get_plugins():
        spec = getattr(plugin, "spec", None)
        if getattr(spec, "name", None) == family.name:
            answers = plugin._impl() if isinstance(plugin, Family) else plugin  # a LazyFamily's class
            packages.add(type(answers).__module__.split(".")[0])
    return tuple(sorted(packages)) or ("diffsynth",)


def build_identity(family, context: RunContext, encoders: dict[str, Any]) -> str:
    options = context.options
    import dataclasses

    opts = dataclasses.asdict(options) if dataclasses.is_dataclass(options) and not isinstance(options, type) else options
    return _json_digest({
        "family": family.name, "preprocess_version": family.preprocess_version, "encoders": encoders,
        "dtype": context.dtype, "extra_inputs": list(context.extra_inputs), "options": opts,
    })


def build_cache(trainer, dataset, root: Path) -> CacheBuild:
    """Encode every row of `dataset` missing from the cache at `root` (this process's share of
    them), then write the index. Loads the encoders only when something is missing, frees them after."""
    import time

    from accelerate import PartialState

    from diffsynth.data.mask import apply_mask
    from diffsynth.training.trainable import with_fp8_storage

    started = time.perf_counter()
    config, family = trainer.config, trainer.family
    flag = _flag(config)
    state = PartialState(cpu=not torch.cuda.is_available())
    models = with_fp8_storage(config, stage_files(family, config, encoders=True))
    encoders = encoder_identity(models)
    store = CacheStore(root)
    store.claim(family.name, encoders, flag, write=state.is_main_process)
    if state.is_main_process:
        store.clean_partial()
    state.wait_for_everyone()
    store.claim(family.name, encoders, flag, write=False)  # every process, now that main wrote it

    context = encoder_context(trainer.context, models)
    opts = dataset.options
    keys = RowKeys(
        build=build_identity(family, context, encoders),
        sizing={"fixed": opts.fixed_size, "max_pixels": opts.max_pixels, "multiple": opts.multiple,
                "num_frames": opts.num_frames, "file_keys": list(opts.file_keys)},
        file_keys=tuple(opts.file_keys), base_path=opts.base_path,
    )
    rows = []
    for r in range(dataset.num_rows):
        fields = dataset.table.row(r)
        rows.append({"row": r, "key": keys.key(fields), **keys.source(fields)})
    mine = [row for row in rows if row["row"] % state.num_processes == state.process_index and not store.has(row["key"])]
    encoded = 0
    if mine:
        pipeline = trainer.hooks.load_pipeline(models, context)
        for module in pipeline.modules.values():
            module.requires_grad_(False).eval().to(state.device)
        pipeline.device = state.device
        if state.is_main_process:
            sys.stderr.write(f"{family.name}: encoding {len(mine)} of {len(rows)} rows into {root} "
                             f"({state.num_processes} process(es))\n")
        for row in mine:
            if store.has(row["key"]):  # an identical row encoded earlier in this build
                continue
            sample: Sample = dataset[row["row"]]
            inputs = trainer.hooks.preprocess(pipeline, sample, context, with_grad=False)
            apply_mask(inputs, sample)  # the mask is part of the row: cached with it
            write_entry(store.entry_path(row["key"]), inputs, {"row": row["row"], "source": {k: row[k] for k in ("files", "fields")}})
            encoded += 1
        del pipeline
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    state.wait_for_everyone()
    if state.is_main_process:
        store.write_index(family.name, rows)
    state.wait_for_everyone()
    return CacheBuild(store, rows, encoded, time.perf_counter() - started)


# -- reading ----------------------------------------------------------------------------------


@dataclass
class CachedSample(Sample):
    """A dataset item read from the cache: the row's TrainingInputs, already encoded."""

    inputs: TrainingInputs | None = None


class _IndexTable:
    """What the trainer's messages read of a dataset table, from the index (file names per row)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def row(self, index: int) -> dict[str, Any]:
        return dict(self.rows[index].get("files", {}))


@dataclass(frozen=True)
class _IndexOptions:
    file_keys: tuple[str, ...]
    repeat: int


class CachedDataset(torch.utils.data.Dataset):
    """The rows of a cache build (or of a stage-1 folder's index), repeated; item i is row
    i % rows read from its entry."""

    def __init__(self, store: CacheStore, rows: list[dict[str, Any]], repeat: int, packages: tuple[str, ...]) -> None:
        if not rows:
            raise UserError(f"encoder cache {store.root}: no entries")
        missing = [r for r in rows if not store.has(r["key"])]
        if missing:
            raise UserError(
                f"encoder cache {store.root}: {len(missing)} of {len(rows)} entries are missing (first: row {missing[0]['row'] + 1}); "
                "run stage 1 (--task sft:data_process) again to complete it"
            )
        self.store, self.rows, self.packages = store, rows, packages
        self.num_rows = len(rows)
        self.table = _IndexTable(rows)
        keys = tuple(dict.fromkeys(k for r in rows for k in r.get("files", {})))
        self.options = _IndexOptions(keys, repeat)

    def __len__(self) -> int:
        return self.num_rows * self.options.repeat

    def training_size(self, index: int) -> tuple[int, ...]:
        """The row's latent shape, from its entry's header (the bucket `--batch_size` batches by)."""
        from diffsynth.models.header import read_safetensors_header

        tensors, _ = read_safetensors_header(self.store.entry_path(self.rows[int(index) % self.num_rows]["key"]))
        return tensors["latents"].shape

    def __getitem__(self, index: int) -> CachedSample:
        row = int(index) % self.num_rows
        entry = self.rows[row]
        inputs = read_entry(self.store.entry_path(entry["key"]), self.packages)
        return CachedSample(index=row, fields={}, inputs=inputs)


def cached_inputs(sample: Any, device: torch.device) -> TrainingInputs | None:
    """The loop's TrainingInputs when `sample` came from the cache (on `device`), else None."""
    if isinstance(sample, CachedSample) and sample.inputs is not None:
        return inputs_to(sample.inputs, device)
    return None


@dataclass
class CachedRun:
    """What the trainer uses instead of the source dataset and the full model files."""

    dataset: CachedDataset
    model_files: ModelFiles
    context: RunContext
    build: CacheBuild | None = None


def prepare_cached_run(trainer, source_dataset) -> CachedRun | None:
    """For `--cache_dir`/`--cache` (build, then read) and `--task sft:train` (read the folder):
    the cached dataset and the denoiser-only model files; None for a run without cache."""
    config, family = trainer.config, trainer.family
    root = cache_folder(config)
    if root is None or config.task == DATA_PROCESS:
        return None
    packages = _family_packages(trainer.hooks.registry, family)
    store = CacheStore(root)
    build = None
    if config.task == TRAIN_FROM_CACHE:
        store.check_family(store.manifest(), family.name, _flag(config))
        rows = store.read_index()
    else:
        build = build_cache(trainer, source_dataset, root)
        rows = build.rows
    models = stage_files(family, config, encoders=False)
    dataset = CachedDataset(store, rows, config.dataset_repeat, packages)
    return CachedRun(dataset, models, denoiser_context(trainer.context, family), build)


def run_data_process(trainer, source_dataset) -> CacheBuild:
    """`--task sft:data_process`: stage 1 of split training."""
    root = Path(trainer.config.output_path)
    build = build_cache(trainer, source_dataset, root)
    from accelerate import PartialState

    if PartialState().is_main_process:
        sys.stderr.write(
            f"{trainer.family.name}: encoder cache {root}: {len(build.rows)} rows ready in {build.seconds:.1f} s; "
            f"train with --task sft:train --dataset_base_path {root}\n"
        )
    return build
