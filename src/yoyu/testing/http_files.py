"""Real HTTP servers on 127.0.0.1 for the remote-model tests: files with Range, and a hub.

``FileServer`` serves files from disk as a web server or a CDN does: ``HEAD``
with ``Content-Length`` and ``ETag``, ``GET`` with one ``Range: bytes=A-B``
answered ``206`` (or, with ``ignore_range``, ``200`` and the whole body, as
some servers do). It counts the body bytes it sends and records every request,
and can drop the connection part-way through the next responses
(``drop_next``), to test retries and resumed downloads.

``LocalHub`` is a small Hugging Face Hub: what ``huggingface_hub`` asks of
``HF_ENDPOINT`` for a model repo, replayed from the Hub's documented protocol
(``huggingface_hub`` 2.4 ``file_download.get_hf_file_metadata`` and
``hf_api.model_info``):

- ``GET /api/models/ORG/REPO[/revision/REV]?blobs=true``: ``id``, ``sha`` (the
  commit) and ``siblings`` with ``rfilename``, ``size``, ``blobId`` and
  ``lfs {sha256, size, pointerSize}``;
- ``HEAD|GET /ORG/REPO/resolve/REV/PATH``: ``302`` to the file on a CDN (a
  ``FileServer`` on another port: huggingface_hub follows redirects only on the
  Hub's own host, and reads the metadata from the redirect itself) with
  ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256), ``X-Linked-Size`` and ``ETag``;
- errors with the Hub's ``X-Error-Code`` (``RepoNotFound``, ``GatedRepo``,
  ``RevisionNotFound``, ``EntryNotFound``), which huggingface_hub turns into its
  own exceptions.

Real GGUF files of real size are sparse here (``yoyu.testing.sparse_models``):
hashing 40 GB of holes takes minutes, so a file over ``HASH_LIMIT_BYTES`` gets
a stand-in sha256 (of its name and size) that no download could match; tests
download only small files.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

HASH_LIMIT_BYTES = 1 << 30
_CHUNK = 1 << 16
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None


@dataclass
class ServerLog:
    """What a server did: requests and body bytes sent (GET bodies only)."""

    requests: list[Request] = field(default_factory=list)
    bytes_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gets(self) -> list[Request]:
        return [request for request in self.requests if request.method == "GET"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (as yoyu does on a 200 to a Range request) is normal."""


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler], owner: Any) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), handler)
    server.owner = owner  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class FileServer:
    """Files by URL path (``/name.gguf`` -> a file on disk), with Range, ETags and faults."""

    def __init__(
        self, files: Mapping[str, Path], *, ignore_range: bool = False, etags: bool = True
    ) -> None:
        self.files = dict(files)
        self.ignore_range = ignore_range
        self.etags = etags
        self.log = ServerLog()
        self.drops: list[int] = []  # body bytes before hanging up, for the next GETs in turn
        self.base_url = ""

    @classmethod
    def of(cls, *paths: Path, ignore_range: bool = False, etags: bool = True) -> FileServer:
        """Each file at ``/<its name>``."""
        files = {f"/{path.name}": path for path in paths}
        return cls(files, ignore_range=ignore_range, etags=etags)

    @contextmanager
    def running(self) -> Iterator[FileServer]:
        with _serving(_FileHandler, self) as server:
            self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
            yield self

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name.lstrip('/')}"

    def drop_next(self, count: int, after_bytes: int) -> None:
        """Hang up after ``after_bytes`` of body on each of the next ``count`` GETs (after
        the drops already queued)."""
        with self.log.lock:
            self.drops += [after_bytes] * count

    def etag_of(self, path: Path) -> str:
        stat = path.stat()
        return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'

    def take_drop(self) -> int | None:
        with self.log.lock:
            return self.drops.pop(0) if self.drops else None


class _QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive, as CDNs and the Hub), no log lines: the owner keeps a log."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: what happened is in the owner's ``log``."""

    def do_HEAD(self) -> None:
        self.answer(send_body=False)

    def do_GET(self) -> None:
        self.answer(send_body=True)

    def answer(self, *, send_body: bool) -> None:
        raise NotImplementedError


class _FileHandler(_QuietHandler):
    @property
    def owner(self) -> FileServer:
        return self.server.owner  # type: ignore[attr-defined,no-any-return]

    def answer(self, *, send_body: bool) -> None:
        owner = self.owner
        name = unquote(urlsplit(self.path).path)
        ranged = self.headers.get("Range")
        with owner.log.lock:
            owner.log.requests.append(Request(self.command, name, ranged))
        path = owner.files.get(name)
        if path is None or not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        span = None if owner.ignore_range or ranged is None else _parse_range(ranged, size)
        if span is None and ranged is not None and not owner.ignore_range:
            self.send_error(416)
            return
        start, end = span or (0, size)
        self.send_response(206 if span else 200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "none" if owner.ignore_range else "bytes")
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        if owner.etags:
            self.send_header("ETag", owner.etag_of(path))
        self.end_headers()
        if send_body:
            self.send_body(path, start, end, owner.take_drop())

    def send_body(self, path: Path, start: int, end: int, drop_after: int | None) -> None:
        with path.open("rb") as file:
            file.seek(start)
            sent = 0
            while start + sent < end:
                want = min(_CHUNK, end - start - sent)
                if drop_after is not None:
                    want = min(want, drop_after - sent)
                if want <= 0:
                    self.close_connection = True
                    return
                data = file.read(want)
                try:
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True
                    return
                sent += len(data)
                with self.owner.log.lock:
                    self.owner.log.bytes_sent += len(data)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=A-B`` / ``bytes=A-`` -> ``(A, B + 1)`` clipped to the file, or None."""
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    start = int(match[1])
    end = int(match[2]) + 1 if match[2] else size
    if start >= size or end <= start:
        return None
    return start, min(end, size)


# --- the hub ---------------------------------------------------------------------------


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The file's sha256 (a stand-in for sparse files over ``HASH_LIMIT_BYTES``)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        if stat.st_size > HASH_LIMIT_BYTES:
            digest.update(f"stand-in {path.name} {stat.st_size}".encode())
        else:
            with path.open("rb") as file:
                while block := file.read(1 << 20):
                    digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


@dataclass(frozen=True)
class HubFileEntry:
    """One file of a hub repo: where it lies here and the sha256 the hub declares."""

    path: Path
    sha256: str


class LocalHub:
    """Model repos (``ORG/REPO`` -> {path in repo: file}) behind the Hub's HTTP API."""

    def __init__(
        self,
        repos: Mapping[str, Mapping[str, Path]],
        *,
        commit: str = "c0ffee" * 6 + "c0de",
        gated: frozenset[str] = frozenset(),
    ) -> None:
        self.commit = commit
        self.gated = gated  # repos that answer 401 GatedRepo (terms not accepted)
        self.repos = {
            repo: {name: HubFileEntry(path, file_sha256(path)) for name, path in files.items()}
            for repo, files in repos.items()
        }
        blobs = {
            f"/blobs/{entry.sha256}": entry.path
            for files in self.repos.values()
            for entry in files.values()
        }
        self.cdn = FileServer(blobs)
        self.log = ServerLog()
        self.endpoint = ""

    @contextmanager
    def running(self) -> Iterator[LocalHub]:
        with self.cdn.running(), _serving(_HubHandler, self) as server:
            self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
            yield self

    def sha256(self, repo: str, name: str) -> str:
        return self.repos[repo][name].sha256


class _HubHandler(_QuietHandler):
    @property
    def hub(self) -> LocalHub:
        return self.server.owner  # type: ignore[attr-defined,no-any-return]

    def answer(self, *, send_body: bool) -> None:
        """HEAD and GET route alike; bodies are written for GET only."""
        path = unquote(urlsplit(self.path).path)
        with self.hub.log.lock:
            self.hub.log.requests.append(Request(self.command, path, self.headers.get("Range")))
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if api:
            self.model_info(api[1], api[2])
        elif resolve:
            self.resolve(resolve[1], resolve[2], resolve[3])
        else:
            self.fail(404, "RepoNotFound")

    def known(self, repo: str, revision: str | None) -> bool:
        if repo not in self.hub.repos:
            self.fail(404, "RepoNotFound")
            return False
        if repo in self.hub.gated:
            self.fail(401, "GatedRepo")
            return False
        if revision not in (None, "main", self.hub.commit):
            self.fail(404, "RevisionNotFound")
            return False
        return True

    def model_info(self, repo: str, revision: str | None) -> None:
        if not self.known(repo, revision):
            return
        siblings = [_sibling(name, entry) for name, entry in self.hub.repos[repo].items()]
        body = json.dumps({"id": repo, "sha": self.hub.commit, "siblings": siblings}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def resolve(self, repo: str, revision: str, name: str) -> None:
        if not self.known(repo, revision):
            return
        entry = self.hub.repos[repo].get(name)
        if entry is None:
            self.fail(404, "EntryNotFound")
            return
        self.send_response(302)
        self.send_header("Location", self.hub.cdn.url(f"blobs/{entry.sha256}"))
        self.send_header("X-Repo-Commit", self.hub.commit)
        self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
        self.send_header("X-Linked-Size", str(entry.path.stat().st_size))
        self.send_header("ETag", f'"{_git_oid(entry)}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def fail(self, status: int, code: str) -> None:
        body = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Repo-Commit", self.hub.commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)


def _git_oid(entry: HubFileEntry) -> str:
    """A stand-in for the LFS pointer's git blob id (the Hub's plain ETag)."""
    return hashlib.sha1(entry.sha256.encode()).hexdigest()


def _sibling(name: str, entry: HubFileEntry) -> dict[str, Any]:
    size = entry.path.stat().st_size
    return {
        "rfilename": name,
        "size": size,
        "blobId": _git_oid(entry),
        "lfs": {"sha256": entry.sha256, "size": size, "pointerSize": 134},
    }
