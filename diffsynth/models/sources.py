"""Where model files come from: the seed's `--model_paths` / `--model_id_with_origin_paths`.

- `--model_paths` is a JSON list; an item is a path or a list of shard paths.
- `--model_id_with_origin_paths "repo/id:glob,..."`: an entry that exists as a local path is a
  path; otherwise it is split at the last `:` and the glob is matched under
  `$DIFFSYNTH_MODEL_BASE_PATH/<repo/id>/` (default `./models`), downloading what is missing from
  ModelScope (default) or Hugging Face first, unless `DIFFSYNTH_SKIP_DOWNLOAD=True`
  (`diffsynth.models.download` says how complete files are recognised without re-fetching).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from diffsynth.errors import UserError

MODEL_BASE_ENV = "DIFFSYNTH_MODEL_BASE_PATH"
SKIP_DOWNLOAD_ENV = "DIFFSYNTH_SKIP_DOWNLOAD"
DOWNLOAD_SOURCE_ENV = "DIFFSYNTH_DOWNLOAD_SOURCE"
DOWNLOAD_SOURCES = ("modelscope", "huggingface")


@dataclass(frozen=True)
class ModelSource:
    """One checkpoint as the user named it: local shard paths, or a repo id + glob."""

    spec: str
    paths: tuple[Path, ...] = ()
    repo_id: str | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class DownloadSettings:
    base_path: Path
    skip: bool
    source: str

    @classmethod
    def offline(cls, base_path: Path) -> DownloadSettings:
        """Files under `base_path` only; never a network request (tests, `models init` trees)."""
        return cls(Path(base_path), skip=True, source="modelscope")

    @classmethod
    def from_env(cls, download_source: str | None = None) -> DownloadSettings:
        source = (download_source or os.environ.get(DOWNLOAD_SOURCE_ENV) or "modelscope").lower()
        if source not in DOWNLOAD_SOURCES:
            raise UserError(
                f"--download_source: expected one of {', '.join(DOWNLOAD_SOURCES)}, got {source!r}"
            )
        skip = os.environ.get(SKIP_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")
        return cls(Path(os.environ.get(MODEL_BASE_ENV) or "./models"), skip, source)


def parse_model_paths(text: str) -> list[ModelSource]:
    """`'["a.safetensors", ["b-1.safetensors", "b-2.safetensors"]]'` -> sources."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--model_paths: not valid JSON ({exc.msg} at char {exc.pos})") from exc
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        raise UserError("--model_paths: expected a JSON list of paths (or lists of shard paths)")
    sources = []
    for item in items:
        shards = item if isinstance(item, list) else [item]
        if not shards or not all(isinstance(s, str) for s in shards):
            raise UserError(f"--model_paths: each item must be a path or a list of paths, got {item!r}")
        paths = tuple(Path(s) for s in shards)
        for path in paths:
            if not path.is_file():
                raise UserError(f"--model_paths: file not found: {path}")
        sources.append(ModelSource(spec=json.dumps(item) if isinstance(item, list) else item, paths=paths))
    return sources


def parse_origin_path(entry: str) -> ModelSource:
    """One `repo/id:glob` entry (or an existing local path)."""
    entry = entry.strip()
    if Path(entry).exists():
        return ModelSource(spec=entry, paths=(Path(entry),))
    repo_id, sep, pattern = entry.rpartition(":")
    if not sep or not repo_id or not pattern:
        raise UserError(
            f"--model_id_with_origin_paths: {entry!r} is neither a local file nor repo/id:pattern"
        )
    return ModelSource(spec=entry, repo_id=repo_id, pattern=pattern)


def parse_origin_paths(text: str) -> list[ModelSource]:
    """`"repo/id:glob,repo/id:glob"` -> sources."""
    return [parse_origin_path(e) for e in text.split(",") if e.strip()]


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt", ".ckpt")


def _match(settings: DownloadSettings, source: ModelSource) -> list[Path]:
    """Files of the source under the base path. A pattern ending in `/` names a folder (the
    seed's `repo:text_encoder_2/`) and means the weight files in it."""
    root = settings.base_path / source.repo_id
    if not root.is_dir():
        return []
    if source.pattern.endswith("/"):
        folder = root / source.pattern
        files = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        safetensors = [p for p in files if p.suffix == ".safetensors"]
        return safetensors or files  # a folder holding both formats means one model, twice
    return sorted(p for p in root.glob(source.pattern) if p.is_file())


def download(settings: DownloadSettings, repo_id: str, pattern: str) -> list[Path]:
    """Fetch what is missing of `repo_id`'s files matching `pattern` into `<base>/<repo_id>/`
    with the real hub client (see `diffsynth.models.download`); returns the local files."""
    from diffsynth.models.download import download_pattern, ensure_downloaded

    return ensure_downloaded(settings.base_path, settings.source, repo_id, download_pattern(pattern))


def resolve_files(source: ModelSource, settings: DownloadSettings) -> tuple[Path, ...]:
    """The local files of a source, downloading what is missing first unless downloads are off."""
    if source.paths:
        return source.paths
    if not settings.skip:
        download(settings, source.repo_id, source.pattern)
    files = _match(settings, source)
    if not files:
        if settings.skip:
            raise UserError(
                f"{source.spec}: no file matches {settings.base_path / source.repo_id / source.pattern}"
                f" and downloads are disabled ({SKIP_DOWNLOAD_ENV}=True)"
            )
        raise UserError(f"{source.spec}: the {settings.source} repo has no weight file matching {source.pattern}")
    return tuple(files)


#: Files a tokenizer or processor folder holds at least one of (transformers' names).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "merges.txt", "spiece.model",
    "tokenizer.model", "special_tokens_map.json", "preprocessor_config.json", "processor_config.json",
)


def check_tokenizer_folder(folder: Path, flag: str) -> Path:
    """A folder that holds no tokenizer file loads as an empty tokenizer in transformers, and the
    run then fails deep in the model with a traceback: refuse it here, naming the flag."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"{flag}: {folder} holds no tokenizer or processor files (expected {', '.join(TOKENIZER_FILES[:4])} or the like)"
        )
    return folder


def resolve_folder(spec: str, settings: DownloadSettings, flag: str) -> Path:
    """A tokenizer/processor folder: a local directory, or `repo/id:folder/` under the base path."""
    if Path(spec).is_dir():
        return check_tokenizer_folder(Path(spec), flag)
    repo_id, sep, sub = spec.rpartition(":")
    if not sep or not repo_id:
        raise UserError(f"{flag}: {spec!r} is neither a folder nor repo/id:folder/")
    folder = settings.base_path / repo_id / sub.rstrip("/")
    if not settings.skip:
        download(settings, repo_id, sub.rstrip("/") + "/")
    elif not (folder.is_dir() and any(folder.iterdir())):
        raise UserError(f"{flag}: folder {folder} not found and downloads are disabled ({SKIP_DOWNLOAD_ENV}=True)")
    return check_tokenizer_folder(folder, flag)
