"""The encoder cache on disk, and the keys of its entries.

```
CACHE/
  cache.json                      what built it: family, encoders (refused when they differ)
  index.json                      rows -> entry keys, for training from the folder alone;
                                  rebuilt from the entries' headers when missing
  entries/ab/abcdef....safetensors one sample's TrainingInputs (diffsynth.cache.codec), written
                                  atomically; the name is the entry's key
```

An entry's key hashes everything that determines it: the build identity (family, its
`preprocess_version`, the encoder checkpoints and tokenizer files, the compute dtype, the extra
inputs and family options) and the row (each file's content hash, the row's text fields, the
sizing flags that give the resolved height/width and frame count). A changed image or prompt
gets a new key and is encoded again; an entry is never used for anything else than what made it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffsynth.cache.codec import CacheFormatError, read_info
from diffsynth.errors import UserError

MANIFEST, INDEX, ENTRIES = "cache.json", "index.json", "entries"
FORMAT = 1
_EDGE = 1 << 20  # bytes of each end of a checkpoint shard hashed into the encoder identity


def _digest(data: bytes | str) -> str:
    return hashlib.blake2b(data.encode() if isinstance(data, str) else data, digest_size=16).hexdigest()


def _json_digest(value: Any) -> str:
    return _digest(json.dumps(value, sort_keys=True, default=str))


def file_digest(path: Path) -> str:
    """Content hash of a file (streamed)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_digest(path: Path) -> str:
    """A checkpoint shard's identity without reading it all: size, and the first and last MiB
    (a safetensors header, i.e. every key, shape and offset, and the first and last weights)."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(_EDGE))
        if size > _EDGE:
            f.seek(max(_EDGE, size - _EDGE))
            h.update(f.read(_EDGE))
    return h.hexdigest()


def folder_digest(folder: Path | None) -> str | None:
    if folder is None:
        return None
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return _json_digest([(str(p.relative_to(folder)), file_digest(p)) for p in files])


def encoder_identity(models) -> dict[str, Any]:
    """Per encoder component (of a `ModelFiles` holding the encoders alone) its shards' digests,
    plus the tokenizer and processor folders."""
    ident: dict[str, Any] = {
        name: [[p.name, checkpoint_digest(p)] for p in group.files] for name, group in sorted(models.components.items())
    }
    ident["tokenizer"] = folder_digest(models.tokenizer_path)
    ident["processor"] = folder_digest(models.processor_path)
    return ident


def _paths(value: Any) -> str | list[str]:
    return [str(v) for v in value] if isinstance(value, list) else str(value)


@dataclass(frozen=True)
class RowKeys:
    """How rows are keyed in one build (see the module docstring)."""

    build: str  # digest of the build identity
    sizing: dict[str, Any]
    file_keys: tuple[str, ...]
    base_path: Path
    _files: dict[Path, str] = field(default_factory=dict, compare=False)

    def source(self, row: dict[str, Any]) -> dict[str, Any]:
        """What the row is, for the index and messages: its files and text fields."""
        return {
            "files": {k: _paths(row[k]) for k in self.file_keys if row.get(k) not in (None, "")},
            "fields": {k: v for k, v in row.items() if k not in self.file_keys},
        }

    def digest(self, name: str) -> str:
        path = self.base_path / name
        if path not in self._files:
            self._files[path] = file_digest(path)
        return self._files[path]

    def key(self, row: dict[str, Any]) -> str:
        files: dict[str, Any] = {}
        for k in self.file_keys:
            paths = _paths(row[k])  # a list-valued column (several images) is keyed by each file, in order
            files[k] = [self.digest(p) for p in paths] if isinstance(paths, list) else self.digest(paths)
        text = {k: v for k, v in row.items() if k not in self.file_keys}
        return _json_digest({"build": self.build, "files": files, "fields": text, "sizing": self.sizing})


class CacheStore:
    """One cache folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def entries(self) -> Path:
        return self.root / ENTRIES

    def entry_path(self, key: str) -> Path:
        return self.entries / key[:2] / f"{key}.safetensors"

    def has(self, key: str) -> bool:
        return self.entry_path(key).is_file()

    # -- the manifest: who built it ---------------------------------------------------------

    def manifest(self) -> dict[str, Any] | None:
        path = self.root / MANIFEST
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            raise UserError(f"encoder cache {self.root}: {MANIFEST} is unreadable; delete the folder and rebuild") from None

    def claim(self, family: str, encoders: dict[str, Any], flag: str, write: bool) -> None:
        """Refuse a folder built by another family or with other encoders; write the manifest
        into a new one (`write`: on the main process only)."""
        found = self.manifest()
        if found is None:
            if self.root.is_dir() and any(not p.name.startswith(".") and p.name not in (ENTRIES, INDEX) for p in self.root.iterdir()) and not self.entries.is_dir():
                raise UserError(f"{flag} {self.root}: a folder with other files, not an encoder cache; give an empty or new folder")
            if write:
                self.root.mkdir(parents=True, exist_ok=True)
                _write_json(self.root / MANIFEST, {"format": FORMAT, "family": family, "encoders": encoders})
            return
        self.check_family(found, family, flag)
        if found.get("encoders") != encoders:
            differ = sorted(k for k in {*encoders, *found.get("encoders", {})} if encoders.get(k) != found.get("encoders", {}).get(k))
            raise UserError(
                f"{flag} {self.root}: built with other encoder files ({', '.join(differ)} differ); "
                "give another folder or delete this one"
            )

    def check_family(self, found: dict[str, Any] | None, family: str, flag: str) -> None:
        if found is None:
            raise UserError(f"{flag} {self.root}: not an encoder cache (no {MANIFEST}); build one with --task sft:data_process")
        if found.get("format") != FORMAT:
            raise UserError(f"{flag} {self.root}: cache format {found.get('format')}, expected {FORMAT}; rebuild it")
        if found.get("family") != family:
            raise UserError(f"{flag} {self.root}: built for family {found.get('family')}, not {family}; give another folder")

    # -- the index: rows -> entries ---------------------------------------------------------

    def write_index(self, family: str, rows: list[dict[str, Any]]) -> None:
        _write_json(self.root / INDEX, {"format": FORMAT, "family": family, "rows": rows})

    def read_index(self) -> list[dict[str, Any]]:
        """The rows of the last build, or (no index.json) every entry, rebuilt from the entries'
        headers in row order."""
        path = self.root / INDEX
        if path.is_file():
            try:
                return json.loads(path.read_text())["rows"]
            except (OSError, ValueError, KeyError):
                pass
        return self.rebuild_index()

    def rebuild_index(self) -> list[dict[str, Any]]:
        rows = []
        for entry in sorted(self.entries.glob("*/*.safetensors")):
            try:
                info = read_info(entry)
            except CacheFormatError:
                continue
            rows.append({"row": info.get("row", 0), "key": entry.stem, **info.get("source", {})})
        rows.sort(key=lambda r: (r["row"], r["key"]))
        return rows

    def clean_partial(self) -> None:
        """Remove the temporary files an interrupted build left."""
        for tmp in self.entries.glob("*/.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
