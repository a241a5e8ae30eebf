"""Read a dataset's metadata table from .csv, .json (a list of objects) or .jsonl.

Rows are kept as tuples in column order (a tuple is a third of the size of a dict): a
1,000,000-row, two-column table loads in about a second into ~270 MB.
"""

from __future__ import annotations

import csv
import gc
import itertools
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffsynth.errors import UserError

METADATA_NAMES = ("metadata.csv", "metadata.jsonl", "metadata.json")
_JSONL_CHUNK = 8192  # lines parsed per json.loads call: one call per line is twice as slow


@dataclass(frozen=True)
class SwallowSuspect:
    """A line inside a quoted CSV field that reads as a row: the record spans lines start..end,
    is row `row` (1-based), and its line `line` splits into `fields`."""

    start: int
    end: int
    row: int
    line: int
    fields: tuple[str, ...]


@dataclass(frozen=True)
class MetadataTable:
    """A metadata file's rows: `rows[i][j]` is row i's value for `columns[j]` (None if absent)."""

    path: Path
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    #: CSV only: lines inside a quoted field that read as rows (see `_swallow_suspects`).
    swallow_suspects: tuple[SwallowSuspect, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> dict[str, Any]:
        """Row `index` (0-based) as a dict of column -> value."""
        values = self.rows[index]
        return {name: values[j] if j < len(values) else None for j, name in enumerate(self.columns)}

    def column(self, name: str) -> Iterator[Any]:
        """The values of one column, row by row."""
        j = self.columns.index(name)
        return (values[j] if j < len(values) else None for values in self.rows)


def find_metadata(base_path: str | Path) -> Path:
    """The metadata file in `base_path`: metadata.csv, else metadata.jsonl, else metadata.json."""
    base = Path(base_path)
    if not base.is_dir():
        raise UserError(f"--dataset_base_path {base}: not a folder")
    for name in METADATA_NAMES:
        if (base / name).is_file():
            return base / name
    raise UserError(
        f"--dataset_base_path {base}: no {', '.join(METADATA_NAMES)} there; pass --dataset_metadata_path"
    )


def read_metadata(path: str | Path) -> MetadataTable:
    """Read a .csv (header row first), .json (a list of objects) or .jsonl (one object per line).

    Raises UserError (one line, naming the file and line/row) for anything malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: metadata file not found" + (" (it is a folder)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    readers = {".csv": _read_csv, ".json": _read_json, ".jsonl": _read_jsonl}
    if suffix not in readers:
        raise UserError(f"{path}: unknown metadata format '{suffix}'; expected .csv, .json or .jsonl")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: metadata file is empty")
    with _gc_paused():
        columns, rows, *suspects = readers[suffix](path)
    if not rows:
        raise UserError(f"{path}: metadata has no rows")
    return MetadataTable(path=path, columns=tuple(columns), rows=rows, swallow_suspects=suspects[0] if suspects else ())


@contextmanager
def _gc_paused() -> Iterator[None]:
    # A million new dicts/tuples trigger repeated full GC passes: ~40% of the load time.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- csv ---


def _read_csv(path: Path) -> tuple[list[str], list[tuple[str, ...]], tuple[SwallowSuspect, ...]]:
    # Streamed from the file: holding the whole text costs more memory than the rows.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise UserError(f"{path}: metadata file is empty")
            width = len(header)
            rows = [tuple(r) for r in reader if r]
        except UnicodeDecodeError:
            _decode(path)  # raises, naming the line (the streamed reader is past it)
            raise
        except csv.Error as e:
            raise UserError(f"{path} line {reader.line_num}: malformed CSV ({e})") from None
        lines = reader.line_num
    _check_header(path, header)
    if any(len(r) != width for r in rows):
        _raise_bad_width(path, width)
    # a record spans lines (or a line is blank): rare, so looked at apart
    suspects = _swallow_suspects(path, width) if lines > len(rows) + 1 else ()
    return header, rows, suspects


def _swallow_suspects(path: Path, width: int) -> tuple[SwallowSuspect, ...]:
    """Lines inside a multi-line quoted field that read as rows of their own. A quote opened and
    not closed on its line makes csv read the following lines into one field (fewer rows than
    lines, silently); a long prompt may span lines too, so the dataset decides (its file columns
    tell a swallowed row from a paragraph)."""
    found = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        end, row_number = 1, 0
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record:
                continue
            row_number += 1
            for field in record if end > start else ():
                for n, line in enumerate(field.split("\n")[1:], start + 1):
                    fields = next(csv.reader([line]), [])
                    if len(fields) == width:
                        found.append(SwallowSuspect(start, end, row_number, n, tuple(fields)))
    return tuple(found)


def _check_header(path: Path, header: list[str]) -> None:
    seen: set[str] = set()
    for name in header:
        if not name.strip():
            raise UserError(f"{path} line 1: empty column name in header {','.join(header)}")
        if name in seen:
            raise UserError(f"{path} line 1: column '{name}' appears twice in the header")
        seen.add(name)


def _raise_bad_width(path: Path, width: int) -> None:
    # Rare path: re-read to report the exact line (quoted fields may span lines).
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row_number, r in enumerate((r for r in reader if r), start=1):
            if len(r) != width:
                raise UserError(
                    f"{path} line {reader.line_num} (row {row_number}): {len(r)} fields, expected {width} like the header"
                )


# --- json / jsonl ---


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path} line {line}: not UTF-8 text ({e.reason})") from None


def _json_error(path: Path, e: json.JSONDecodeError, line_offset: int = 0) -> UserError:
    return UserError(f"{path} line {e.lineno + line_offset} column {e.colno}: invalid JSON ({e.msg})")


def _read_json(path: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    text = _decode(path)
    if not text.strip():
        raise UserError(f"{path}: metadata file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _json_error(path, e) from None
    del text
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of objects, got {_json_type(data)}")
    columns = _Columns()
    to_row = columns.to_row
    try:
        for i, obj in enumerate(data):
            # In place, so each dict is freed as its tuple is made: peak memory stays near one copy.
            data[i] = to_row(obj)
    except _NotAnObject as e:
        raise UserError(f"{path} item {i + 1}: expected a JSON object, got {e}") from None
    return columns.names, data


def _read_jsonl(path: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    # Streamed in chunks of lines: holding the whole text and its lines costs more than the rows.
    columns, rows = _Columns(), []
    with path.open(encoding="utf-8-sig") as f:
        first_line = 1
        try:
            while lines := [line.rstrip("\n") for line in itertools.islice(f, _JSONL_CHUNK)]:
                for n, value in _parse_jsonl_chunk(path, lines, first_line):
                    try:
                        rows.append(columns.to_row(value))
                    except _NotAnObject as e:
                        raise UserError(f"{path} line {n}: expected a JSON object, got {e}") from None
                first_line += len(lines)
        except UnicodeDecodeError:
            _decode(path)  # raises, naming the line (the streamed reader is past it)
            raise
    return columns.names, rows


def _parse_jsonl_chunk(path: Path, lines: list[str], first_line: int) -> Iterable[tuple[int, Any]]:
    """(line number, value) for each non-blank line; one json.loads call for the whole chunk."""
    try:
        values = json.loads("[" + ",".join(lines) + "]")
        if len(values) == len(lines):
            return enumerate(values, first_line)
    except json.JSONDecodeError:
        pass
    # Slow path (a blank line, or a line that is not exactly one JSON value): line by line.
    parsed = []
    for n, line in enumerate(lines, first_line):
        if line and not line.isspace():
            try:
                parsed.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise _json_error(path, e, line_offset=n - 1) from None
    return parsed


class _NotAnObject(Exception):
    """A metadata row that is not a JSON object; the message is its JSON type."""


class _Columns:
    """Column names in first-seen order; turns JSON objects into row tuples in that order."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._known: set[str] = set()

    def to_row(self, obj: Any) -> tuple[Any, ...]:
        if type(obj) is not dict:
            raise _NotAnObject(_json_type(obj))
        if not obj.keys() <= self._known:
            new = [k for k in obj if k not in self._known]
            self.names.extend(new)
            self._known.update(new)
        return tuple(map(obj.get, self.names))


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
