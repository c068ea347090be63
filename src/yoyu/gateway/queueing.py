"""Per-model concurrency with a bounded, visible wait queue.

An engine answers a few requests at a time (llama-server's slots, one for
llama-cpp-python's server); anything more waits somewhere. Waiting inside
the engine is invisible and unbounded: a burst of 500 requests piles up in
its queue, the client's timeout fires, and the engine still works through
every one. Here a served model admits ``max_concurrent`` requests at once,
at most ``max_queue`` wait in arrival order, and one more is refused at
once with 429 and a Retry-After computed from how fast the model has been
answering (Ollama answers 503 "server busy" past OLLAMA_MAX_QUEUE; OpenAI's
API answers 429 with Retry-After). A waiter whose client leaves, or whose
deadline passes, leaves the queue without ever reaching the engine.

A refused request is a route member that cannot answer now: the service
moves on to the next member of its route, as for a model that does not fit.

One line serves both kinds of caller: a worker thread waits with ``enter``
and a task on the gateway's event loop with ``enter_async``; they queue in
one arrival order, and a slot handed on wakes either kind.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from yoyu.backends.cancellation import Cancellation
from yoyu.errors import QueueFullError, RequestCancelledError

Clock = Callable[[], float]
RETRY_AFTER_MIN_S = 1.0
RETRY_AFTER_MAX_S = 60.0
SERVICE_TIME_WEIGHT = 0.2  # the newest request's share of the moving mean
FIRST_GUESS_S = 2.0  # the mean service time before any request has finished


@dataclass(frozen=True)
class QueueLimits:
    """How many requests a model answers at once, and how many may wait beyond that."""

    max_concurrent: int
    max_queue: int


@dataclass(frozen=True)
class QueueStats:
    """One model's queue as ``/metrics`` and ``/yoyu/models`` show it."""

    model: str
    running: int
    waiting: int
    max_concurrent: int
    max_queue: int
    rejected: int
    mean_service_s: float | None


class Slot:
    """A turn at the model for one request; released exactly once, whoever asks first."""

    def __init__(self, queue: ModelQueue | None, started_s: float, waited_s: float) -> None:
        self._queue = queue
        self._started_s = started_s
        self.waited_s = waited_s
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            queue, self._queue = self._queue, None
        if queue is not None:
            queue.leave(self._started_s)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class _Waiter:
    """One request in line: a thread's Event, or a task's future on its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.admitted = threading.Event()
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None

    def wake(self) -> None:
        self.admitted.set()
        future = self.future
        if future is not None and not future.get_loop().is_closed():
            future.get_loop().call_soon_threadsafe(_settle, future)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _LineTimeoutError(Exception):
    """A task's wait in line ran past its deadline."""


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(_LineTimeoutError())


class ModelQueue:
    """The slots of one served model and the requests waiting for one. Thread-safe."""

    def __init__(self, model_id: str, limits: QueueLimits, clock: Clock = time.monotonic) -> None:
        self.model_id = model_id
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: deque[_Waiter] = deque()
        self._rejected = 0
        self._mean_service_s: float | None = None

    def enter(self, *, timeout_s: float, cancel: Cancellation | None = None) -> Slot:
        """A slot now, or after the requests ahead of this one; raises QueueFullError
        when the queue is full and RequestCancelledError when the client leaves or the
        deadline passes first."""
        arrived = self._clock()
        waiter = self._join(None)
        if waiter is None:
            return Slot(self, arrived, 0.0)
        self._wait(waiter, timeout_s, cancel)
        started = self._clock()
        return Slot(self, started, started - arrived)

    async def enter_async(self, *, timeout_s: float) -> Slot:
        """``enter`` for a task on an event loop: it waits without a thread, and a task
        cancelled while in line (its client left) leaves the line."""
        arrived = self._clock()
        waiter = self._join(asyncio.get_running_loop())
        if waiter is None:
            return Slot(self, arrived, 0.0)
        future = waiter.future
        assert future is not None
        # A timer, not wait_for: wait_for can swallow a cancellation that meets the slot.
        timer = future.get_loop().call_later(timeout_s, _expire, future)
        try:
            await future
        except BaseException as error:  # cancelled or timed out: out of the line
            with self._lock:
                self._abandon(waiter)
            if isinstance(error, _LineTimeoutError):
                raise RequestCancelledError(
                    f"{self.model_id}: no free slot within {timeout_s:g} s while queued"
                ) from None
            raise
        finally:
            timer.cancel()
        started = self._clock()
        return Slot(self, started, started - arrived)

    def _join(self, loop: asyncio.AbstractEventLoop | None) -> _Waiter | None:
        """A slot at once (``None``), or this request's place at the end of the line."""
        with self._lock:
            if self._running < self.limits.max_concurrent and not self._waiters:
                self._running += 1
                return None
            if len(self._waiters) >= self.limits.max_queue:
                self._rejected += 1
                raise self._full_error()
            waiter = _Waiter(loop)
            self._waiters.append(waiter)
            return waiter

    def _wait(self, waiter: _Waiter, timeout_s: float, cancel: Cancellation | None) -> None:
        remove = cancel.on_cancel(waiter.admitted.set) if cancel is not None else None
        try:
            admitted = waiter.admitted.wait(timeout_s)
        finally:
            if remove is not None:
                remove()
        with self._lock:
            if self._admitted(waiter) and admitted and not (cancel and cancel.cancelled):
                return
            self._abandon(waiter)
        why = cancel.reason if cancel is not None and cancel.cancelled else None
        raise RequestCancelledError(
            f"{self.model_id}: {why or f'no free slot within {timeout_s:g} s'} while queued"
        )

    def _admitted(self, waiter: _Waiter) -> bool:
        """Whether ``leave`` handed this waiter a slot (it is no longer in the line)."""
        return waiter not in self._waiters

    def _abandon(self, waiter: _Waiter) -> None:
        """Step out of the line; a slot handed over meanwhile goes to the next in line."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        else:
            self._running -= 1
            self._admit_next()

    def leave(self, started_s: float) -> None:
        """A request is done with its slot: note how long it held it, admit the next."""
        held_s = max(0.0, self._clock() - started_s)
        with self._lock:
            self._running -= 1
            self._learn(held_s)
            self._admit_next()

    def _admit_next(self) -> None:
        while self._waiters and self._running < self.limits.max_concurrent:
            waiter = self._waiters.popleft()
            self._running += 1
            waiter.wake()

    def _learn(self, held_s: float) -> None:
        mean = self._mean_service_s
        self._mean_service_s = (
            held_s if mean is None else mean + SERVICE_TIME_WEIGHT * (held_s - mean)
        )

    def _full_error(self) -> QueueFullError:
        return QueueFullError(
            f"{self.model_id} is busy: {self._running} requests running and "
            f"{len(self._waiters)} waiting (max_queue = {self.limits.max_queue}); "
            "try again shortly, or raise max_concurrent / max_queue for it",
            retry_after_s=self._retry_after_s(),
        )

    def _retry_after_s(self) -> float:
        """When a slot should be free for one more: the line ahead, at the pace so far."""
        mean = self._mean_service_s if self._mean_service_s is not None else FIRST_GUESS_S
        rounds = (len(self._waiters) + 1) / self.limits.max_concurrent
        seconds = math.ceil(rounds * mean)
        return float(min(RETRY_AFTER_MAX_S, max(RETRY_AFTER_MIN_S, seconds)))

    def stats(self) -> QueueStats:
        with self._lock:
            return QueueStats(
                model=self.model_id,
                running=self._running,
                waiting=len(self._waiters),
                max_concurrent=self.limits.max_concurrent,
                max_queue=self.limits.max_queue,
                rejected=self._rejected,
                mean_service_s=self._mean_service_s,
            )
