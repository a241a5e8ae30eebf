"""The training dataset: metadata rows, repeated, with their file columns loaded as images or
videos (lists of frames)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import torch.utils.data

from diffsynth.config import TrainConfig
from diffsynth.data.mask import MASK_COLUMN
from diffsynth.data.media import (
    check_fixed_size,
    load_image,
    resize_and_crop,
    target_size,
)
from diffsynth.data.metadata import MetadataTable, find_metadata, read_metadata
from diffsynth.data.video import is_video_column, is_video_file, load_frames, video_frame_size
from diffsynth.errors import UserError
from diffsynth.types import Sample


@dataclass(frozen=True)
class DatasetOptions:
    """Everything the dataset needs, validated; build it with `from_config`."""

    base_path: Path
    metadata_path: Path
    file_keys: tuple[str, ...]
    required_columns: tuple[str, ...]
    repeat: int
    fixed_size: tuple[int, int] | None  # (height, width) from --height/--width
    max_pixels: int
    multiple: int
    num_frames: int = 81
    #: True when file_keys are the family's defaults: columns absent from the metadata are skipped.
    skip_absent_keys: bool = False
    #: --gradient_accumulation_steps: an epoch must hold at least one optimizer step's micro-batches.
    accumulation: int = 1

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        *,
        multiple: int,
        required_columns: tuple[str, ...] = ("prompt",),
        default_file_keys: tuple[str, ...] = ("image",),
        derivable_inputs: tuple[str, ...] = (),
    ) -> DatasetOptions:
        """Validate the dataset flags of `config`. `multiple` is the family's resolution multiple;
        `required_columns` (plus `--extra_inputs`) must exist in the metadata; `default_file_keys`
        are used, where present, when `--data_file_keys` is not given; `derivable_inputs` are extra inputs
        the family can do without a column for. Reads no metadata."""
        if multiple <= 0:
            raise ValueError(f"resolution multiple must be positive, got {multiple}")
        if not config.dataset_base_path:
            raise UserError("--dataset_base_path is required: the folder the metadata's file columns are relative to")
        base = Path(config.dataset_base_path)
        if not base.is_dir():
            raise UserError(f"--dataset_base_path {base}: not a folder")
        metadata = Path(config.dataset_metadata_path) if config.dataset_metadata_path else find_metadata(base)
        if config.dataset_repeat < 1:
            raise UserError(f"--dataset_repeat {config.dataset_repeat}: expected an integer >= 1")
        if config.max_pixels <= 0:
            raise UserError(f"--max_pixels {config.max_pixels}: expected a positive number of pixels")
        if config.num_frames < 1:
            raise UserError(f"--num_frames {config.num_frames}: expected a positive integer")
        # an extra input the family can derive (e.g. a video's first frame) needs no column
        extras = [name for name in config.extra_input_names() if name not in derivable_inputs]
        required = dict.fromkeys([*required_columns, *extras])
        explicit = config.data_file_keys is not None
        return cls(
            base_path=base,
            metadata_path=metadata,
            file_keys=tuple(config.file_keys()) if explicit else tuple(default_file_keys),
            required_columns=tuple(required),
            repeat=config.dataset_repeat,
            fixed_size=check_fixed_size(config.height, config.width, multiple),
            max_pixels=config.max_pixels,
            multiple=multiple,
            num_frames=config.num_frames,
            skip_absent_keys=not explicit,
            accumulation=max(1, config.gradient_accumulation_steps),
        )

    def for_table(self, table: MetadataTable) -> DatasetOptions:
        """These options with default file keys narrowed to the columns `table` has, and a `mask`
        column (masked loss, diffsynth.data.mask) loaded after them when the table has one."""
        if MASK_COLUMN in table.columns and self.file_keys and MASK_COLUMN not in self.file_keys:
            return replace(self, file_keys=(*self.file_keys, MASK_COLUMN)).for_table(table)
        if not self.skip_absent_keys:
            return self
        present = tuple(k for k in self.file_keys if k in table.columns)
        if not present:
            raise UserError(
                f"{table.path}: none of the file columns {', '.join(self.file_keys)} exists; columns: "
                f"{', '.join(table.columns)} (name yours with --data_file_keys)"
            )
        return replace(self, file_keys=present, skip_absent_keys=False)


def check_dataset_quickly(options: DatasetOptions) -> MetadataTable:
    """The cheap check run before loading models: the metadata reads, its columns exist, and every
    file it names exists. Returns the table (hand it to `TrainingDataset` to avoid re-reading)."""
    table = read_metadata(options.metadata_path)
    options = options.for_table(table)
    needed = {key: "named in --data_file_keys" for key in options.file_keys}
    for column in options.required_columns:
        needed.setdefault(column, "required by the family or --extra_inputs")
    for column, why in needed.items():
        if column not in table.columns:
            raise UserError(f"{table.path}: no column '{column}' ({why}); columns: {', '.join(table.columns)}")
    check_swallowed_rows(table, options)
    problem = first_text_problem(table, options)
    if problem:
        raise UserError(f"{table.path} row {problem[0] + 1}: column '{problem[1]}' {problem[2]}")
    _check_accumulation(table, options)
    _check_files_exist(table, options)
    return table


def check_swallowed_rows(table: MetadataTable, options: DatasetOptions) -> None:
    """A line inside a quoted field that names a file where the row's file column is (an existing
    file, or one like the row's own) is a row the quote swallowed, not a line of a prompt."""
    for s in table.swallow_suspects:
        own = table.row(s.row - 1)
        for key in options.file_keys:
            j = table.columns.index(key)
            candidate, mine = s.fields[j], str(own.get(key) or "")
            suffix = PurePosixPath(candidate).suffix.lower()
            if (suffix and suffix == PurePosixPath(mine).suffix.lower()) or (options.base_path / candidate).is_file():
                raise UserError(
                    f"{table.path} line {s.start} (row {s.row}): a quoted field runs on to line {s.end} and swallows "
                    f"line {s.line} ({','.join(s.fields)[:60]!r}) as text; close the quote, or write a literal quote as \"\""
                )


def text_columns(options: DatasetOptions) -> list[str]:
    """Required columns that are text, not files (the prompt)."""
    return [c for c in options.required_columns if c not in options.file_keys]


def text_problem(column: str, value: Any) -> str | None:
    """Why a row's text value would not train (a missing or blank prompt), or None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "is empty; every row needs one (training would use no prompt)"
    if column == "prompt" and not isinstance(value, str):
        return f"is {type(value).__name__} {value!r}, expected text"
    return None


def first_text_problem(table: MetadataTable, options: DatasetOptions) -> tuple[int, str, str] | None:
    """(row, column, why) of the first row with a missing or blank text value, or None."""
    for column in text_columns(options):
        for row, value in enumerate(table.column(column)):
            why = text_problem(column, value)
            if why:
                return row, column, why
    return None


def _check_accumulation(table: MetadataTable, options: DatasetOptions) -> None:
    """An optimizer step needs `accumulation` micro-batches; an epoch with fewer trains nothing
    (or mixes epochs in one step). Per process under `accelerate launch`."""
    world = max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    per_process = -(-len(table) * options.repeat // world)
    if per_process < options.accumulation:
        processes = f" / {world} processes" if world > 1 else ""
        raise UserError(
            f"--gradient_accumulation_steps {options.accumulation}: an epoch has only {per_process} micro-batches "
            f"({len(table)} rows x --dataset_repeat {options.repeat}{processes}); lower it or raise --dataset_repeat"
        )


def _check_files_exist(table: MetadataTable, options: DatasetOptions) -> None:
    """Report the first missing file (row + column) and how many are missing.

    One listdir per folder instead of one stat per file: a 1M-row table checks in about a second.
    """
    names_by_folder: dict[str, set[str]] = defaultdict(set)
    for key in options.file_keys:
        for row, value in enumerate(table.column(key)):
            for path in row_files(value, table.path, row, key):
                folder, _, name = path.rpartition("/")
                names_by_folder[folder].add(name)
    missing: set[str] = set()  # values as written in the metadata
    for folder, names in names_by_folder.items():
        try:
            present = set(os.listdir(options.base_path / folder))
        except OSError:
            present = set()
        for name in names - present:
            value = f"{folder}/{name}" if folder else name
            if not (options.base_path / value).is_file():  # e.g. "a/../b.png", case-insensitive disks
                missing.add(value)
    if not missing:
        return
    first, count, total = None, 0, 0
    for key in options.file_keys:
        for row, value in enumerate(table.column(key)):
            for path in row_files(value, table.path, row, key):
                total += 1
                if path in missing:
                    count += 1
                    if first is None or row < first[0]:
                        first = (row, key, path)
    row, key, value = first  # type: ignore[misc]
    raise UserError(
        f"{table.path} row {row + 1}: file '{value}' (column '{key}') not found under "
        f"--dataset_base_path {options.base_path}; {count} of {total} files are missing"
    )


def row_files(value: Any, table_path: Path, row: int, key: str) -> list[str]:
    """The file path(s) in one row's file column: a path, or a list of paths (JSON/JSONL
    metadata; several images in one column, e.g. an edit's reference pictures)."""
    where = f"{table_path} row {row + 1}: column '{key}'"
    if not isinstance(value, list):
        value = [value]
    elif not value:
        raise UserError(f"{where} is an empty list, expected file paths")
    for item in value:
        if item is None or item == "":
            raise UserError(f"{where} is empty, expected a file path")
        if isinstance(item, (list, dict, bool)):
            raise UserError(f"{where}: {json.dumps(item)[:60]} is not a file path (a path, or a list of paths)")
    return [str(item) for item in value]


class TrainingDataset(torch.utils.data.Dataset):
    """Metadata rows repeated `options.repeat` times; item i is row i % rows with files loaded.

    Every `file_keys` column is loaded and fitted to one size per row: the size computed from the
    first file key's (first frame's) image, so paired images (e.g. an edit's source and target)
    stay aligned. A video file, or any file in a `video`/`*_video` column, becomes a list of
    frames (`--num_frames`); other files a PIL image. A column holding a list of paths (JSON or
    JSONL metadata) becomes a list of those, in order, each fitted to its own size (its aspect
    ratio under `--max_pixels`, or `--height/--width`) as DiffSynth-Studio loads list columns:
    they are separate pictures (reference images), not aligned to the row's.
    """

    def __init__(self, options: DatasetOptions, table: MetadataTable | None = None, rows: range | None = None) -> None:
        self.table = table if table is not None else read_metadata(options.metadata_path)
        self.options = options = options.for_table(self.table)
        #: The metadata rows this dataset serves (all of them, or one side of `held_out_split`).
        self.rows = rows if rows is not None else range(len(self.table))
        self.num_rows = len(self.rows)
        for key in options.file_keys:
            if key not in self.table.columns:
                raise UserError(f"{self.table.path}: no column '{key}' (named in --data_file_keys); columns: {', '.join(self.table.columns)}")

    def __len__(self) -> int:
        return self.num_rows * self.options.repeat

    def training_size(self, index: int) -> tuple[int, int]:
        """The (width, height) row `index` trains at, from its first file's header (nothing
        decoded): what `__getitem__` resizes it to. Batches group rows of one size."""
        row = self.rows[index % self.num_rows]
        if self.options.fixed_size is not None:
            height, width = self.options.fixed_size
            return width, height
        key = self.options.file_keys[0]
        path = self.options.base_path / row_files(self.table.row(row)[key], self.table.path, row, key)[0]
        try:
            if is_video_file(path):  # a still image in a video column is a 1-frame clip
                width, height = video_frame_size(path)
            else:
                from PIL import Image

                with Image.open(path) as image:
                    width, height = image.size
        except Exception as exc:  # noqa: BLE001 - PIL and PyAV raise many types for a bad file
            raise UserError(f"{self.table.path} row {row + 1}, column '{key}': cannot read {path} ({exc})") from None
        return target_size(width, height, fixed=None, max_pixels=self.options.max_pixels, multiple=self.options.multiple)

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"dataset index {index} out of range for length {len(self)}")
        row = self.rows[index % self.num_rows]
        fields: dict[str, Any] = self.table.row(row)
        size = None
        for key in self.options.file_keys:
            value = fields[key]
            items = []
            for file in row_files(value, self.table.path, row, key):
                loaded, first = self._load(self.options.base_path / file, row, key)
                own = self._fit_size(first)
                size = size or own  # the row's size: its first file's
                fit = own if isinstance(value, list) else size
                items.append([resize_and_crop(f, *fit) for f in loaded] if isinstance(loaded, list) else resize_and_crop(loaded, *fit))
            fields[key] = items if isinstance(value, list) else items[0]
        return Sample(index=row, fields=fields)

    def _load(self, path: Path, row: int, key: str) -> tuple[Any, Any]:
        """(a PIL image or a video's frames, the image that sizes it)."""
        try:
            video = is_video_column(key) or is_video_file(path)
            loaded = load_frames(path, self.options.num_frames) if video else load_image(path)
        except UserError as e:
            raise UserError(f"{self.table.path} row {row + 1}, column '{key}': {e}") from None
        return loaded, loaded[0] if video else loaded

    def _fit_size(self, image: Any) -> tuple[int, int]:
        return target_size(
            image.width, image.height, fixed=self.options.fixed_size, max_pixels=self.options.max_pixels, multiple=self.options.multiple
        )


def held_out_split(dataset: TrainingDataset, fraction: float) -> tuple[TrainingDataset, TrainingDataset]:
    """(training rows, held-out rows): the last `fraction` of the metadata's rows (at least one
    each side) are held out, so the split is the same in every run and on every process."""
    total = dataset.num_rows
    held = max(1, round(total * fraction))
    if held >= total:
        raise UserError(f"--validation_split {fraction:g}: {total} row(s) cannot spare {held} for validation and keep one to train on")
    start = dataset.rows.start
    train = TrainingDataset(dataset.options, dataset.table, range(start, start + total - held))
    return train, TrainingDataset(dataset.options, dataset.table, range(start + total - held, start + total))


def first_item(batch: list[Sample]) -> Sample:
    """DataLoader collate_fn for batch size 1: the Sample itself (images stay PIL)."""
    if len(batch) != 1:
        raise ValueError(f"first_item collates batches of exactly 1 sample, got {len(batch)}")
    return batch[0]
