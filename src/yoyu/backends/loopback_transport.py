"""A lean HTTP/1.1 transport for engines on this machine, under the shared httpx client.

Every request the gateway relays to a local engine pays for the HTTP client
in the gateway's own CPU time, on the cores the engine needs too. httpx's
default transport (httpcore) is a good part of a loopback call's cost; the
standard library's ``http.client`` on a kept-alive connection does the same
exchange with less. Under httpx.Client it cut the client's CPU per call from
0.73 to 0.56 ms and raised the gateway's throughput at 16 clients by half
(456 -> 663 req/s whole, 309 -> 494 streamed; ``benchmarks/gateway_overhead.py``
on 2 cores). The request building, the error mapping and the SSE reading in
``openai_http`` stay one piece of code; only the bytes-on-the-wire part changes.

Only for ``http://`` to loopback: no TLS, no proxies, no HTTP/2 — exactly
what an engine on 127.0.0.1 needs and nothing a remote API would.
``OpenAIHttpClient`` picks it by the base URL.

Connections are kept alive in a small pool. One that the engine closed while
idle is noticed before reuse (its socket reads as ready: EOF) and replaced,
as httpcore does, so a request is never sent down a dead connection. Socket
errors become the httpx exceptions ``map_http_errors`` already translates.

A request may carry a ``Cancellation`` in its ``yoyu.cancel`` extension: on
cancel its socket is shut down from the cancelling thread, which ends a read
blocked in another at once, and the engine sees its client gone.

``LoopbackTransport.open`` is the same exchange without httpx's Client,
Request and Response around it (``OpenAIHttpClient`` uses it for every call
to loopback): building those objects, merging URLs and normalizing headers
cost more than the exchange itself. Measured in the gateway's relay at 16
clients on 2 cores (``benchmarks/gateway_overhead.py``): ... (see the README).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from yoyu.backends.cancellation import Cancellation

_IDLE_CONNECTIONS = 32  # kept for reuse; more may be open while busy
_READ_SIZE = 64 * 1024
_SOCKET_ERRORS = (OSError, http.client.HTTPException)
# What a kept-alive connection the engine has just closed gives on reuse: a reset
# or broken pipe while sending, or no status line at all (RemoteDisconnected).
_CLOSED_AS_SENT = (ConnectionResetError, BrokenPipeError)
# Framing headers are written from the body actually sent, never copied.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})
CANCEL_EXTENSION = "yoyu.cancel"


@dataclass(frozen=True)
class Outgoing:
    """One request as it goes on the wire: the framing headers are added when sent."""

    method: str
    host: str
    port: int
    target: str  # the path and query, as sent in the request line
    headers: Sequence[tuple[str, str]]
    body: bytes = b""


@dataclass(frozen=True)
class Timeouts:
    """Seconds per phase (``None``: no limit), as httpx names them."""

    connect: float | None = None
    read: float | None = None
    write: float | None = None


class LeanResponse:
    """An answer's status and body without httpx's Response: what ``openai_http`` reads
    (``status_code``, ``reason_phrase``, ``read``/``json``/``text``, ``iter_lines``).
    The connection goes back to the pool once the body is read whole; ``close`` first."""

    def __init__(self, status: int, reason: str, body: _AnswerStream) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self._body = body
        self._content: bytes | None = None

    def read(self) -> bytes:
        if self._content is None:
            try:
                self._content = b"".join(self._body)
            finally:
                self._body.close()
        return self._content

    @property
    def text(self) -> str:
        return self.read().decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.read())

    def iter_lines(self) -> Iterator[str]:
        """The body's lines as they arrive (``\n`` or ``\r\n``), without their ends."""
        pending = b""
        for data in self._body:
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", errors="replace")

    def close(self) -> None:
        self._body.close()


class LoopbackTransport(httpx.BaseTransport):
    """``http.client`` connections to one or more loopback hosts, reused when idle."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's entry: the same exchange as ``open``, wrapped in httpx's Response."""
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"the loopback transport speaks plain http, not {request.url.scheme}",
                request=request,
            )
        phases = request.extensions.get("timeout", {})
        timeouts = Timeouts(phases.get("connect"), phases.get("read"), phases.get("write"))
        outgoing = Outgoing(
            request.method,
            request.url.host,
            request.url.port or 80,
            request.url.raw_path.decode("ascii"),
            [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in request.headers.raw
            ],
            request.read(),
        )
        cancel: Cancellation | None = request.extensions.get(CANCEL_EXTENSION)
        connection, answer, forget = self._exchange(outgoing, timeouts, cancel, request)
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            stream=_AnswerStream(self, connection, answer, request, forget),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason.encode()},
            request=request,
        )

    def open(
        self, outgoing: Outgoing, timeouts: Timeouts, cancel: Cancellation | None = None
    ) -> LeanResponse:
        """Send ``outgoing`` and read the answer's head; its body is read from the result.
        Failures raise the httpx exceptions ``map_http_errors`` translates."""
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        connection, answer, forget = self._exchange(outgoing, timeouts, cancel, None)
        body = _AnswerStream(self, connection, answer, None, forget)
        return LeanResponse(answer.status, answer.reason, body)

    def _exchange(
        self,
        outgoing: Outgoing,
        timeouts: Timeouts,
        cancel: Cancellation | None,
        request: httpx.Request | None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, Callable[[], None]]:
        """The request sent and the answer's head read, on a kept-alive connection when
        one is idle; the connection, the answer and the unregistration of its cut."""
        connection, reused = self._connection(outgoing, timeouts.connect, request)
        forget = _cut_on_cancel(cancel, connection)
        try:
            answer = _exchange_or_close(connection, outgoing, timeouts, request)
        except httpx.TransportError as error:
            forget()
            if not (reused and isinstance(error.__cause__, _CLOSED_AS_SENT)):
                raise
            # The engine closed the kept-alive connection as the request went out
            # (its idle timeout ended just then) and read nothing: once more, anew.
            connection, _ = self._connection(outgoing, timeouts.connect, request, fresh=True)
            forget = _cut_on_cancel(cancel, connection)
            answer = _exchange_or_close(connection, outgoing, timeouts, request)
        except BaseException:
            forget()
            raise
        return connection, answer, forget

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [connection for pool in self._idle.values() for connection in pool]
            self._idle.clear()
        for connection in idle:
            connection.close()

    # -- the pool ----------------------------------------------------------------

    def _connection(
        self,
        outgoing: Outgoing,
        connect_timeout: float | None,
        request: httpx.Request | None,
        *,
        fresh: bool = False,
    ) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection that is still open (and ``True``: reused), or a new one."""
        address = (outgoing.host, outgoing.port)
        while not fresh and (connection := self._take_idle(address)) is not None:
            if _still_open(connection):
                return connection, True
            connection.close()
        connection = http.client.HTTPConnection(*address, timeout=connect_timeout)
        try:
            connection.connect()
        except _SOCKET_ERRORS as error:
            connection.close()
            raise _as_httpx_error(error, request, "connect") from error
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, False

    def _take_idle(self, address: tuple[str, int]) -> http.client.HTTPConnection | None:
        with self._lock:
            pool = self._idle.get(address)
            return pool.pop() if pool else None

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        address = (connection.host, connection.port)
        with self._lock:
            pool = self._idle.setdefault(address, [])
            if not self._closed and len(pool) < _IDLE_CONNECTIONS:
                pool.append(connection)
                return
        connection.close()


class _AnswerStream(httpx.SyncByteStream):
    """The body as it arrives; the connection goes back to the pool once it is read whole."""

    def __init__(
        self,
        transport: LoopbackTransport,
        connection: http.client.HTTPConnection,
        answer: http.client.HTTPResponse,
        request: httpx.Request | None,
        forget_cancel: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._connection: http.client.HTTPConnection | None = connection
        self._answer = answer
        self._request = request
        self._read_whole = False
        self._forget_cancel = forget_cancel

    def __iter__(self) -> Iterator[bytes]:
        try:
            while data := self._answer.read1(_READ_SIZE):
                yield data
            if self._answer.length:  # http.client reads a short body as a quiet EOF
                raise http.client.IncompleteRead(b"", self._answer.length)
        except _SOCKET_ERRORS as error:
            self.close()
            raise _as_httpx_error(error, self._request, "read") from error
        self._read_whole = True

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        self._forget_cancel()
        self._answer.close()  # the socket's file, not the socket
        if self._read_whole and not self._answer.will_close:
            self._transport._give_back(connection)
        else:
            connection.close()  # left mid-body: the rest would garble the next answer


def _exchange_or_close(
    connection: http.client.HTTPConnection,
    outgoing: Outgoing,
    timeouts: Timeouts,
    request: httpx.Request | None,
) -> http.client.HTTPResponse:
    """Send the request and read the answer's head; on any failure the connection goes."""
    try:
        _send(connection, outgoing, timeouts.write)
        connection.sock.settimeout(timeouts.read)
        return connection.getresponse()
    except _SOCKET_ERRORS as error:
        connection.close()
        raise _as_httpx_error(error, request, "read") from error
    except BaseException:
        connection.close()
        raise


def _send(
    connection: http.client.HTTPConnection, outgoing: Outgoing, write_timeout: float | None
) -> None:
    connection.sock.settimeout(write_timeout)
    body, method = outgoing.body, outgoing.method
    connection.putrequest(method, outgoing.target, skip_host=True, skip_accept_encoding=True)
    if not any(name.lower() == "host" for name, _ in outgoing.headers):
        connection.putheader("Host", f"{outgoing.host}:{outgoing.port}")
    for name, value in outgoing.headers:
        if name.lower() not in _FRAMING_HEADERS:
            connection.putheader(name, value)
    if body or method in ("POST", "PUT", "PATCH"):
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body or None)


def _cut_on_cancel(
    cancel: Cancellation | None, connection: http.client.HTTPConnection
) -> Callable[[], None]:
    """Shut ``connection``'s socket down when ``cancel`` fires; returns the unregistration."""
    if cancel is None or connection.sock is None:
        return lambda: None
    # Held here: http.client drops its own reference once an answer will close the
    # connection (the answer reads on through its file), and the cut must still reach it.
    sock = connection.sock

    def cut() -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    return cancel.on_cancel(cut)


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that reads as ready was closed by the engine (EOF)."""
    sock = connection.sock
    if sock is None:
        return False
    with contextlib.suppress(OSError, ValueError):
        readable, _, _ = select.select([sock], [], [], 0)
        return not readable
    return False


def _as_httpx_error(
    error: Exception, request: httpx.Request | None, phase: str
) -> httpx.TransportError:
    """The httpx exception that ``map_http_errors`` expects for a socket-level failure."""
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, TimeoutError):
        timeout_type = httpx.ConnectTimeout if phase == "connect" else httpx.ReadTimeout
        return timeout_type(message, request=request)
    if phase == "connect":
        return httpx.ConnectError(message, request=request)
    if isinstance(error, http.client.HTTPException):  # RemoteDisconnected, IncompleteRead, ...
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ReadError(message, request=request)
