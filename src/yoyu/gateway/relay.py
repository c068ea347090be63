"""Blocking work off the event loop, cheaply: one executor, and a pump for blocking streams.

Backends that cannot answer on the gateway's event loop (``LoopGeneration``)
block, so their calls run in a worker thread. A blocking stream lives *whole*
in one worker: the thread opens it, reads its items and hands each to the
loop with ``call_soon_threadsafe``. That is one thread hand-off per request
instead of one per item (Starlette's ``iterate_in_threadpool``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound=Iterable[object])


class Offload:
    """A thread pool for backend calls, sized for the requests that may wait on engines."""

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="yoyu-gw")

    async def run(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function)

    def run_detached(self, function: Callable[[], object]) -> None:
        """Run ``function`` in a worker, waited for by nobody (its errors are its own);
        nothing runs once the pool has shut down (the gateway is stopping)."""
        try:
            self._pool.submit(function).add_done_callback(_retrieve_threaded)
        except RuntimeError:  # shut down: what it would do no longer matters
            return

    async def run_owned(self, function: Callable[[], T], give_up: Callable[[T], None]) -> T:
        """``function``'s result; when the caller is cancelled first (its client left) the
        result, once it comes, is handed to ``give_up`` (a lease taken for nobody)."""
        future = asyncio.get_running_loop().run_in_executor(self._pool, function)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda done: _give_up(done, give_up))
            raise

    async def pump(self, open_items: Callable[[], S]) -> tuple[S, Pumped[Any]]:
        """Open an iterable and read it, both in one worker thread; return it and its items.

        One thread per stream for its whole life: opening in one worker and
        pumping in another lets opened streams, each holding an upstream
        connection, wait for workers held by requests waiting for a
        connection (a deadlock until the pool times out). ``open_items``'s
        error is raised here, before any item is read, so the caller can still
        answer with a status; an error while reading is raised by the items;
        ``close()`` on them stops the pump at the next item, and the iterable
        is closed in its own thread.
        """
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[S] = loop.create_future()
        items: Pumped[Any] = Pumped(loop)

        def run() -> None:
            try:
                source = open_items()
            except BaseException as error:
                loop.call_soon_threadsafe(_settle, opened, None, error)
                return
            loop.call_soon_threadsafe(_settle, opened, source, None)
            items.fill(source)

        loop.run_in_executor(self._pool, run).add_done_callback(_retrieve)
        try:
            return await opened, items
        except asyncio.CancelledError:  # opened for nobody: the pump closes it at once
            items.close()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _End:
    """The pump's last word: the source ended, or failed with ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Pumped(Generic[T]):
    """Items a worker thread reads, handed to the loop: ``async for`` them, ``close()`` to
    stop the worker at its next item (plain, not awaited: a cancelled task can call it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[T | _End] = asyncio.Queue()
        self._stopped = threading.Event()

    def fill(self, source: Iterable[T]) -> None:
        """Read ``source`` into the queue (in the worker thread) until it ends or is stopped."""
        end = _End()
        try:
            for item in source:
                if self._stopped.is_set():
                    break
                self._put(item)
        except BaseException as error:
            end = _End(error)
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()
            self._put(end)

    def _put(self, item: T | _End) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def __aiter__(self) -> Pumped[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._stopped.set()
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    def ready(self) -> bool:
        """Whether the next item (or the end) is here already."""
        return not self._queue.empty()

    def close(self) -> None:
        self._stopped.set()


def _settle(future: asyncio.Future[S], value: S | None, error: BaseException | None) -> None:
    if future.cancelled():  # the request was abandoned while it opened (the pump closes it)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]


def _give_up(done: asyncio.Future[T], give_up: Callable[[T], None]) -> None:
    if not done.cancelled() and done.exception() is None:
        give_up(done.result())


def _retrieve_threaded(future: Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def _retrieve(future: asyncio.Future[None]) -> None:
    """A producer's own errors are its business (it reports them); never 'never retrieved'."""
    if not future.cancelled():
        future.exception()
