"""Blocking work off the event loop, cheaply: one executor, and a relay for streams.

Backends block (the protocol has no async twin), so every request runs its
backend call in a worker thread. A stream lives *whole* in one worker: the
thread opens it, reads chunks from the backend, turns them into SSE bytes
and hands them to the loop with ``call_soon_threadsafe``; the loop sends
whatever has piled up in one write. That is one thread hand-off per request
instead of one per chunk (Starlette's ``iterate_in_threadpool``), and the
JSON work stays off the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
S = TypeVar("S")
Emit = Callable[[bytes], None]
Pump = Callable[[S, Emit, threading.Event], None]


class Offload:
    """A thread pool for backend calls, sized for the requests that may wait on engines."""

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="yoyu-gw")

    async def run(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function)

    async def stream(
        self, open_stream: Callable[[], S], pump: Pump[S]
    ) -> tuple[S, AsyncIterator[bytes]]:
        """Open a stream and pump it, both in one worker thread; return it and its bytes.

        One thread per stream for its whole life: opening in one worker and
        pumping in another lets opened streams, each holding an upstream
        connection, wait for workers held by requests waiting for a
        connection (a deadlock until the pool times out). ``open_stream``'s
        error is raised here, before any byte is sent, so the caller can still
        answer with a status; when the consumer stops early (the client
        left), the event passed to ``pump`` is set and the pump stops.
        """
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[S] = loop.create_future()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(data: bytes | None) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, data)

        def run() -> None:
            try:
                stream = open_stream()
            except BaseException as error:
                loop.call_soon_threadsafe(_settle, opened, None, error)
                return
            loop.call_soon_threadsafe(_settle, opened, stream, None)
            try:
                pump(stream, emit, cancelled)
            finally:
                emit(None)

        loop.run_in_executor(self._pool, run).add_done_callback(_retrieve)
        return await opened, _drain(queue, cancelled)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _drain(
    queue: asyncio.Queue[bytes | None], cancelled: threading.Event
) -> AsyncIterator[bytes]:
    """What the pump emitted, batched: everything queued by now goes out in one write."""
    try:
        finished = False
        while not finished:
            parts = [await queue.get()]
            while not queue.empty():
                parts.append(queue.get_nowait())
            finished = None in parts
            data = b"".join(part for part in parts if part is not None)
            if data:
                yield data
    finally:
        cancelled.set()


def _settle(future: asyncio.Future[S], value: S | None, error: BaseException | None) -> None:
    if future.cancelled():  # the request was abandoned while the stream opened
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]


def _retrieve(future: asyncio.Future[None] | Future[None]) -> None:
    """A producer's own errors are its business (it reports them); never 'never retrieved'."""
    if not future.cancelled():
        future.exception()
