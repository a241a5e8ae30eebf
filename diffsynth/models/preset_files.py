"""Helpers for a family's `init_model`, which writes a tiny preset in a real repo's layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: Path, data: dict[str, Any]) -> None:
    """`data` as an indented JSON file (a config, an index, a tokenizer's settings), folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
