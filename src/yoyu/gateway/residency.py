"""The effect layer around admission: load, unload and count use of managed models.

``decide_admission`` decides; this class observes (live available memory,
what yoyu has loaded, what is in use) and carries the decision out. It keeps
three promises:

- one load at a time, machine-wide: loads compete for the same memory, so
  each admission sees the previous load's result;
- concurrent requests for a model being loaded wait for that one load
  (single flight), and share its outcome, error included;
- a model in use (``in_flight`` > 0) is never unloaded, and a load that
  leaves less than the floor available once it is up is undone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from yoyu.backends.protocol import Backend, ModelRef
from yoyu.errors import AdmissionError, YoyuError
from yoyu.gateway.admission import (
    Admission,
    AdmissionRequest,
    Resident,
    decide_admission,
    expired_models,
)
from yoyu.gateway.config import ServedModel, ServerConfig
from yoyu.units import format_bytes

log = logging.getLogger(__name__)
Clock = Callable[[], float]
MAX_DECISIONS = 3  # a victim that became busy meanwhile means deciding again


@dataclass
class _Entry:
    model: ServedModel
    bytes: int
    loaded_at_s: float
    last_used_s: float
    in_flight: int = 0


@dataclass
class _PendingLoad:
    done: threading.Event
    error: BaseException | None = None


class Lease:
    """A model held in use for one request; released exactly once, whoever asks first."""

    def __init__(self, model_id: str | None, release: Callable[[], None]) -> None:
        self.model_id = model_id
        self._release: Callable[[], None] | None = release
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass(frozen=True)
class ResidentInfo:
    """A loaded model as the service reports it."""

    id: str
    backend: str
    bytes: int
    in_flight: int
    idle_s: float
    pinned: bool
    ttl_s: float


class Residency:
    """Managed models in memory: admission, single-flight loads, LRU and TTL unloads."""

    def __init__(
        self,
        backends: Mapping[str, Backend],
        server: ServerConfig,
        *,
        need_bytes: Callable[[ServedModel], int],
        available_bytes: Callable[[], int],
        floor_bytes: int,
        load_settings: Callable[[ServedModel], Mapping[str, Any]] | None = None,
        clock: Clock = time.monotonic,
        watch_load: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
    ) -> None:
        self._backends = backends
        # Entered around each load: the gateway's guard samples fast while a model loads.
        self._watch_load = watch_load or contextlib.nullcontext
        self._server = server
        self._need_bytes = need_bytes
        self._load_settings = load_settings or (lambda model: model.settings)
        self._available_bytes = available_bytes
        self.floor_bytes = floor_bytes
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, _PendingLoad] = {}
        self._lock = threading.Lock()  # guards _entries and _pending; never held across I/O
        self._load_lock = threading.Lock()  # one admission + load at a time
        self.loads = 0
        self.unloads = 0
        self._last_errors: dict[
            str, str
        ] = {}  # the last failed load of each model, until one works
        self._ttl_overrides: dict[str, float] = {}  # set by a client (Ollama's keep_alive)

    # -- leases ------------------------------------------------------------

    def acquire(self, model: ServedModel) -> None:
        """Make sure ``model`` is loaded and mark it in use; pair with ``release``.

        Raises AdmissionError when it does not fit, BackendStartError when the
        engine does not come up; waiters on the same load get the same error.
        """
        while True:
            if self._hold_loaded(model):
                return
            with self._lock:
                if self._entries.get(model.id) is not None:
                    continue  # loaded meanwhile by another request: check that one
                pending = self._pending.get(model.id)
                leader = pending is None
                if pending is None:
                    pending = self._pending[model.id] = _PendingLoad(threading.Event())
            if leader:
                self._lead_load(model, pending)
                return
            pending.done.wait()
            if pending.error is not None:
                raise pending.error

    def _hold_loaded(self, model: ServedModel) -> bool:
        """Mark ``model`` in use if it is loaded and its engine alive; never waits."""
        with self._lock:
            entry = self._entries.get(model.id)
        if entry is None:
            return False
        if not self._engine_alive(model):
            self._drop(model.id, entry)  # it died since its last request: load it anew
            return False
        with self._lock:
            if self._entries.get(model.id) is not entry:
                return False
            entry.in_flight += 1
            return True

    def release(self, model: ServedModel) -> None:
        with self._lock:
            entry = self._entries.get(model.id)
            if entry is not None:
                entry.in_flight = max(0, entry.in_flight - 1)
                entry.last_used_s = self._clock()

    def lease(self, model: ServedModel) -> Lease:
        """``model`` loaded and held in use until the lease is released (``with`` or
        ``release()``, once); a model the gateway does not manage needs no lease."""
        if not model.managed:
            return Lease(None, lambda: None)
        self.acquire(model)
        return Lease(model.id, lambda: self.release(model))

    def lease_now(self, model: ServedModel) -> Lease | None:
        """The lease at once when ``model`` needs no load (it is loaded, or not managed);
        ``None`` when getting it means loading or waiting for a load (``lease`` in a
        worker thread). The event loop asks this first: a loaded model never costs it a
        thread."""
        if not model.managed:
            return Lease(None, lambda: None)
        if not self._hold_loaded(model):
            return None
        return Lease(model.id, lambda: self.release(model))

    def _engine_alive(self, model: ServedModel) -> bool:
        """Its backend still serves it (an engine that exited is no longer listed)."""
        loaded = self._backends[model.backend].loaded_models()
        return any(resident.id == model.id for resident in loaded)

    def _drop(self, model_id: str, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(model_id) is entry:
                del self._entries[model_id]

    def forget(self, model_id: str) -> None:
        """The engine died: drop the record so the next request loads it again."""
        with self._lock:
            self._entries.pop(model_id, None)

    # -- unloading -----------------------------------------------------------

    def reap(self) -> list[str]:
        """Unload idle models whose TTL has run out; returns their ids."""
        with self._load_lock:
            expired = expired_models(self._residents(), self._clock())
            return [model_id for model_id in expired if self._unload_if_idle(model_id)]

    def unload(self, model_id: str) -> bool:
        """Unload now if idle (an explicit request); False when busy or absent."""
        with self._load_lock:
            return self._unload_if_idle(model_id)

    def evict_all(self) -> list[str]:
        """Unload every model, busy and pinned ones too: the guard's graceful step when
        memory runs out (their requests fail; the machine stays up). Returns the ids."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            self._backends[entry.model.backend].unload(entry.model.id)
            with self._lock:
                self.unloads += 1
        return [entry.model.id for entry in entries]

    def close(self) -> None:
        self.evict_all()

    # -- reading -----------------------------------------------------------

    def snapshot(self) -> list[ResidentInfo]:
        now = self._clock()
        with self._lock:
            entries = list(self._entries.values())
        return [
            ResidentInfo(
                id=e.model.id,
                backend=e.model.backend,
                bytes=e.bytes,
                in_flight=e.in_flight,
                idle_s=0.0 if e.in_flight else now - e.last_used_s,
                pinned=e.model.pinned,
                ttl_s=self._ttl(e.model),
            )
            for e in entries
        ]

    def state(self, model: ServedModel) -> str:
        """``ready`` (loaded), ``loading``, ``failed`` (the last load did) or ``unloaded``."""
        with self._lock:
            if model.id in self._entries:
                return "ready"
            if model.id in self._pending:
                return "loading"
            return "failed" if model.id in self._last_errors else "unloaded"

    def last_error(self, model_id: str) -> str | None:
        with self._lock:
            return self._last_errors.get(model_id)

    def held_bytes(self) -> int:
        with self._lock:
            return sum(entry.bytes for entry in self._entries.values())

    # -- internals ---------------------------------------------------------

    def _lead_load(self, model: ServedModel, pending: _PendingLoad) -> None:
        try:
            with self._load_lock:
                self._admit_and_load(model)
        except BaseException as error:
            pending.error = error
            with self._lock:
                self._last_errors[model.id] = str(error)
            raise
        else:
            with self._lock:
                self._last_errors.pop(model.id, None)
        finally:
            with self._lock:
                self._pending.pop(model.id, None)
            pending.done.set()

    def _admit_and_load(self, model: ServedModel) -> None:
        need = self._need_bytes(model)
        for _ in range(MAX_DECISIONS):
            decision = self._decide(model, need)
            if not decision.admit:
                raise AdmissionError(f"not loading {model.id}: {decision.reason}")
            if all(self._unload_if_idle(victim) for victim in decision.evict):
                break
        else:
            raise AdmissionError(f"not loading {model.id}: the models to unload stayed busy")
        log.info("loading %s (%s)", model.id, decision.reason)
        backend = self._backends[model.backend]
        with self._watch_load():
            backend.load(ModelRef(model.id, model.path), self._load_settings(model))
        self._check_floor_after_load(model, backend)
        now = self._clock()
        with self._lock:
            self._entries[model.id] = _Entry(model, need, now, now, in_flight=1)
            self.loads += 1

    def _decide(self, model: ServedModel, need: int) -> Admission:
        return decide_admission(
            AdmissionRequest(
                model_id=model.id,
                need_bytes=need,
                available_bytes=self._available_bytes(),
                floor_bytes=self.floor_bytes,
                budget_bytes=self._server.memory_budget_bytes,
                resident=tuple(self._residents()),
                now_s=self._clock(),
            )
        )

    def _check_floor_after_load(self, model: ServedModel, backend: Backend) -> None:
        """The estimate was wrong if the floor is crossed now: give the memory back."""
        available, floor = self._available_bytes(), self.floor_bytes
        if available >= floor:
            return
        backend.unload(model.id)
        raise AdmissionError(
            f"unloaded {model.id} again: with it loaded only {format_bytes(available)} was "
            f"available, under the floor of {format_bytes(floor)}; set its memory higher"
        )

    def _residents(self) -> list[Resident]:
        with self._lock:
            entries = list(self._entries.values())
        return [
            Resident(
                id=e.model.id,
                bytes=e.bytes,
                last_used_s=e.last_used_s,
                in_flight=e.in_flight,
                pinned=e.model.pinned,
                ttl_s=self._ttl(e.model),
            )
            for e in entries
        ]

    def set_ttl(self, model_id: str, ttl_s: float | None) -> None:
        """Idle seconds before ``model_id`` is unloaded, from now on (0: never); None goes
        back to its configured TTL. A client's say (Ollama's ``keep_alive``) over the file's."""
        with self._lock:
            if ttl_s is None:
                self._ttl_overrides.pop(model_id, None)
            else:
                self._ttl_overrides[model_id] = ttl_s

    def _ttl(self, model: ServedModel) -> float:
        override = self._ttl_overrides.get(model.id)
        if override is not None:
            return override
        return model.ttl_s if model.ttl_s is not None else self._server.default_ttl_s

    def _unload_if_idle(self, model_id: str) -> bool:
        """True once unloaded here; False when busy or not loaded at all."""
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is None:
                return False
            if entry.in_flight:
                return False
            del self._entries[model_id]
        try:
            self._backends[entry.model.backend].unload(model_id)
        except YoyuError as error:
            log.warning("unloading %s failed: %s", model_id, error)
        log.info("unloaded %s (%s)", model_id, format_bytes(entry.bytes))
        with self._lock:
            self.unloads += 1
        return True
