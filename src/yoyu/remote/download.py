"""A resumable download: Range from the end of the partial file, until the file is whole.

``yoyu pull`` of a 40 GB model must survive a dropped connection and a
Ctrl-C: the bytes land in a partial file whose length says where to resume,
each request asks for ``Range: bytes=<length>-``, and a dropped connection is
retried from wherever the file got to (the attempt count starts again once
bytes flow). A server that answers a resumed request with 200 (the whole
file) ignored Range: the partial file is started over from that body rather
than appended to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from yoyu.errors import RemoteModelError
from yoyu.remote.range_file import (
    DEFAULT_RETRIES,
    RETRY_PAUSE_S,
    RETRY_STATUSES,
    RetryableStatusError,
    check_content_range,
    describe_http_error,
)
from yoyu.units import format_bytes

Progress = Callable[[int], None]  # called with the bytes the partial file holds so far


@dataclass(frozen=True)
class Download:
    """What one download did: bytes received now, bytes the partial file already held,
    and whether the server made it start over (it ignored Range)."""

    received: int
    resumed_from: int
    restarted: bool


@dataclass
class _Tally:
    received: int = 0
    restarted: bool = False


@dataclass(frozen=True)
class Source:
    """Where the bytes are, how many there are, what messages call them."""

    url: str
    size: int
    name: str
    headers: Mapping[str, str]


def download(
    client: httpx.Client,
    source: Source,
    partial: Path,
    *,
    progress: Progress | None = None,
    retries: int = DEFAULT_RETRIES,
) -> Download:
    """Fill ``partial`` to ``source.size`` bytes, resuming from what it holds."""
    resumed_from, tally, attempt = _length(partial), _Tally(), 0
    while (have := _length(partial)) < source.size:
        before = tally.received
        try:
            _fetch_rest(client, source, partial, have, tally, progress)
        except (httpx.TransportError, RetryableStatusError) as error:
            attempt = 0 if tally.received > before else attempt + 1  # bytes flowed: a new start
            if attempt > retries:
                raise _stopped(source, partial, error) from None
            time.sleep(RETRY_PAUSE_S * max(attempt, 1))
    if _length(partial) > source.size:
        partial.unlink()
        raise RemoteModelError(
            f"{source.name}: the server sent more than the {source.size} bytes the Hub lists; "
            "the partial file was removed; run yoyu pull again"
        )
    return Download(tally.received, resumed_from, tally.restarted)


def _fetch_rest(
    client: httpx.Client,
    source: Source,
    partial: Path,
    have: int,
    tally: _Tally,
    progress: Progress | None,
) -> None:
    """One request for ``[have, size)``, appended to ``partial`` as it comes."""
    headers = {**source.headers, "Range": f"bytes={have}-", "Accept-Encoding": "identity"}
    with client.stream("GET", source.url, headers=headers) as response:
        restart = _check(response, source, have)
        tally.restarted = tally.restarted or restart
        with partial.open("r+b" if partial.exists() else "wb") as file:
            file.seek(0 if restart else have)
            file.truncate()
            for chunk in response.iter_bytes():  # as they come: a drop loses none held back
                file.write(chunk)
                tally.received += len(chunk)
                if progress is not None:
                    progress(file.tell())


def _check(response: httpx.Response, source: Source, have: int) -> bool:
    """True when the server sent the whole file (200) instead of the range asked for."""
    if response.status_code == 206:
        check_content_range(response, have, source.size, source.name)
        return False
    if response.status_code == 200:
        return have > 0
    if response.status_code in RETRY_STATUSES:
        raise RetryableStatusError(response.status_code)
    raise RemoteModelError(
        f"{source.name}: the server answered HTTP {response.status_code} to the download; "
        "check the reference, or whether the repo needs a login (hf auth login)"
    )


def _length(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _stopped(source: Source, partial: Path, error: Exception) -> RemoteModelError:
    return RemoteModelError(
        f"{source.name}: the download stopped at {format_bytes(_length(partial))} of "
        f"{format_bytes(source.size)} ({describe_http_error(error)}); the partial file "
        f"{partial} is kept: run yoyu pull again to resume from it"
    )
