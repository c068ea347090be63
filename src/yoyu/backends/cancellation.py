"""Stopping a request from another thread: the client left, or its deadline passed.

Backends block, so the request's own thread cannot notice on its own that
nobody waits for the answer any more. A ``Cancellation`` travels with the
request; whoever holds its connection registers how to cut it (the loopback
transport shuts the socket down, which ends the blocked read at once), and
``cancel()`` runs that from any thread. An engine whose connection is cut
stops generating (llama-server and llama-cpp-python's streams check for it),
and its slot is free for the next request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Cancellation:
    """A one-way switch with callbacks: once cancelled, always cancelled. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next_id = 0
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str) -> None:
        """Cut what is registered now and whatever registers later; the first reason stays."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` on cancel (at once when already cancelled); returns its remover."""
        with self._lock:
            if self.reason is None:
                key = self._next_id
                self._next_id += 1
                self._callbacks[key] = callback
                return lambda: self._remove(key)
        callback()
        return lambda: None

    def _remove(self, key: int) -> None:
        with self._lock:
            self._callbacks.pop(key, None)
