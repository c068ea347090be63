"""A remote GGUF model -> ``ModelSpec``, from its header alone.

Locate every part (the Hub: a listing when a quant is asked for, one HEAD per
part; a URL: one HEAD per part), read each part's header through a
``RangeFile`` with the same parser as local files (``read_gguf_stream``),
merge the parts with the same checks (``merge_gguf_parts``), and describe the
model as a local file would be (``spec_from_gguf``): the plan of a remote file
is the plan of the same file on disk. Headers are cached by identity + etag.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from yoyu.errors import ModelFileError, RemoteModelError
from yoyu.models.gguf import GGUFFile, read_gguf_stream
from yoyu.models.gguf_spec import spec_from_gguf
from yoyu.models.gguf_split import merge_gguf_parts, split_part_names, split_stem
from yoyu.models.spec import ModelSpec
from yoyu.paths import cache_dir
from yoyu.remote.header_cache import CacheKey, HeaderCache
from yoyu.remote.hub import HubFile, hub_endpoint, hub_file, hub_gguf_paths, hub_headers
from yoyu.remote.range_file import (
    DEFAULT_LIMIT_BYTES,
    READ_CHUNK_BYTES,
    RangeFile,
    Transfer,
    describe_http_error,
)
from yoyu.remote.refs import HubRef, UrlRef, parse_remote_ref

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class RemoteGGUF:
    """One remote file to read: what to call it, where its bytes are, its size."""

    name: str  # hf://ORG/REPO/PATH or the URL: what messages and ModelSpec.paths say
    url: str
    size: int
    key: CacheKey | None  # None: no etag, not cached
    headers: Mapping[str, str] = field(default_factory=dict)
    hub: HubFile | None = None


@dataclass(frozen=True)
class RemoteModel:
    """A remote model's spec, its files, and what reading the headers cost."""

    spec: ModelSpec
    files: tuple[RemoteGGUF, ...]
    transfer: Transfer
    cached_files: int  # parts whose header came from the cache

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [{"name": item.name, "size_bytes": item.size} for item in self.files],
            "bytes_read": self.transfer.bytes_read,
            "requests": self.transfer.requests,
            "retries": self.transfer.retries,
            "cached_files": self.cached_files,
        }


def read_remote_model(
    ref: str, *, env: Mapping[str, str] | None = None, limit: int = DEFAULT_LIMIT_BYTES
) -> RemoteModel:
    """Read the header of the remote GGUF model ``ref`` (see ``yoyu.remote.refs``)."""
    environ = os.environ if env is None else env
    parsed = parse_remote_ref(ref, hub_endpoint(environ))
    cache = HeaderCache.under(cache_dir(environ))
    transfer = Transfer()
    with httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client:
        files = _locate(parsed, environ, client)
        parts, cached = [], 0
        for index, remote in enumerate(files):
            part, from_cache = read_part(client, remote, index, cache, limit, transfer)
            parts.append(part)
            cached += from_cache
    return RemoteModel(_spec(files, tuple(parts)), files, transfer, cached)


def _locate(
    ref: HubRef | UrlRef, env: Mapping[str, str], client: httpx.Client
) -> tuple[RemoteGGUF, ...]:
    return locate_hub(ref, env) if isinstance(ref, HubRef) else locate_url(ref, client)


def _spec(files: tuple[RemoteGGUF, ...], parts: tuple[GGUFFile, ...]) -> ModelSpec:
    first_name = posixpath.basename(urlsplit(files[0].name).path)
    split = split_part_names(first_name) is not None
    names = tuple(remote.name for remote in files)
    return spec_from_gguf(merge_gguf_parts(names, parts, split_stem(first_name), split=split))


def read_part(
    client: httpx.Client,
    remote: RemoteGGUF,
    index: int,
    cache: HeaderCache,
    limit: int,
    transfer: Transfer,
) -> tuple[GGUFFile, bool]:
    """One part's header, from the cache when it has it; what was fetched is cached."""
    cached = cache.load(remote.key) if remote.key else None
    stream = RangeFile(
        client, remote.url, remote.size, remote.name, remote.headers,
        limit=limit, prefix=cached or bytearray(), transfer=transfer,
    )  # fmt: skip
    try:
        part = read_gguf_stream(
            stream, remote.name, remote.size, index, chunk_bytes=READ_CHUNK_BYTES
        )
    except ModelFileError:
        if stream.limit_reached:
            raise stream.over_limit() from None
        raise
    if remote.key and len(stream.prefix) > len(cached or b""):
        cache.store(remote.key, bytes(stream.prefix))
    return part, cached is not None


# --- where the parts are ---------------------------------------------------------------


def locate_hub(ref: HubRef, env: Mapping[str, str]) -> tuple[RemoteGGUF, ...]:
    """Every part of the Hub model, all pinned to the commit the first one resolved to."""
    paths, commit = hub_gguf_paths(ref, env)
    revision = ref.revision or "main"
    first = hub_file(ref.repo_id, paths[0], revision, commit, env)
    rest = [hub_file(ref.repo_id, path, revision, first.commit, env) for path in paths[1:]]
    return tuple(_hub_remote(file, env) for file in (first, *rest))


def _hub_remote(file: HubFile, env: Mapping[str, str]) -> RemoteGGUF:
    key = CacheKey(file.display, file.etag, file.size)
    return RemoteGGUF(file.display, file.location, file.size, key, hub_headers(file, env), file)


def locate_url(ref: UrlRef, client: httpx.Client) -> tuple[RemoteGGUF, ...]:
    """The URL, and for a split model's part the URLs of the others (by name)."""
    parts = urlsplit(ref.url)
    folder, name = posixpath.split(parts.path)
    names = split_part_names(name, ref.url) or (name,)
    urls = [urlunsplit(parts._replace(path=posixpath.join(folder, part))) for part in names]
    return tuple(head_url(client, url) for url in urls)


def head_url(client: httpx.Client, url: str) -> RemoteGGUF:
    """One HEAD: the file's size, its etag (the cache key) and where redirects end."""
    try:
        response = client.head(url, headers={"Accept-Encoding": "identity"})
    except httpx.HTTPError as error:
        raise RemoteModelError(
            f"{url}: cannot reach the server ({describe_http_error(error)}); check the URL "
            "and the network"
        ) from None
    if response.status_code >= 400:
        raise RemoteModelError(
            f"{url}: the server answered HTTP {response.status_code}; check the URL"
        )
    size = response.headers.get("Content-Length")
    if size is None or not size.isdigit():
        raise RemoteModelError(f"{url}: the server does not say the file's size (Content-Length)")
    etag = response.headers.get("ETag")
    key = CacheKey(url, etag, int(size)) if etag else None
    return RemoteGGUF(url, str(response.url), int(size), key)
