"""Metadata tables: the same rows from csv/json/jsonl, and one-line errors for malformed files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diffsynth.data.metadata import find_metadata, read_metadata
from diffsynth.errors import UserError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


@pytest.mark.parametrize("folder", [EXAMPLES, EXAMPLES / "edit"])
def test_csv_json_jsonl_give_the_same_rows(folder: Path) -> None:
    tables = [read_metadata(folder / f"metadata.{ext}") for ext in ("csv", "json", "jsonl")]
    assert len({t.columns for t in tables}) == 1
    assert tables[0].rows == tables[1].rows == tables[2].rows
    assert len(tables[0]) >= 4
    assert tables[0].row(0)["image"].startswith("images/")


def test_csv_utf8_bom_and_quoted_newline(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_bytes('\ufeffimage,prompt\r\na.png,"two\nlines, é"\r\n\r\nb.png,x\r\n'.encode())
    t = read_metadata(p)
    assert t.columns == ("image", "prompt")
    assert t.rows == [("a.png", "two\nlines, é"), ("b.png", "x")]


def test_jsonl_columns_are_the_union_in_first_seen_order(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text('{"image": "a.png", "prompt": "x"}\n\n{"prompt": "y", "image": "b.png", "seed": 3}\n')
    t = read_metadata(p)
    assert t.columns == ("image", "prompt", "seed")
    assert t.row(0) == {"image": "a.png", "prompt": "x", "seed": None}
    assert t.row(1) == {"image": "b.png", "prompt": "y", "seed": 3}


def test_find_metadata_prefers_csv_then_jsonl_then_json(tmp_path: Path) -> None:
    for name in ("metadata.json", "metadata.jsonl", "metadata.csv"):
        (tmp_path / name).write_text("x")
        assert find_metadata(tmp_path).name == name
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"empty: no metadata.csv, metadata.jsonl, metadata.json there; pass --dataset_metadata_path$"):
        find_metadata(empty)


BAD = [
    ("m.csv", b"", r"m.csv: metadata file is empty$"),
    ("m.csv", b"image,prompt\n", r"m.csv: metadata has no rows$"),
    ("m.csv", b"image,prompt\na.png,x\nb.png,y,z\n", r"m.csv line 3 \(row 2\): 3 fields, expected 2 like the header$"),
    ("m.csv", b"image,image\na,b\n", r"m.csv line 1: column 'image' appears twice"),
    ("m.csv", b"image,prompt\na.png,caf\xe9\n", r"m.csv line 2: not UTF-8 text"),
    ("m.json", b"[]", r"m.json: metadata has no rows$"),
    ("m.json", b'[\n{"image": "a.png"},\n{"image": }\n]', r"m.json line 3 column 11: invalid JSON \(Expecting value\)$"),
    ("m.json", b'{"image": "a.png"}', r"m.json: expected a JSON list of objects, got an object$"),
    ("m.json", b'[{"image": "a.png"}, "b.png"]', r"m.json item 2: expected a JSON object, got a string$"),
    ("m.json", b'[{"p": "\xff"}]', r"m.json line 1: not UTF-8 text"),
    ("m.jsonl", b'{"image": "a.png"}\n\n{"image": "b.png",}\n', r"m.jsonl line 3 column 19: invalid JSON"),
    ("m.jsonl", b'{"image": "a.png"}\n[1, 2]\n', r"m.jsonl line 2: expected a JSON object, got a list$"),
    ("m.jsonl", b'{"image": "a.png"} {"image": "b.png"}\n', r"m.jsonl line 1 column 20: invalid JSON \(Extra data\)$"),
    ("m.jsonl", b"\n\n", r"m.jsonl: metadata has no rows$"),
    ("m.txt", b"x", r"m.txt: unknown metadata format '.txt'; expected .csv, .json or .jsonl$"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD, ids=[f"{n}:{m[:30]}" for n, _, m in BAD])
def test_malformed_metadata_is_a_one_line_user_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(UserError) as info:
        read_metadata(p)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(str(p))
    assert re.search(message, text), text


def test_missing_metadata_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope.csv: metadata file not found$"):
        read_metadata(tmp_path / "nope.csv")
