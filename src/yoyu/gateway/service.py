"""The gateway's operations, free of HTTP: the OpenAI app and the MCP server both call these.

``GatewayService`` holds the served models, the backends, routing state
(aliases, cooldowns), residency (admission, loads, unloads) and metrics. Its
public methods are the whole API::

    chat(request, private=False) -> Answer            complete(request, ...) -> Answer
    stream_chat(request, ...) -> StreamAnswer         stream_complete(request, ...) -> StreamAnswer
    embeddings(model, inputs, private=False) -> EmbeddingAnswer
    list_models(installed=False) -> ModelListing      model_ids() -> list[str]
    switch_alias(alias, target) -> AliasChange        health(refresh=True) -> list[BackendStatus]
    memory() -> MemoryStatus                          unload(model_id) -> bool
    knows(name) -> bool                               gauges() -> list[Gauge]
    start() / close()                                  (the TTL reaper and health checker)

``private=True`` is the ``X-Yoyu-Privacy: local`` header: only local routes.

A request names a served model, a route or an alias; the answer says which
served model really answered (``route``). Errors are YoyuError subclasses:
UnknownModelError, PrivacyError, AdmissionError, NoRouteError, and the
backend's own BackendRequestError for a 4xx the caller caused.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from yoyu.backends.protocol import (
    Backend,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingResponse,
)
from yoyu.backends.registry import create_backend
from yoyu.config import load_settings
from yoyu.errors import (
    AdmissionError,
    BackendCrashedError,
    BackendError,
    BackendRequestError,
    BackendUnavailableError,
    ConfigError,
    NoRouteError,
    UnknownModelError,
    YoyuError,
)
from yoyu.estimate.engine import ENGINES, LLAMA_CPP_PYTHON
from yoyu.gateway.config import GatewayConfig, ServedModel
from yoyu.gateway.guarding import GatewayTarget
from yoyu.gateway.metrics import GatewayMetrics, Gauge
from yoyu.gateway.residency import Residency, ResidentInfo
from yoyu.gateway.routing import Cooldowns, local_members, order_by_cooldown, resolve
from yoyu.gateway.sizing import PlanSizer, Sizing
from yoyu.guard import Guard
from yoyu.models.discover import find_installed_models
from yoyu.monitor.system import system_reader

log = logging.getLogger(__name__)
T = TypeVar("T")
Request = TypeVar("Request", ChatRequest, CompletionRequest)
MAINTENANCE_TICK_S = 1.0
# Upstream 4xx statuses that are the operator's or the engine's trouble, not the
# caller's (a wrong upstream key, a model the upstream lacks, rate limits): next route.
_RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 409, 429})


@dataclass(frozen=True)
class Answer:
    """A whole answer and the served model that gave it."""

    requested: str
    route: str
    backend: str
    response: ChatResponse
    fallbacks: tuple[str, ...] = ()  # "model: why" for each route tried before this one


class StreamAnswer:
    """A streamed answer: iterate for chunks; ``close()`` releases the model early.

    The first chunk has already arrived when this exists, so a backend that
    fails before saying anything has been replaced by the next route; a
    failure after that raises a BackendError from the iterator.
    """

    def __init__(
        self,
        requested: str,
        route: str,
        backend: str,
        chunks: Iterator[ChatChunk],
        on_close: Callable[[], None],
    ) -> None:
        self.requested = requested
        self.route = route
        self.backend = backend
        self._chunks = chunks
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[ChatChunk]:
        try:
            yield from self._chunks
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _close(self._chunks)
            self._on_close()


@dataclass(frozen=True)
class EmbeddingAnswer:
    requested: str
    route: str
    backend: str
    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int | None


@dataclass(frozen=True)
class ModelEntry:
    """A name clients may use: a served model, a route or an alias."""

    id: str
    kind: str  # "model", "route" or "alias"
    backend: str | None = None
    remote: bool = False
    managed: bool = False
    loaded: bool = False
    size_bytes: int | None = None
    need_bytes: int | None = None
    verdict: str | None = None
    private: bool = False
    pinned: bool = False
    ttl_s: float | None = None
    targets: tuple[str, ...] = ()  # a route's chain, an alias's target


@dataclass(frozen=True)
class InstalledEntry:
    name: str
    source: str
    path: str
    size_bytes: int
    format: str


@dataclass(frozen=True)
class ModelListing:
    served: tuple[ModelEntry, ...]
    installed: tuple[InstalledEntry, ...] = ()


@dataclass(frozen=True)
class AliasChange:
    alias: str
    previous: str | None
    target: str


@dataclass(frozen=True)
class BackendStatus:
    name: str
    ok: bool
    detail: str
    remote: bool
    cooling_down: bool
    latency_s: float | None = None


@dataclass(frozen=True)
class MemoryStatus:
    """Live memory, the limits admission keeps, and what yoyu holds."""

    available_bytes: int
    total_bytes: int
    floor_bytes: int
    budget_bytes: int | None
    held_bytes: int
    loaded: tuple[ResidentInfo, ...] = field(default=())


def build_backends(config: GatewayConfig) -> dict[str, Backend]:
    """One backend per ``[backends.NAME]``, made by the registry from its options."""
    backends: dict[str, Backend] = {}
    try:
        for backend in config.backends.values():
            backends[backend.name] = _create(backend.name, backend.kind, dict(backend.options))
    except BaseException:
        for made in backends.values():
            made.close()
        raise
    return backends


def _create(name: str, kind: str, options: dict[str, Any]) -> Backend:
    """Kinds that take a ``name`` (several instances of one kind) get the table's name."""
    try:
        return create_backend(kind, name=name, **options)
    except TypeError as first:
        if "'name'" not in str(first):
            raise ConfigError(f"[backends.{name}]: {first}; check its keys") from None
    try:
        return create_backend(kind, **options)
    except TypeError as error:
        raise ConfigError(f"[backends.{name}]: {error}; check its keys") from None


class GatewayService:
    """Routing, fallback, privacy and admission over a set of backends. Thread-safe."""

    def __init__(
        self,
        config: GatewayConfig,
        backends: Mapping[str, Backend],
        *,
        sizer: PlanSizer | None = None,
        available_bytes: Callable[[], int] | None = None,
        total_bytes: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.backends = dict(backends)
        self.metrics = GatewayMetrics()
        self._sizer = sizer or PlanSizer()
        reader = system_reader() if available_bytes is None or total_bytes is None else None
        self._available = available_bytes or (lambda: reader.read().available_bytes)  # type: ignore[union-attr]
        self._total = total_bytes or (lambda: reader.read().total_bytes)  # type: ignore[union-attr]
        self._aliases = dict(config.aliases)
        self._aliases_lock = threading.Lock()
        self._cooldowns = Cooldowns(config.server.cooldown_s, clock)
        self.residency = Residency(
            self.backends,
            config.server,
            need_bytes=lambda model: self._sizing(model).need_bytes,
            load_settings=lambda model: self._sizing(model).load_settings,
            available_bytes=self._available,
            floor_bytes=config.floor_bytes(self._total()),
            clock=clock,
        )
        self._last_health: list[BackendStatus] = []
        self._stop = threading.Event()
        self._maintainer: threading.Thread | None = None
        self.guard: Guard | None = None

    @classmethod
    def from_config(cls, config: GatewayConfig) -> GatewayService:
        return cls(config, build_backends(config))

    # -- requests ------------------------------------------------------------

    def chat(self, request: ChatRequest, *, private: bool = False) -> Answer:
        return self._answer(request, private, lambda backend, req: backend.chat(req))

    def complete(self, request: CompletionRequest, *, private: bool = False) -> Answer:
        return self._answer(request, private, lambda backend, req: backend.complete(req))

    def stream_chat(self, request: ChatRequest, *, private: bool = False) -> StreamAnswer:
        return self._stream(request, private, lambda backend, req: backend.stream_chat(req))

    def stream_complete(self, request: CompletionRequest, *, private: bool = False) -> StreamAnswer:
        return self._stream(request, private, lambda backend, req: backend.stream_complete(req))

    def embeddings(
        self, model: str, inputs: Sequence[str], *, private: bool = False
    ) -> EmbeddingAnswer:
        """Vectors for ``inputs`` from the first route whose backend can embed."""

        def call(backend: Backend, served: ServedModel) -> EmbeddingResponse:
            return backend.embed(self._upstream(served), list(inputs))

        served, response, _ = self._route(model, private, call, stream=False)
        return EmbeddingAnswer(
            model, served.id, served.backend, response.vectors, response.prompt_tokens
        )

    # -- models, aliases, health, memory ----------------------------------------

    def model_ids(self) -> list[str]:
        """Every name a client may ask for (served models, routes, aliases)."""
        with self._aliases_lock:
            aliases = list(self._aliases)
        return [*self.config.served, *self.config.routes, *aliases]

    def knows(self, name: str) -> bool:
        """Whether ``name`` is a served model, route or alias (metrics label only these)."""
        return name in self.config.served or name in self.config.routes or name in self._aliases

    def list_models(self, *, installed: bool = False) -> ModelListing:
        """Served models with size, plan verdict and whether loaded; routes; aliases."""
        loaded = {info.id for info in self.residency.snapshot()} | self._unmanaged_loaded()
        entries = [self._model_entry(model, loaded) for model in self.config.served.values()]
        entries += [
            ModelEntry(id=route.name, kind="route", private=route.private, targets=route.chain)
            for route in self.config.routes.values()
        ]
        with self._aliases_lock:
            aliases = dict(self._aliases)
        entries += [ModelEntry(id=a, kind="alias", targets=(t,)) for a, t in aliases.items()]
        found = self._installed() if installed else ()
        return ModelListing(tuple(entries), found)

    def switch_alias(self, alias: str, target: str) -> AliasChange:
        """Point ``alias`` at another served model or route, now (not written to the file)."""
        if target not in self.config.served and target not in self.config.routes:
            known = ", ".join([*self.config.served, *self.config.routes])
            raise UnknownModelError(f"cannot point {alias!r} at {target!r}; known: {known}")
        if alias in self.config.served or alias in self.config.routes:
            raise ConfigError(f"{alias!r} is a served model or route, not an alias; pick another")
        with self._aliases_lock:
            previous = self._aliases.get(alias)
            self._aliases[alias] = target
        log.info("alias %s -> %s (was %s)", alias, target, previous)
        return AliasChange(alias, previous, target)

    def health(self, *, refresh: bool = True) -> list[BackendStatus]:
        """Each backend's health; a failing one cools down like a failed request."""
        if not refresh:
            return list(self._last_health)
        statuses = []
        for name, backend in self.backends.items():
            result = backend.health()
            if not result.ok:
                self._cooldowns.failed(name)
            statuses.append(
                BackendStatus(
                    name,
                    result.ok,
                    result.detail,
                    self._remote(name),
                    self._cooldowns.cooling(name),
                    result.latency_s,
                )
            )
        self._last_health = statuses
        return statuses

    def memory(self) -> MemoryStatus:
        server = self.config.server
        return MemoryStatus(
            available_bytes=self._available(),
            total_bytes=self._total(),
            floor_bytes=self.residency.floor_bytes,
            budget_bytes=server.memory_budget_bytes,
            held_bytes=self.residency.held_bytes(),
            loaded=tuple(self.residency.snapshot()),
        )

    def unload(self, model_id: str) -> bool:
        """Unload a managed model now, if idle."""
        if model_id not in self.config.served:
            raise UnknownModelError(f"model {model_id!r} is not served here")
        return self.residency.unload(model_id)

    def gauges(self) -> list[Gauge]:
        """Scrape-time figures for ``/metrics``."""
        memory = self.memory()
        gauges = [
            Gauge("yoyu_memory_available_bytes", "Available memory now.", memory.available_bytes),
            Gauge("yoyu_memory_floor_bytes", "Floor no load may cross.", memory.floor_bytes),
            Gauge("yoyu_memory_held_bytes", "Estimated bytes of loaded models.", memory.held_bytes),
            Gauge("yoyu_loaded_models", "Managed models loaded.", len(memory.loaded)),
            Gauge("yoyu_model_loads_total", "Managed model loads.", self.residency.loads),
            Gauge("yoyu_model_unloads_total", "Managed model unloads.", self.residency.unloads),
        ]
        gauges += [
            Gauge("yoyu_model_loaded_bytes", "A loaded model.", info.bytes, (("model", info.id),))
            for info in memory.loaded
        ]
        return gauges

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the guard, the background TTL reaper and the health checker."""
        if self.guard is None and self.config.server.guard:
            self.guard = Guard(GatewayTarget(self.backends, self.residency), self.config.guard)
            self.guard.start()
        if self._maintainer is None:
            self._maintainer = threading.Thread(
                target=self._maintain, name="yoyu-gateway-maintenance", daemon=True
            )
            self._maintainer.start()

    def close(self) -> None:
        """Stop the maintenance thread, the engines yoyu started and connections; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self.guard is not None:
            self.guard.stop()
        if self._maintainer is not None:
            self._maintainer.join(timeout=5)
        self.residency.close()
        for backend in self.backends.values():
            backend.close()

    def _maintain(self) -> None:
        next_health = time.monotonic() + self.config.server.health_interval_s
        while not self._stop.wait(MAINTENANCE_TICK_S):
            try:
                self.residency.reap()
                if time.monotonic() >= next_health:
                    self.health()
                    next_health = time.monotonic() + self.config.server.health_interval_s
            except YoyuError as error:
                log.warning("gateway maintenance: %s", error)

    # -- routing ---------------------------------------------------------------

    def _answer(
        self,
        request: Request,
        private: bool,
        call: Callable[[Backend, Request], ChatResponse],
    ) -> Answer:
        def attempt(backend: Backend, served: ServedModel) -> ChatResponse:
            return call(backend, dataclasses.replace(request, model=self._upstream(served)))

        served, response, failures = self._route(request.model, private, attempt, stream=False)
        usage = response.usage
        self.metrics.tokens(served.id, usage.prompt_tokens, usage.completion_tokens)
        return Answer(request.model, served.id, served.backend, response, failures)

    def _stream(
        self,
        request: Request,
        private: bool,
        call: Callable[[Backend, Request], Iterator[ChatChunk]],
    ) -> StreamAnswer:
        def attempt(backend: Backend, served: ServedModel) -> tuple[ChatChunk, Iterator[ChatChunk]]:
            chunks = call(backend, dataclasses.replace(request, model=self._upstream(served)))
            try:
                return next(iter(chunks)), chunks
            except StopIteration:
                raise BackendCrashedError(f"{served.backend} sent an empty stream") from None

        served, (first, chunks), _ = self._route(request.model, private, attempt, stream=True)
        relayed = self._relay(served, first, chunks)

        def on_close() -> None:
            _close(chunks)  # a stream never started leaves _relay's finally unrun
            if served.managed:
                self.residency.release(served)

        return StreamAnswer(request.model, served.id, served.backend, relayed, on_close)

    def _relay(
        self, served: ServedModel, first: ChatChunk, chunks: Iterator[ChatChunk]
    ) -> Iterator[ChatChunk]:
        try:
            last = first
            yield first
            for chunk in chunks:
                last = chunk
                yield chunk
            if last.usage is not None:
                usage = last.usage
                self.metrics.tokens(served.id, usage.prompt_tokens, usage.completion_tokens)
        except BackendError as error:
            self._record_failure(served, error)
            raise
        finally:
            _close(chunks)

    def _route(
        self,
        name: str,
        private: bool,
        attempt: Callable[[Backend, ServedModel], T],
        *,
        stream: bool,
    ) -> tuple[ServedModel, T, tuple[str, ...]]:
        """Try the chain for ``name`` in order; the first answer wins.

        A managed model is leased for the call (for a stream, until the
        stream is closed); connection errors, 5xx, timeouts and admission
        refusals move on to the next member; a 4xx is the caller's and is raised.
        """
        with self._aliases_lock:
            aliases = dict(self._aliases)
        resolution = resolve(
            name,
            served=self.config.served,
            routes=self.config.routes,
            aliases=aliases,
            private_requested=private,
        )
        allowed = local_members(resolution, lambda member: self._remote_model(member))
        chain = order_by_cooldown(
            allowed, lambda member: self._cooldowns.cooling(self.config.served[member].backend)
        )
        failures: list[tuple[str, YoyuError]] = []
        for member in chain:
            served = self.config.served[member]
            try:
                result = self._attempt(served, attempt, keep_lease=stream)
            except (AdmissionError, BackendError) as error:
                if not _falls_back(error):
                    raise
                failures.append((member, error))
                if isinstance(error, BackendError):
                    self._record_failure(served, error)
                continue
            self._cooldowns.succeeded(served.backend)
            for tried, _ in failures:
                self.metrics.fallback(tried, member)
            return served, result, tuple(f"{m}: {e}" for m, e in failures)
        raise _no_route(name, failures)

    def _attempt(
        self, served: ServedModel, attempt: Callable[[Backend, ServedModel], T], *, keep_lease: bool
    ) -> T:
        backend = self.backends[served.backend]
        if not served.managed:
            return attempt(backend, served)
        self.residency.acquire(served)
        try:
            result = attempt(backend, served)
        except BaseException:
            self.residency.release(served)
            raise
        if not keep_lease:
            self.residency.release(served)
        return result

    def _record_failure(self, served: ServedModel, error: BackendError) -> None:
        log.warning("backend %s failed for %s: %s", served.backend, served.id, error)
        self.metrics.backend_error(served.backend, type(error).__name__)
        self._cooldowns.failed(served.backend)
        if served.managed and isinstance(error, (BackendCrashedError, BackendUnavailableError)):
            self.residency.forget(served.id)

    # -- small helpers ---------------------------------------------------------

    def _sizing(self, model: ServedModel) -> Sizing:
        """The plan for ``model`` on the engine its backend starts."""
        return self._sizer.size(model, self.backends[model.backend].engine_kind)

    def planning_engine(self, model_id: str) -> str:
        """The engine a plan for ``model_id`` is made for: its backend's, or for a model
        not served here, the engine of the first managed backend (the one that would
        load it)."""
        served = self.config.served.get(model_id)
        if served is not None:
            return self.backends[served.backend].engine_kind
        kinds = [backend.engine_kind for backend in self.backends.values()]
        return next((kind for kind in kinds if kind in ENGINES), LLAMA_CPP_PYTHON)

    def _upstream(self, served: ServedModel) -> str:
        """Managed models are loaded under their served id; others use their upstream name."""
        return served.id if served.managed else served.upstream_name

    def _remote(self, backend_name: str) -> bool:
        return bool(getattr(self.backends[backend_name], "remote", False))

    def _remote_model(self, model_id: str) -> bool:
        return self._remote(self.config.served[model_id].backend)

    def _model_entry(self, model: ServedModel, loaded: set[str]) -> ModelEntry:
        sizing = None
        if model.managed or model.memory_bytes is not None:
            try:
                sizing = self._sizing(model)
            except YoyuError as error:
                log.warning("cannot size %s: %s", model.id, error)
        size = model.path.stat().st_size if model.path and model.path.is_file() else None
        return ModelEntry(
            id=model.id,
            kind="model",
            backend=model.backend,
            remote=self._remote(model.backend),
            managed=model.managed,
            loaded=model.id in loaded or model.upstream_name in loaded,
            size_bytes=size,
            need_bytes=sizing.need_bytes if sizing else None,
            verdict=sizing.verdict if sizing else None,
            private=model.private,
            pinned=model.pinned,
            ttl_s=model.ttl_s if model.ttl_s is not None else self.config.server.default_ttl_s,
        )

    def _unmanaged_loaded(self) -> set[str]:
        managed_backends = {m.backend for m in self.config.served.values() if m.managed}
        ids: set[str] = set()
        for name, backend in self.backends.items():
            if name in managed_backends or self._remote(name):
                continue
            try:
                ids.update(model.id for model in backend.loaded_models())
            except YoyuError as error:
                log.info("cannot ask %s what is loaded: %s", name, error)
        return ids

    def _installed(self) -> tuple[InstalledEntry, ...]:
        return tuple(
            InstalledEntry(m.name, m.source, str(m.path), m.size_bytes, m.format)
            for m in find_installed_models(load_settings())
        )


def _falls_back(error: YoyuError) -> bool:
    """Engine trouble moves on; a request the engine refused as malformed does not."""
    if isinstance(error, BackendRequestError):
        status = error.status_code
        return status is None or status >= 500 or status in _RETRYABLE_STATUS
    return isinstance(error, (AdmissionError, BackendError))


def _no_route(name: str, failures: Sequence[tuple[str, YoyuError]]) -> YoyuError:
    if len(failures) == 1:
        return failures[0][1]
    reasons = "; ".join(f"{member}: {error}" for member, error in failures)
    return NoRouteError(f"every route for {name!r} failed: {reasons}")


def _close(chunks: Iterator[ChatChunk]) -> None:
    close = getattr(chunks, "close", None)
    if callable(close):
        try:
            close()
        except ValueError:  # still running in a worker thread (a client left mid-stream)
            log.debug("stream still running while closed; it ends with its request")
