"""`diffsynth dataset check`: read every row and file, and report what training would meet.

Unlike the quick check `train` runs before loading models (columns present, files exist), this
decodes every file, so it finds empty, truncated and unreadable images too.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from diffsynth.data.dataset import DatasetOptions, check_swallowed_rows, row_files, text_columns, text_problem
from diffsynth.data.media import load_image, target_size
from diffsynth.data.metadata import read_metadata
from diffsynth.data.video import is_video_column, is_video_file, load_frames
from diffsynth.errors import UserError


@dataclass(frozen=True)
class RowProblem:
    """A row that would stop training: which row (0-based), which column, and why."""

    row: int
    column: str
    message: str


@dataclass
class DatasetReport:
    metadata: Path
    rows: int
    columns: tuple[str, ...]
    file_keys: tuple[str, ...]
    problems: list[RowProblem] = field(default_factory=list)
    sizes: Counter = field(default_factory=Counter)  # (width, height) of the first file key
    resized: int = 0  # rows whose images are scaled to the training size
    cropped: int = 0  # rows whose aspect ratio differs from it, so an edge is cut off
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (row, earlier identical row)

    @property
    def ok(self) -> bool:
        return not self.problems


def _fit(width: int, height: int, target: tuple[int, int]) -> tuple[bool, bool]:
    """(resized, cropped) for resize-to-cover then center-crop to `target` (w, h)."""
    tw, th = target
    scale = max(tw / width, th / height)
    covered = (max(tw, round(width * scale)), max(th, round(height * scale)))
    return scale != 1.0, covered != (tw, th)


def check_dataset(options: DatasetOptions) -> DatasetReport:
    """Read every row of the metadata and every file it names; never raises for a bad row."""
    table = read_metadata(options.metadata_path)
    options = options.for_table(table)
    missing_columns = [k for k in (*options.file_keys, *options.required_columns) if k not in table.columns]
    if missing_columns:
        raise UserError(
            f"{table.path}: no column '{missing_columns[0]}'; columns: {', '.join(table.columns)}"
        )
    check_swallowed_rows(table, options)  # the whole table is misread: no row-by-row report
    report = DatasetReport(table.path, len(table), table.columns, options.file_keys)
    seen: dict[tuple, int] = {}
    for row_index, row in enumerate(table.rows):
        key = tuple(json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v for v in row)  # JSON lists: hashable
        if key in seen:
            report.duplicates.append((row_index, seen[key]))
        else:
            seen[key] = row_index
        fields = table.row(row_index)
        for column in text_columns(options):
            why = text_problem(column, fields.get(column))
            if why:
                report.problems.append(RowProblem(row_index, column, why))
        first = None
        for column in options.file_keys:
            value = fields.get(column)
            if value in (None, ""):
                report.problems.append(RowProblem(row_index, column, "empty, expected a file path"))
                continue
            try:
                files = row_files(value, table.path, row_index, column)
            except UserError as exc:
                report.problems.append(RowProblem(row_index, column, str(exc)))
                continue
            for file in files:
                path = options.base_path / file
                try:
                    video = is_video_column(column) or is_video_file(path)
                    loaded = load_frames(path, options.num_frames) if video else load_image(path)
                except UserError as exc:
                    report.problems.append(RowProblem(row_index, column, str(exc)))
                    continue
                image = loaded[0] if video else loaded
                if first is None:
                    first = image.size
        if first is not None:
            report.sizes[first] += 1
            target = target_size(
                *first, fixed=options.fixed_size, max_pixels=options.max_pixels, multiple=options.multiple
            )
            resized, cropped = _fit(*first, target)
            report.resized += resized
            report.cropped += cropped
    return report
