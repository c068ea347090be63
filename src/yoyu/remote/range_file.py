"""A remote file as a stream the GGUF reader can read: HTTP Range requests, on demand.

The reader (``yoyu.models.gguf``) seeks and reads its way through the header
from byte 0, 1 MiB at a time, and stops at the tensor data. ``RangeFile``
answers those reads from one growing prefix of the file: a read that reaches
past what was fetched asks the server for the missing bytes (at least one
read-ahead window) with ``Range: bytes=A-B``, so the bytes fetched are the
header plus less than one window (64 KiB at first, doubling to 1 MiB: a
shard's few-KiB header costs one small request, a 7 MiB one about ten), and the
prefix itself is what the header cache stores.

Three things a remote file can do that a local one cannot, each with a clear
error or a remedy:

- **The server ignores Range** and answers 200 with the whole body: the
  response is closed before its body is read, and ``RemoteModelError`` says so
  (reading on would download the model to plan it).
- **The header claims more than the bound** (``limit``, 64 MiB by default; real
  headers are 2-10 MiB): no byte past the bound is ever fetched. A read that
  starts past it raises at once; one that straddles it is cut short there,
  which the reader reports as a short read and ``limit_reached`` explains.
- **The connection drops** mid-body: the bytes received are kept and the rest
  is asked for again, up to ``retries`` times (also for 429 and 5xx answers).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from yoyu.errors import RemoteModelError
from yoyu.units import KIB, MIB, format_bytes

DEFAULT_LIMIT_BYTES = 64 * MIB
FIRST_WINDOW_BYTES = 64 * KIB  # a shard's header is a few KiB; the first's, 2-10 MiB
MAX_WINDOW_BYTES = 1 * MIB  # each request asks for twice the last, up to this
READ_CHUNK_BYTES = 64 * KIB  # what the GGUF reader asks for at a time (read-ahead is ours)
DEFAULT_RETRIES = 4
RETRY_PAUSE_S = 0.25  # grows linearly with the attempt number
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes (?P<first>\d+)-(?P<last>\d+)/(?P<total>\d+|\*)")


@dataclass
class Transfer:
    """What a remote file cost: body bytes received (retried ones included) and requests."""

    bytes_read: int = 0
    requests: int = 0
    retries: int = 0


@dataclass
class RangeFile:
    """A read-only, seekable view of the first bytes of ``url`` (``size`` bytes in all).

    ``prefix`` starts with bytes already known (from the header cache): reads
    inside it cost no request.
    """

    client: httpx.Client
    url: str
    size: int
    name: str  # how messages name the file (the hf:// reference or the URL)
    headers: Mapping[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT_BYTES
    window: int = FIRST_WINDOW_BYTES  # the next request's read-ahead; doubles up to the max
    max_window: int = MAX_WINDOW_BYTES
    retries: int = DEFAULT_RETRIES
    prefix: bytearray = field(default_factory=bytearray)
    transfer: Transfer = field(default_factory=Transfer)
    pos: int = 0
    limit_reached: bool = False

    # -- the stream the GGUF reader sees ---------------------------------------------

    def seek(self, offset: int, whence: int = 0, /) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1, /) -> bytes:
        """Bytes from ``pos``: up to ``size``, fewer at the end of the file or the bound."""
        wanted_end = self.size if size < 0 else min(self.pos + size, self.size)
        if self.pos >= wanted_end:
            return b""
        if self.pos >= self.limit:
            raise self.over_limit()
        end = min(wanted_end, self.limit)
        self.limit_reached = end < wanted_end
        self.fill(end)
        data = bytes(self.prefix[self.pos : end])
        self.pos += len(data)
        return data

    # -- fetching ---------------------------------------------------------------------

    def fill(self, end: int) -> None:
        """Make ``prefix`` reach ``end``, fetching at least one window past what it holds."""
        have = len(self.prefix)
        if end <= have:
            return
        fetch_end = min(max(end, have + self.window), self.size, self.limit)
        self.fetch(fetch_end)
        self.window = min(self.window * 2, self.max_window)

    def fetch(self, end: int) -> None:
        """Extend the prefix to ``end``, resuming from its length after dropped connections."""
        attempt = 0
        while len(self.prefix) < end:
            try:
                self.fetch_once(len(self.prefix), end)
            except (httpx.TransportError, RetryableStatusError) as error:
                attempt += 1
                if attempt > self.retries:
                    raise self.gave_up(error) from None
                self.transfer.retries += 1
                time.sleep(RETRY_PAUSE_S * attempt)

    def fetch_once(self, start: int, end: int) -> None:
        headers = {**self.headers, "Range": f"bytes={start}-{end - 1}"}
        headers["Accept-Encoding"] = "identity"  # the range is of the file's bytes, not gzip's
        self.transfer.requests += 1
        with self.client.stream("GET", self.url, headers=headers) as response:
            self.check_status(response, start)
            for chunk in response.iter_bytes():
                room = end - len(self.prefix)
                self.prefix += chunk[:room]
                self.transfer.bytes_read += len(chunk)
                if len(chunk) >= room:
                    return
        if len(self.prefix) < end:  # the body ended early without an error from the transport
            raise httpx.RemoteProtocolError("the response ended before the range did")

    def check_status(self, response: httpx.Response, start: int) -> None:
        if response.status_code == 206:
            check_content_range(response, start, self.size, self.name)
            return
        if response.status_code == 200:
            raise RemoteModelError(
                f"{self.name}: the server ignored the Range request and began sending the whole "
                f"{format_bytes(self.size)} file; yoyu stopped reading (it plans from the header "
                "alone); download the file and give yoyu its path, or use a server that "
                "honours Range"
            )
        if response.status_code in RETRY_STATUSES:
            raise RetryableStatusError(response.status_code)
        raise RemoteModelError(
            f"{self.name}: the server answered HTTP {response.status_code} to a Range request "
            f"for bytes {start}-; check the URL, or whether the file needs a login"
        )

    # -- errors -----------------------------------------------------------------------

    def over_limit(self) -> RemoteModelError:
        return RemoteModelError(
            f"{self.name}: the GGUF header reaches past {format_bytes(self.limit)}, the most "
            "yoyu reads before a download (real headers are under 16 MiB); the file is corrupt "
            "or not what it claims; download it and plan the local file if you trust it"
        )

    def gave_up(self, error: Exception) -> RemoteModelError:
        return RemoteModelError(
            f"{self.name}: reading the header failed after {self.retries + 1} attempts "
            f"({describe_http_error(error)}); check the network and try again"
        )


class RetryableStatusError(Exception):
    """A 429 or 5xx answer: worth asking again after a pause."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")


def check_content_range(response: httpx.Response, start: int, size: int, name: str) -> None:
    """A 206 must be the range asked for, of a file of the size the server first said."""
    content_range = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.fullmatch(content_range.strip())
    if match is None or int(match["first"]) != start or match["total"] not in (str(size), "*"):
        raise RemoteModelError(
            f"{name}: the server sent Content-Range {content_range!r} for a request from byte "
            f"{start} of a {size}-byte file; the file changed on the server, try again"
        )


def describe_http_error(error: Exception) -> str:
    """One line for a transport error: its class and message (httpx's can be empty)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
