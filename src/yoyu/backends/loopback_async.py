"""The loopback transport on an event loop: engines on this machine without a worker thread.

The gateway answers on one event loop. Calling a blocking client from it
means handing every request to a worker thread and back, and under load that
hand-off (submit, wake, the GIL passed to and fro) cost as much as the rest
of the relay: a bare relay measured 7,558-8,147 req/s with an asyncio
upstream client against 4,011-4,417 with ``http.client`` in a worker thread
(16-64 clients, 2 cores). This is the same exchange as ``LoopbackTransport``
(plain HTTP/1.1 to 127.0.0.1, kept-alive connections, ``Outgoing`` and
``Timeouts`` as its requests and limits), written on asyncio streams.

What it keeps from the threaded transport, on purpose:

- a connection the engine closed while idle is noticed before reuse, and a
  request whose kept-alive connection was closed as it went out is sent once
  more on a fresh one;
- failures are the httpx exceptions ``map_http_errors`` already translates,
  so the error a user reads is the same whichever transport ran;
- an answer left before its end (the client went away, the task was
  cancelled) closes its connection: the engine sees its client gone and
  stops generating, and nothing half-read is ever reused.

The read timeout bounds the gap between two reads, as httpx's does: a timer
aborts the connection when it runs out, and the read that fails reports
the timeout. Connections belong to the event loop that opened them; a
client used from another loop (a test's own ``asyncio.run``) opens its own.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any

import httpx

from yoyu.backends.loopback_transport import Outgoing, Timeouts

_IDLE_CONNECTIONS = 256  # kept for reuse per engine and loop; more may be open while busy
_READ_SIZE = 64 * 1024
_MAX_HEAD_LINES = 100
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})
Address = tuple[str, int]


class AsyncLoopback:
    """Kept-alive asyncio connections to loopback engines, reused when idle."""

    def __init__(self) -> None:
        self._idle: dict[tuple[asyncio.AbstractEventLoop, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()  # close() may come from another thread (an unload)
        self._closed = False

    async def open(self, outgoing: Outgoing, timeouts: Timeouts) -> AsyncAnswer:
        """Send ``outgoing`` and read the answer's head; its body is read from the result."""
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        connection, reused = await self._connection(outgoing, timeouts.connect)
        try:
            return await connection.exchange(outgoing, timeouts, self)
        except httpx.TransportError as error:
            if not (reused and isinstance(error, _ClosedAsSent)):
                raise
        # The engine closed the kept-alive connection as the request went out (its
        # idle timeout ended just then) and read nothing: once more, anew.
        connection, _ = await self._connection(outgoing, timeouts.connect, fresh=True)
        return await connection.exchange(outgoing, timeouts, self)

    def close(self) -> None:
        """Cut the idle connections, each on its own loop (this may run on another thread)."""
        with self._lock:
            self._closed = True
            idle = [connection for pool in self._idle.values() for connection in pool]
            self._idle.clear()
        for connection in idle:
            _abort_on_its_loop(connection)

    async def _connection(
        self, outgoing: Outgoing, connect_timeout: float | None, *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        """An idle connection still open on this loop (and ``True``: reused), or a new one."""
        key = (asyncio.get_running_loop(), outgoing.host, outgoing.port)
        while not fresh and (connection := self._take_idle(key)) is not None:
            if connection.still_open():
                return connection, True
            connection.abort()
        return await _Connection.connect(key, connect_timeout), False

    def _take_idle(self, key: tuple[asyncio.AbstractEventLoop, str, int]) -> _Connection | None:
        with self._lock:
            pool = self._idle.get(key)
            return pool.pop() if pool else None

    def give_back(self, connection: _Connection) -> None:
        with self._lock:
            pool = self._idle.setdefault(connection.key, [])
            if not self._closed and len(pool) < _IDLE_CONNECTIONS:
                pool.append(connection)
                return
        connection.abort()


class _ClosedAsSent(httpx.RemoteProtocolError):
    """A kept-alive connection gave no answer at all: the engine closed it as we sent."""


class _Deadline:
    """Aborts a connection when a read or write takes longer than its limit."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.WriteTransport) -> None:
        self._loop = loop
        self._transport = transport
        self._timer: asyncio.TimerHandle | None = None
        self.expired = False

    def arm(self, seconds: float | None) -> None:
        self.disarm()
        if seconds is not None:
            self._timer = self._loop.call_later(seconds, self._expire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self.expired = True
        self._transport.abort()


class _Connection:
    """One HTTP/1.1 connection to an engine: send a request, read an answer's head."""

    def __init__(
        self,
        key: tuple[asyncio.AbstractEventLoop, str, int],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.deadline = _Deadline(key[0], writer.transport)

    @classmethod
    async def connect(
        cls, key: tuple[asyncio.AbstractEventLoop, str, int], timeout_s: float | None
    ) -> _Connection:
        _, host, port = key
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=_READ_SIZE), timeout_s
            )
        except asyncio.TimeoutError as error:
            raise httpx.ConnectTimeout(f"TimeoutError: connecting to {host}:{port}") from error
        except OSError as error:
            raise httpx.ConnectError(f"{type(error).__name__}: {error}") from error
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(key, reader, writer)

    def still_open(self) -> bool:
        """An idle connection the engine closed reads as at its end (or its transport is gone)."""
        return not (self.reader.at_eof() or self.writer.is_closing())

    def abort(self) -> None:
        self.deadline.disarm()
        self.writer.transport.abort()

    async def exchange(
        self, outgoing: Outgoing, timeouts: Timeouts, pool: AsyncLoopback
    ) -> AsyncAnswer:
        """The request sent and the answer's head read; on any failure the connection goes."""
        try:
            self.writer.write(_request_bytes(outgoing))
            self.deadline.arm(timeouts.write)
            await self.writer.drain()
            self.deadline.arm(timeouts.read)
            status, reason, headers = await self._head()
        except BaseException as error:
            self.abort()
            translated = self._as_httpx_error(error, sent=True)
            if translated is error:
                raise
            raise translated from error
        self.deadline.disarm()
        return AsyncAnswer(status, reason, _Body(self, headers, timeouts.read, pool))

    async def _head(self) -> tuple[int, str, dict[str, str]]:
        status_line = await self.reader.readline()
        if not status_line:
            raise _ClosedAsSent("the engine closed the connection without an answer")
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(f"not an HTTP status line: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEAD_LINES):
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n"):
                return int(parts[1]), parts[2] if len(parts) > 2 else "", headers
            if not line:
                raise httpx.RemoteProtocolError("the engine closed the connection mid-head")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raise httpx.RemoteProtocolError(f"an answer head of over {_MAX_HEAD_LINES} lines")

    def _as_httpx_error(self, error: BaseException, *, sent: bool) -> BaseException:
        """What ``map_http_errors`` expects for a failure on this connection."""
        if isinstance(error, httpx.TransportError) and not self.deadline.expired:
            return error
        if self.deadline.expired:
            return httpx.ReadTimeout(f"no byte within the read timeout from {self.key[1:]}")
        if isinstance(error, (ConnectionResetError, BrokenPipeError)) and sent:
            return _ClosedAsSent(f"{type(error).__name__}: {error}")
        if isinstance(error, (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)):
            return httpx.ReadError(f"{type(error).__name__}: {error}")
        return error  # a cancellation or a bug: as it is


class _Body:
    """An answer's body as it arrives (Content-Length, chunked, or to the end)."""

    def __init__(
        self,
        connection: _Connection,
        headers: dict[str, str],
        read_timeout: float | None,
        pool: AsyncLoopback,
    ) -> None:
        self._connection: _Connection | None = connection
        self._pool = pool
        self._read_timeout = read_timeout
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left = int(length) if length is not None and length.isdigit() else None
        self._keep_alive = headers.get("connection", "").lower() != "close" and (
            self._chunked or self._left is not None
        )
        self._finished = False

    async def next_piece(self) -> bytes:
        """The next bytes of the body; ``b""`` at its end (then the connection is free)."""
        connection = self._connection
        if connection is None or self._finished:
            return b""
        connection.deadline.arm(self._read_timeout)
        try:
            data = await self._read(connection.reader)
        except BaseException as error:
            self.close()
            translated = connection._as_httpx_error(error, sent=False)
            if translated is error:
                raise
            raise translated from error
        connection.deadline.disarm()
        if not data:
            self._finished = True
            self.close()
        return data

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        if self._chunked:
            return await self._read_chunk(reader)
        if self._left is None:
            return await reader.read(_READ_SIZE)
        if self._left == 0:
            return b""
        data = await reader.read(min(self._left, _READ_SIZE))
        if not data:
            raise asyncio.IncompleteReadError(b"", self._left)
        self._left -= len(data)
        return data

    async def _read_chunk(self, reader: asyncio.StreamReader) -> bytes:
        size_line = await reader.readline()
        size_text = size_line.split(b";", 1)[0].strip()
        if not size_line.endswith(b"\n") or not size_text:
            raise asyncio.IncompleteReadError(size_line, None)
        size = int(size_text, 16)
        if size == 0:
            while (trailer := await reader.readline()) not in (b"\r\n", b"\n"):
                if not trailer:
                    raise asyncio.IncompleteReadError(b"", None)
            return b""
        data = await reader.readexactly(size + 2)  # the chunk and its CRLF
        return data[:size]

    def close(self) -> None:
        """Back to the pool when read whole on a kept-alive connection; otherwise cut."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._finished and self._keep_alive:
            connection.deadline.disarm()
            self._pool.give_back(connection)
        else:
            connection.abort()  # left mid-body: the engine sees its client gone


class AsyncAnswer:
    """An answer's status and body: read whole (``read``, then ``json``/``text``) or as it
    arrives (``next_piece``). ``close`` before its end cuts the connection."""

    def __init__(self, status: int, reason: str, body: _Body) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self._body = body
        self._content: bytes | None = None

    async def read(self) -> bytes:
        if self._content is None:
            parts = []
            try:
                while data := await self._body.next_piece():
                    parts.append(data)
            finally:
                self._body.close()
            self._content = b"".join(parts)
        return self._content

    @property
    def text(self) -> str:
        """The body read by ``read``, as text."""
        return (self._content or b"").decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body read by ``read``, as JSON."""
        return json.loads(self._content or b"")

    async def next_piece(self) -> bytes:
        """The body's next bytes as they arrive; ``b""`` at its end."""
        return await self._body.next_piece()

    def close(self) -> None:
        self._body.close()


def _abort_on_its_loop(connection: _Connection) -> None:
    """A transport is closed on its own loop: at once from there, else handed to it."""
    loop = connection.key[0]
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        connection.abort()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(connection.abort)


def _request_bytes(outgoing: Outgoing) -> bytes:
    """The request line, headers (Host and framing written here) and body."""
    lines = [f"{outgoing.method} {outgoing.target} HTTP/1.1"]
    if not any(name.lower() == "host" for name, _ in outgoing.headers):
        lines.append(f"Host: {outgoing.host}:{outgoing.port}")
    lines += [
        f"{name}: {value}"
        for name, value in outgoing.headers
        if name.lower() not in _FRAMING_HEADERS
    ]
    if outgoing.body or outgoing.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(outgoing.body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + outgoing.body
