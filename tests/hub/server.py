"""A tiny model hub on 127.0.0.1 that speaks the parts of the Hugging Face and ModelScope
protocols the real clients call (design.md §4), serving folders as repos.

    with HubServer() as hub:
        hub.add_repo("org/name", folder)
        env = hub.env(tmp_path)          # HF_ENDPOINT, MODELSCOPE_ENDPOINT, caches in tmp_path
        ...
        hub.file_fetches()               # [(protocol, repo, path)] of file-content GETs

Failures on demand: `hub.fail("org/name", 401)` answers every request for that repo with the
status; `hub.gate("org/name", token)` answers 401 unless the token is sent; `hub.cut("org/name",
"a/b.bin", after=100, times=1)` closes the connection after 100 bytes of that file.

Bounded: after `max_requests` requests every answer is 503, and the server shuts itself down
after `lifetime` seconds, so a client stuck in a retry loop cannot hang a test.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

REPO = r"(?P<repo>[^/]+/[^/]+)"
HF_REVISION = re.compile(rf"^/api/models/{REPO}/revision/(?P<rev>[^/]+)$")
HF_TREE = re.compile(rf"^/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<root>.*))?$")
HF_FILE = re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
MS_FILES = re.compile(rf"^/api/v1/models/{REPO}/repo/files$")
MS_FILE = re.compile(rf"^/api/v1/models/{REPO}/repo$")
MS_INFO = re.compile(rf"^/api/v1/models/{REPO}$")
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    range: str | None


@dataclass
class RepoFiles:
    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    commit: str = ""

    @classmethod
    def from_folder(cls, root: Path) -> RepoFiles:
        files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
        commit = hashlib.sha1("".join(f"{k}:{p.stat().st_size}" for k, p in files.items()).encode()).hexdigest()
        return cls(root, files, commit)

    def sha256(self, path: str) -> str:
        return hashlib.sha256(self.files[path].read_bytes()).hexdigest()

    def blob_id(self, path: str) -> str:
        data = self.files[path].read_bytes()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def dirs(self) -> list[str]:
        return sorted({"/".join(k.split("/")[:i]) for k in self.files for i in range(1, k.count("/") + 1)})


@dataclass
class Cut:
    after: int
    times: int
    release: threading.Event | None = None  # stall: hold the connection open until set


class HubServer:
    def __init__(self, max_requests: int = 2000, lifetime: float = 300.0) -> None:
        self.repos: dict[str, RepoFiles] = {}
        self.log: list[LoggedRequest] = []
        self.failures: dict[str, int] = {}
        self.gated: dict[str, str] = {}
        self.cuts: dict[tuple[str, str], Cut] = {}
        self.max_requests = max_requests
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._url = ""

    # -- setup -------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, folder: Path) -> None:
        self.repos[repo_id] = RepoFiles.from_folder(Path(folder))

    def fail(self, repo_id: str, status: int) -> None:
        self.failures[repo_id] = status

    def gate(self, repo_id: str, token: str) -> None:
        self.gated[repo_id] = token

    def cut(self, repo_id: str, path: str, after: int, times: int = 1) -> None:
        self.cuts[(repo_id, path)] = Cut(after, times)

    def stall(self, repo_id: str, path: str, after: int) -> Callable[[], None]:
        """Send `after` bytes of the file once, then hold the connection (at most 30 s) until the
        returned function is called: lets a test kill a client mid-download."""
        event = threading.Event()
        self.cuts[(repo_id, path)] = Cut(after, 1, event)
        return event.set

    @property
    def url(self) -> str:
        assert self._url, "server not started"
        return self._url

    def env(self, tmp: Path) -> dict[str, str]:
        """Client environment: both endpoints here, every client cache and HOME inside `tmp`."""
        return {
            "HF_ENDPOINT": self.url,
            "MODELSCOPE_ENDPOINT": self.url,
            "HOME": str(tmp / "home"),
            "XDG_CACHE_HOME": str(tmp / "home" / ".cache"),
            "HF_HOME": str(tmp / "hf_home"),
            "MODELSCOPE_CACHE": str(tmp / "ms_cache"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "HTTP_PROXY": "", "HTTPS_PROXY": "", "http_proxy": "", "https_proxy": "", "ALL_PROXY": "",
        }

    # -- what happened -----------------------------------------------------------------------
    def file_fetches(self) -> list[tuple[str, str, str]]:
        """(protocol, repo, path) for every GET of a file's content, in order."""
        out = []
        for r in self.log:
            if r.method != "GET":
                continue
            if m := HF_FILE.match(r.path):
                out.append(("huggingface", m["repo"], m["path"]))
            elif (m := MS_FILE.match(r.path)) and "FilePath" in r.query:
                out.append(("modelscope", m["repo"], r.query["FilePath"]))
        return out

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> HubServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self._url = f"http://{host}:{port}"
        serve = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        serve.start()
        timer = threading.Timer(self.lifetime, self.stop)
        timer.daemon = True
        timer.start()
        self._threads = [serve]
        self._timer = timer
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._timer.cancel()
        if threading.current_thread() is not self._threads[0]:
            httpd.shutdown()
        httpd.server_close()
        self._threads[0].join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - quiet: the hub keeps its own log
            pass

        def do_HEAD(self):  # noqa: N802
            self._route("HEAD")

        def do_GET(self):  # noqa: N802
            self._route("GET")

        def do_POST(self):  # noqa: N802
            self._route("POST")

        # -- replies -----------------------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, data, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(data).encode(), headers)

        def _error(self, status: int, protocol: str, message: str) -> None:
            if protocol == "huggingface":
                code = {401: "RepoNotFound", 403: "GatedRepo", 404: "RepoNotFound"}.get(status, "")
                headers = {"X-Error-Code": code, "X-Error-Message": message} if code else {}
                self._json(status, {"error": message}, headers)
            else:
                self._json(status, {"Code": status, "Message": message, "Success": False, "RequestId": "local"})

        # -- routing -----------------------------------------------------------------------
        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            with hub._lock:
                hub.log.append(LoggedRequest(method, path, query, self.headers.get("Range")))
                over = len(hub.log) > hub.max_requests
            if over:
                return self._json(503, {"error": "request budget of the test hub exhausted"})
            for pattern, protocol, handler in (
                (HF_REVISION, "huggingface", self._hf_revision),
                (HF_TREE, "huggingface", self._hf_tree),
                (HF_FILE, "huggingface", self._hf_file),
                (MS_FILES, "modelscope", self._ms_files),
                (MS_FILE, "modelscope", self._ms_file),
                (MS_INFO, "modelscope", self._ms_info),
            ):
                if m := pattern.match(path):
                    repo_id = m["repo"]
                    status = hub.failures.get(repo_id)
                    if repo_id not in hub.repos:
                        status = status or 404
                    elif repo_id in hub.gated and hub.gated[repo_id] not in (
                        self.headers.get("Authorization", "") + self.headers.get("Cookie", "")
                    ):
                        status = status or 401
                    if status:
                        return self._error(status, protocol, f"{repo_id}: HTTP {status}")
                    return handler(hub.repos[repo_id], m, query)
            self._json(404, {"error": f"not served by the test hub: {path}"})

        # -- Hugging Face ------------------------------------------------------------------
        def _hf_revision(self, repo: RepoFiles, m, query) -> None:
            self._json(200, {"id": m["repo"], "modelId": m["repo"], "sha": repo.commit, "private": False,
                             "siblings": [{"rfilename": k} for k in repo.files]})

        def _hf_tree(self, repo: RepoFiles, m, query) -> None:
            root = (m["root"] or "").strip("/")
            inside = lambda k: not root or k.startswith(root + "/")  # noqa: E731
            entries = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in repo.dirs() if inside(d)]
            for k, p in repo.files.items():
                if inside(k):
                    size = p.stat().st_size
                    entries.append({"type": "file", "oid": repo.blob_id(k), "size": size, "path": k,
                                    "lfs": {"oid": repo.sha256(k), "size": size, "pointerSize": 130}})
            self._json(200, entries)

        def _hf_file(self, repo: RepoFiles, m, query) -> None:
            path = m["path"]
            if path not in repo.files:
                return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{repo.sha256(path)}"',
                       "X-Linked-Size": str(repo.files[path].stat().st_size)}
            self._file(m["repo"], path, repo.files[path], headers)

        # -- ModelScope --------------------------------------------------------------------
        def _ms_files(self, repo: RepoFiles, m, query) -> None:
            root = (query.get("Root") or "").strip("/")
            inside = lambda k: not root or k.startswith(root + "/")  # noqa: E731
            files = [{"Name": d.rsplit("/", 1)[-1], "Path": d, "Type": "tree", "Size": 0} for d in repo.dirs() if inside(d)]
            files += [{"Name": k.rsplit("/", 1)[-1], "Path": k, "Type": "blob", "Size": p.stat().st_size,
                       "Sha256": repo.sha256(k), "Revision": repo.commit}
                      for k, p in repo.files.items() if inside(k)]
            if root and not files:
                return self._error(404, "modelscope", f"no such folder {root}")
            self._json(200, {"Code": 200, "Data": {"Files": files}, "Success": True})

        def _ms_file(self, repo: RepoFiles, m, query) -> None:
            path = query.get("FilePath", "")
            if path not in repo.files:
                return self._error(404, "modelscope", f"file not found: {path}")
            self._file(m["repo"], path, repo.files[path], {})

        def _ms_info(self, repo: RepoFiles, m, query) -> None:
            self._json(200, {"Code": 200, "Data": {"Path": m["repo"].split("/")[0], "Name": m["repo"].split("/")[1]},
                             "Success": True})

        # -- file bodies: Range and cut connections ----------------------------------------
        def _file(self, repo_id: str, path: str, file: Path, headers: dict[str, str]) -> None:
            data = file.read_bytes()
            start, status = 0, 200
            if (rng := self.headers.get("Range")) and (r := RANGE.match(rng.strip())):
                start = int(r[1])
                end = int(r[2]) if r[2] else len(data) - 1
                if start >= len(data):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start:end + 1], 206
            headers["Accept-Ranges"] = "bytes"
            cut = hub.cuts.get((repo_id, path)) if self.command == "GET" else None
            if cut is None or cut.times <= 0:
                return self._send(status, data, headers, "application/octet-stream")
            cut.times -= 1
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data[: max(0, cut.after - start)])
            self.wfile.flush()
            if cut.release is not None:
                cut.release.wait(timeout=30)
            self.close_connection = True
            self.connection.shutdown(2)

    return Handler
