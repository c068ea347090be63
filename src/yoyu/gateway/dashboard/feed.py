"""The live feed behind every page: one reading a second, kept for the last minutes, and
the guard's new decisions, shared by every open page.

One thread reads (the machine, the engines, the served models' states, the tail
of the guard's audit log); each page's event stream only copies what is new
since it last looked. Ten open tabs cost ten copies, not ten readers.

While a model loads (a served model's state says so, or the dashboard's own Load
button is at work) it reads four times a second: a load is where memory moves.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from yoyu.gateway.dashboard.guardlog import guard_mark
from yoyu.guard.audit import AuditTail

log = logging.getLogger(__name__)
TICK_S = 1.0
LOADING_TICK_S = 0.25
HISTORY_POINTS = 900  # the timeline's last 15 minutes at one reading a second
GUARD_RECORDS = 200  # decisions kept for the timeline's marks

Json = dict[str, Any]


@dataclass(frozen=True)
class Update:
    """What a page has not seen yet: readings after its cursor, new guard records, models."""

    seq: int
    latest: Json | None  # the newest reading, whole
    rows: list[list[Any]]  # every reading after the cursor, as timeline rows
    guard: list[Json]
    guard_seq: int
    models: list[Json] = field(default_factory=list)


class Feed:
    """Reads ``point()`` every ``tick_s`` in its own thread and keeps the latest readings."""

    def __init__(
        self,
        point: Callable[[], Json],
        row: Callable[[Json], list[Any]],
        models: Callable[[], list[Json]],
        audit: AuditTail,
        *,
        tick_s: float = TICK_S,
        history: int = HISTORY_POINTS,
    ) -> None:
        self._point, self._row, self._models, self._audit = point, row, models, audit
        self.tick_s = tick_s
        # The timeline keeps a few numbers per reading (a gateway lives for weeks and a
        # long soak measures its growth); only the latest reading is kept whole.
        self._rows: collections.deque[tuple[int, list[Any]]] = collections.deque(maxlen=history)
        self._latest: Json | None = None
        self._guard: collections.deque[tuple[int, Json]] = collections.deque(maxlen=GUARD_RECORDS)
        self._latest_models: list[Json] = []
        self._seq = 0
        self._guard_seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._loads = 0  # loads the dashboard itself started and still waits on
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self.tick()  # a page opened at once has a reading
            self._thread = threading.Thread(target=self._run, name="yoyu-dashboard", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Read fast from now until the body (a load) ends."""
        with self._lock:
            self._loads += 1
        self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._loads -= 1

    def interval_s(self) -> float:
        """The wait before the next reading: short while a model loads."""
        with self._lock:
            loading = self._loads > 0 or any(
                model.get("state") == "loading" for model in self._latest_models
            )
        return LOADING_TICK_S if loading else self.tick_s

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:  # a bug; the pages must outlive it
                log.exception("dashboard reading failed; it goes on at the next tick")

    def tick(self) -> None:
        point = self._point()
        row, models, records = self._row(point), self._models(), self._audit.read_new()
        with self._lock:
            self._seq += 1
            self._rows.append((self._seq, row))
            self._latest = point
            for record in records:
                self._guard_seq += 1
                self._guard.append((self._guard_seq, guard_mark(record)))
            self._latest_models = models

    def since(self, seq: int, guard_seq: int) -> Update:
        """What came after ``seq`` (readings) and ``guard_seq`` (decisions); 0, 0 for all."""
        with self._lock:
            rows = [row for s, row in self._rows if s > seq]
            guard = [mark for s, mark in self._guard if s > guard_seq]
            latest = self._latest if rows else None
            return Update(
                self._seq, latest, rows, guard, self._guard_seq, list(self._latest_models)
            )
