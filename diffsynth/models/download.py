"""Fetch `repo/id:pattern` sources from ModelScope or Hugging Face with their real clients.

Files land at `<base>/<repo id>/<path in repo>`. What makes later runs cheap:

- After a pattern's files are all present, `<base>/<repo id>/.cache/diffsynth/downloads.json`
  records them (path -> size). Next time, a pattern whose recorded files are all there with
  those sizes costs no request and no hashing (modelscope re-hashes every present file with
  SHA-256 when it is called, so not calling it is what saves the time).
- Otherwise the repo's file list is read once (one metadata request) and only the files that
  are missing or of the wrong size are fetched, one `snapshot_download` call per file with
  that file's exact path as the only allow-pattern (modelscope splits a pattern string on
  commas, so never more than one). A partly present shard set fetches only the missing shards.
- An interrupted file resumes where the client can: modelscope keeps `<file>.incomplete` and
  continues it with an HTTP Range request, within a run and across runs; huggingface_hub (2.x)
  retries with Range inside one run but deletes its partial file when the run fails.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from pathlib import Path
from typing import Callable

from diffsynth.errors import UserError

MARKER = Path(".cache") / "diffsynth" / "downloads.json"
MODELSCOPE_DEFAULT_ENDPOINT = "https://www.modelscope.cn"


def download_pattern(pattern: str) -> str:
    """`dir/` matches nothing in modelscope 1.40; `dir/*` does."""
    return f"{pattern}*" if pattern.endswith("/") else pattern


def exact_pattern(path: str) -> str:
    """A glob that matches exactly `path` in both clients (fnmatch), and holds no comma."""
    escaped = "".join(f"[{c}]" if c in "*?[" else c for c in path)
    return escaped.replace(",", "?")  # modelscope would split the pattern at a comma


def endpoint(source: str) -> str:
    if source == "huggingface":
        from huggingface_hub import constants

        return constants.ENDPOINT
    return os.environ.get("MODELSCOPE_ENDPOINT") or MODELSCOPE_DEFAULT_ENDPOINT


# -- the completion marker -------------------------------------------------------------------
def _read_marker(local_dir: Path) -> dict[str, dict[str, int]]:
    try:
        data = json.loads((local_dir / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_marker(local_dir: Path, pattern: str, files: dict[str, int]) -> None:
    marker = local_dir / MARKER
    data = _read_marker(local_dir)
    data[pattern] = files
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(marker)  # atomic: a concurrent reader sees the old or the new marker


def _present(local_dir: Path, path: str, size: int | None) -> bool:
    file = local_dir / path
    return file.is_file() and (size is None or file.stat().st_size == size)


def recorded_complete(local_dir: Path, pattern: str) -> list[Path] | None:
    """The files a finished download of `pattern` left, if they are all still there."""
    files = _read_marker(local_dir).get(pattern)
    if not isinstance(files, dict) or not files:
        return None
    if all(_present(local_dir, p, s) for p, s in files.items()):
        return [local_dir / p for p in sorted(files)]
    return None


# -- the two clients ---------------------------------------------------------------------------
def _list_huggingface(repo_id: str) -> dict[str, int | None]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    return {f.path: f.size for f in HfApi().list_repo_tree(repo_id, recursive=True) if isinstance(f, RepoFile)}


def _list_modelscope(repo_id: str) -> dict[str, int | None]:
    from modelscope_hub.api import (
        HubApi,  # what modelscope 1.40's own HubApi delegates to
    )

    return {f.path: f.size for f in HubApi().list_repo_files(repo_id, "model") if not f.is_dir}


def _fetch_huggingface(repo_id: str, pattern: str, local_dir: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id, allow_patterns=[pattern], local_dir=str(local_dir))


def _fetch_modelscope(repo_id: str, pattern: str, local_dir: Path) -> None:
    from modelscope import snapshot_download

    snapshot_download(repo_id, allow_patterns=pattern, local_dir=str(local_dir))


LISTERS: dict[str, Callable[[str], dict[str, int | None]]] = {
    "huggingface": _list_huggingface,
    "modelscope": _list_modelscope,
}
FETCHERS: dict[str, Callable[[str, str, Path], None]] = {
    "huggingface": _fetch_huggingface,
    "modelscope": _fetch_modelscope,
}


def _status(exc: BaseException) -> int | None:
    for e in (exc, exc.__cause__, exc.__context__):
        if e is None:
            continue
        response = getattr(e, "response", None)
        code = getattr(response, "status_code", None) or getattr(e, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def _is_unreachable(exc: BaseException) -> bool:
    names = {c.__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None for c in type(e).__mro__}
    return bool(names & {"ConnectError", "ConnectionError", "TimeoutException", "Timeout", "NetworkError"})


def hub_error(exc: BaseException, source: str, repo_id: str, what: str) -> UserError:
    """One line saying what went wrong with a hub request, and what to do about it."""
    where = f"{source} ({endpoint(source)})"
    status = _status(exc)
    if status in (401, 403):
        if source == "huggingface":
            hint = "the repo may be gated or private: accept its terms on huggingface.co and set HF_TOKEN"
        else:
            hint = "the repo may be private: request access and set MODELSCOPE_API_TOKEN"
        return UserError(f"{repo_id}: {where} denied access (HTTP {status}) while {what}; {hint}")
    if status == 404:
        return UserError(f"{repo_id}: no such repo on {where} (HTTP 404) while {what}")
    if _is_unreachable(exc):
        return UserError(f"{repo_id}: cannot reach {where} while {what}; check the network or set {SKIP_HINT}")
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return UserError(f"{repo_id}: {what} from {where} failed: {detail[:300]}")


SKIP_HINT = "DIFFSYNTH_SKIP_DOWNLOAD=True to use local files only"


# -- the one entry point -----------------------------------------------------------------------
def ensure_downloaded(base_path: Path, source: str, repo_id: str, pattern: str) -> list[Path]:
    """Make every file of `repo_id` matching the glob `pattern` present under
    `<base_path>/<repo_id>/` (plus the `.json` files beside matched weights), fetching only what
    is missing. Returns the local files (sorted).

    Raises UserError (one line) when the repo does not exist, access is denied, the hub cannot be
    reached, or no file in the repo matches `pattern` (naming a few files that do exist)."""
    local_dir = base_path / repo_id
    done = recorded_complete(local_dir, pattern)
    if done is not None:
        return done
    try:
        listing = LISTERS[source](repo_id)
    except Exception as exc:  # noqa: BLE001 - client errors vary; the user needs one line
        error = hub_error(exc, source, repo_id, "listing its files")
        local = sorted(p for p in local_dir.glob(pattern) if p.is_file()) if local_dir.is_dir() else []
        if local and _is_unreachable(exc):
            sys.stderr.write(f"warning: {error}; using the {len(local)} local file(s) matching {pattern}\n")
            return local
        raise error from exc
    matched = {p: s for p, s in sorted(listing.items()) if fnmatch.fnmatchcase(p, pattern)}
    if not matched:
        examples = ", ".join(sorted(listing)[:5]) or "none"
        raise UserError(
            f"{repo_id}: no file in the {source} repo matches {pattern!r}; "
            f"it has {len(listing)} file(s), e.g. {examples}"
        )
    matched.update(_configs_beside_weights(listing, matched))
    missing = [p for p, s in matched.items() if not _present(local_dir, p, s)]
    for path in missing:
        size = matched[path]
        sys.stderr.write(f"fetching {repo_id}/{path}" + (f" ({format_size(size)})" if size else "") + "\n")
        try:
            FETCHERS[source](repo_id, exact_pattern(path), local_dir)
        except Exception as exc:  # noqa: BLE001
            raise hub_error(exc, source, repo_id, f"downloading {path}") from exc
    absent = [p for p, s in matched.items() if not _present(local_dir, p, s)]
    if absent:
        raise UserError(
            f"{repo_id}: {source} download finished but {absent[0]} is missing or has the wrong size"
            f" ({len(absent)} file(s) affected); run again to resume"
        )
    _write_marker(local_dir, pattern, matched)
    return [local_dir / p for p in sorted(matched)]


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt", ".ckpt")


def _configs_beside_weights(listing: dict[str, int | None], matched: dict[str, int | None]) -> dict[str, int | None]:
    """The `.json` files in the folders of matched weight files: loaders read `config.json` (and
    shard indexes) next to the weights, so a weight source brings them along."""
    folders = {p.rpartition("/")[0] for p in matched if p.endswith(WEIGHT_SUFFIXES)}
    return {p: s for p, s in listing.items() if p.endswith(".json") and p.rpartition("/")[0] in folders}


def format_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover
