"""What a guard watches: anything with ``pids()``, optionally ``unload()``.

``ProcessTarget`` is a set of root pids (``yoyu guard -- CMD``, ``--pid N``);
the sampler adds every descendant. ``BackendTarget`` adapts a backend from
``yoyu.backends`` (any object with ``pids()``, ``loaded_models()`` and
``unload(model_id)``) so the guard's graceful step unloads every model it
serves: for the managed llama.cpp backend that stops its servers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class GuardTarget(Protocol):
    def pids(self) -> Sequence[int]:
        """Root processes whose tree the guard watches and, at abort, signals."""
        ...


@runtime_checkable
class Unloadable(Protocol):
    def unload(self) -> None:
        """Give the memory back gracefully; blocks until done."""
        ...


def can_unload(target: object) -> bool:
    return isinstance(target, Unloadable)


class ProcessTarget:
    """Root pids set now or later (a command's pid is known only once it is started)."""

    def __init__(self, *pids: int) -> None:
        self._lock = threading.Lock()
        self._pids: tuple[int, ...] = tuple(pids)

    def set_pids(self, *pids: int) -> None:
        with self._lock:
            self._pids = tuple(pids)

    def pids(self) -> Sequence[int]:
        with self._lock:
            return self._pids

    def __str__(self) -> str:
        return "pid " + ",".join(str(pid) for pid in self.pids())


class _ModelRecord(Protocol):
    @property
    def id(self) -> str: ...


class _Backend(Protocol):
    name: str

    def pids(self) -> list[int]: ...
    def loaded_models(self) -> Sequence[_ModelRecord]: ...
    def unload(self, model_id: str) -> None: ...


class BackendTarget:
    """A backend under guard: its engines' processes, unloaded model by model."""

    def __init__(self, backend: _Backend) -> None:
        self.backend = backend

    def pids(self) -> Sequence[int]:
        return self.backend.pids()

    def unload(self) -> None:
        for model in self.backend.loaded_models():
            self.backend.unload(model.id)

    def __str__(self) -> str:
        return f"backend {self.backend.name}"
