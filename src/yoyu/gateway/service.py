"""The gateway's operations, free of HTTP: the OpenAI app and the MCP server both call these.

``GatewayService`` holds the served models, the backends, routing state
(aliases, cooldowns), residency (admission, loads, unloads) and metrics. Its
public methods are the whole API::

    answer(request, private=False) -> Answer           a whole chat or completion
    open_stream(request, private=False) -> StreamAnswer  a streamed one
    answer_async / open_stream_async                   the same, on the gateway's event loop
    embeddings(model, inputs, private=False) -> EmbeddingAnswer
    preload(name, private=False) -> str                served_ids(name, private=False) -> list[str]
    list_models(installed=False) -> ModelListing      model_ids() -> list[str]
    switch_alias(alias, target) -> AliasChange        health(refresh=True) -> list[BackendStatus]
    memory() -> MemoryStatus                          unload(model_id) -> bool
    knows(name) -> bool                               gauges() -> list[Gauge]
    start() / close()                                  (the TTL reaper and health checker)

``private=True`` is the ``X-Yoyu-Privacy: local`` header: only local routes.

A request names a served model, a route or an alias; the answer says which
served model really answered (``route``). One request, one path::

    answer:       _route(name) -> for each member: lease the model, call the backend
    open_stream:  _route(name) -> for each member: lease the model, open, read the first chunk
                  (the StreamAnswer owns the lease and the upstream from then on)

The ``_async`` twins walk the same route with the same rules (``_RouteWalk``),
the same queue (a task waits in line without a thread) and the same leases;
a member whose backend answers on the event loop (``LoopGeneration``: the
engines on loopback) costs no worker thread at all; any other member runs the
blocking member call above in one (a model that must load first, too).

Errors are YoyuError subclasses, each carrying its HTTP status:
UnknownModelError, PrivacyError, AdmissionError, NoRouteError,
RequestCancelledError, and the backend's own BackendRequestError for a 4xx
the caller caused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeGuard, TypeVar

from yoyu.backends.cancellation import Cancellation
from yoyu.backends.protocol import (
    Backend,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingResponse,
    LoadedModel,
    LoopGeneration,
    LoopStream,
)
from yoyu.backends.registry import create_backend
from yoyu.backends.vllm_metrics import read_engine_sample
from yoyu.config import load_settings
from yoyu.errors import (
    AdmissionError,
    BackendCrashedError,
    BackendError,
    BackendRequestError,
    BackendUnavailableError,
    BadRequestError,
    ConfigError,
    NoRouteError,
    QueueFullError,
    UnknownModelError,
    YoyuError,
)
from yoyu.estimate.engine import ENGINES, LLAMA_CPP_PYTHON
from yoyu.gateway.config import (
    DEFAULT_MAX_CONCURRENT_LOCAL,
    DEFAULT_MAX_CONCURRENT_REMOTE,
    GatewayConfig,
    ServedModel,
    toml_key,
)
from yoyu.gateway.guarding import GatewayTarget
from yoyu.gateway.metrics import GatewayMetrics, Gauge
from yoyu.gateway.queueing import ModelQueue, QueueLimits, QueueStats, Slot
from yoyu.gateway.relay import Offload, Pumped
from yoyu.gateway.residency import Lease, Residency, ResidentInfo
from yoyu.gateway.routing import Cooldowns, local_members, order_by_cooldown, resolve
from yoyu.gateway.runaway import BUSY_TICKS, EngineLoad, RunawayWatch
from yoyu.gateway.sizing import PlanSizer, Sizing
from yoyu.gateway.wire import prompt_bytes as wire_prompt_bytes
from yoyu.guard import Guard
from yoyu.models.discover import find_installed_models
from yoyu.monitor.system import system_reader

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")
Generation = ChatRequest | CompletionRequest
MAINTENANCE_TICK_S = 1.0
# Blocking calls in flight beyond the models' lines: /yoyu, /metrics, requests for names
# that fail at once (Starlette's default pool is 40 in all).
SPARE_WORKER_THREADS = 32
# Upstream 4xx statuses that are the operator's or the engine's trouble, not the
# caller's (a wrong upstream key, a model the upstream lacks, rate limits): next route.
_RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 409, 429})


@dataclass(frozen=True)
class Routed(Generic[T]):
    """What a route gave: the served model that answered, its result, and why each
    member before it did not (``"model: reason"``)."""

    served: ServedModel
    result: T
    fallbacks: tuple[str, ...]


class _RouteWalk:
    """One request's walk down its route, whichever loop walks it: which failures move on
    to the next member, what they leave in the metrics and cooldowns, and the answer."""

    def __init__(self, service: GatewayService, name: str, cancel: Cancellation | None) -> None:
        self._service = service
        self._name = name
        self._cancel = cancel
        self._failures: list[tuple[str, YoyuError]] = []

    def failed(self, served: ServedModel, error: YoyuError) -> None:
        """Note a member's failure, or raise it when nothing may be tried after it: a 4xx
        is the caller's, and a cancelled request has nobody to answer."""
        if (self._cancel is not None and self._cancel.cancelled) or not _falls_back(error):
            raise error
        self._failures.append((served.id, error))
        if isinstance(error, BackendError):
            self._service._record_failure(served, error)

    def answered(self, served: ServedModel, result: T) -> Routed[T]:
        self._service._cooldowns.succeeded(served.backend)
        for tried, _ in self._failures:
            self._service.metrics.fallback(tried, served.id)
        return Routed(served, result, tuple(f"{m}: {e}" for m, e in self._failures))

    def exhausted(self) -> YoyuError:
        return _no_route(self._name, self._failures)


# What moves a request on to the next member of its route.
_MEMBER_FAILURES = (AdmissionError, QueueFullError, BackendError)


@dataclass(frozen=True)
class Answer:
    """A whole answer and the served model that gave it."""

    requested: str
    route: str
    backend: str
    response: ChatResponse
    fallbacks: tuple[str, ...] = ()  # "model: why" for each route tried before this one


class _HeldStream(Generic[U]):
    """What every open stream holds: the served model that answers, its first chunk, the
    upstream the rest comes from (``U``: a blocking iterator, or a stream on the loop), its
    lease on the model (released once, by ``close``) and what to note when it ends."""

    def __init__(
        self,
        requested: str,
        served: ServedModel,
        first: ChatChunk,
        upstream: U,
        lease: Lease,
        on_failure: Callable[[BackendError], None],
        on_finish: Callable[[ChatChunk], None],
    ) -> None:
        self.requested = requested
        self.route = served.id
        self.backend = served.backend
        self._first = first
        self._upstream = upstream
        self._lease = lease
        self._on_failure = on_failure
        self._on_finish = on_finish
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._close_upstream()
        finally:
            self._lease.release()

    def _close_upstream(self) -> None:
        raise NotImplementedError


class StreamAnswer(_HeldStream[Iterator[ChatChunk]]):
    """A streamed answer: iterate for chunks; ``close()`` ends it and frees the model.

    The first chunk has already arrived when this exists, so a backend that
    fails before saying anything has been replaced by the next route; a
    failure after that raises a BackendError from the iterator. It owns the
    upstream stream and the model's lease: ``close()`` (also at the end of
    iteration, and when a client leaves) closes one and releases the other,
    once, whoever calls it.
    """

    def __iter__(self) -> Iterator[ChatChunk]:
        try:
            last = self._first
            yield self._first
            for chunk in self._upstream:
                last = chunk
                yield chunk
            self._on_finish(last)
        except BackendError as error:
            self._on_failure(error)
            raise
        finally:
            self.close()

    def _close_upstream(self) -> None:
        _close(self._upstream)


class LoopStreamAnswer(_HeldStream[LoopStream]):
    """``StreamAnswer`` read on the event loop: ``async for`` its chunks; ``close()`` (plain,
    so a cancelled task can call it) ends it and frees the model."""

    _last: ChatChunk | None = None  # the chunk handed out last; None before the first

    def __aiter__(self) -> LoopStreamAnswer:
        return self

    async def __anext__(self) -> ChatChunk:
        if self._last is None:
            self._last = self._first
            return self._first
        try:
            chunk = await self._upstream.__anext__()
        except StopAsyncIteration:
            self._on_finish(self._last)
            self.close()
            raise
        except BackendError as error:
            self._on_failure(error)
            self.close()
            raise
        except BaseException:
            self.close()
            raise
        self._last = chunk
        return chunk

    def ready(self) -> bool:
        """Whether the next chunk is here already (see ``LoopStream.ready``)."""
        return self._last is None or self._upstream.ready()

    def _close_upstream(self) -> None:
        self._upstream.close()


class PumpedStreamAnswer:
    """A blocking member's ``StreamAnswer`` read by a worker thread for the event loop (its
    lease and notes stay with it, in that thread); ``close()`` stops the worker."""

    def __init__(self, stream: StreamAnswer, chunks: Pumped[ChatChunk]) -> None:
        self.requested = stream.requested
        self.route = stream.route
        self.backend = stream.backend
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._chunks

    def ready(self) -> bool:
        return self._chunks.ready()

    def close(self) -> None:
        self._chunks.close()


OpenStream = LoopStreamAnswer | PumpedStreamAnswer  # what open_stream_async gives


@dataclass(frozen=True)
class ModelState:
    """A served model as ``/health`` shows it."""

    id: str
    backend: str
    engine: str
    state: str  # "unloaded", "loading", "ready", "failed"
    detail: str | None = None  # the failure, when the last load failed


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
    running: int = 0  # requests it is answering now
    waiting: int = 0  # requests in line for one of its max_concurrent slots


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
    ok: bool | None  # None: not checked yet (the first check runs one interval after start)
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
    """Every backend factory takes the ``name`` of its ``[backends.NAME]`` table."""
    try:
        return create_backend(kind, name=name, **options)
    except TypeError as error:  # an unknown option: the factory's signature says which
        raise ConfigError(f"[backends.{toml_key(name)}]: {error}; check its keys") from None


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
        self.metrics = GatewayMetrics(self.gauges)
        self._queues = {
            model.id: ModelQueue(model.id, self._queue_limits(model), clock)
            for model in config.served.values()
        }
        self.offload = Offload(self._worker_threads())
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
            watch_load=self._guard_loading,
        )
        self._last_health: list[BackendStatus] = []
        self._runaway = RunawayWatch()
        self._stop = threading.Event()
        self._maintainer: threading.Thread | None = None
        self.guard: Guard | None = None

    @classmethod
    def from_config(cls, config: GatewayConfig) -> GatewayService:
        return cls(config, build_backends(config))

    # -- requests ------------------------------------------------------------

    def answer(self, request: Generation, *, private: bool = False) -> Answer:
        """A whole chat or completion from the first route member that gives one."""
        routed = self._route(
            request.model, private, lambda served: self._call(served, request), request.cancel
        )
        return self._answered(request, routed)

    async def answer_async(self, request: Generation, *, private: bool = False) -> Answer:
        """``answer`` on the event loop; cancelling the task cancels the request."""

        async def call(served: ServedModel) -> ChatResponse:
            backend, upstream = self.backends[served.backend], self._for_upstream(request, served)
            if not _on_loop(backend, upstream):
                return await self.offload.run(lambda: self._call(served, request))
            slot = await self._turn_async(served)
            try:
                lease = await self._lease_async(served)
                try:
                    return await backend.answer_on_loop(upstream)
                finally:
                    lease.release()
            finally:
                slot.release()

        routed = await self._route_async(request.model, private, call, request.cancel)
        return self._answered(request, routed)

    def _call(self, served: ServedModel, request: Generation) -> ChatResponse:
        """One member's whole answer, blocking: its turn in line, its lease, the call."""
        backend, upstream = self.backends[served.backend], self._for_upstream(request, served)
        with self._turn(served, request.cancel), self.residency.lease(served):
            if isinstance(upstream, ChatRequest):
                return backend.chat(upstream)
            return backend.complete(upstream)

    def _answered(self, request: Generation, routed: Routed[ChatResponse]) -> Answer:
        usage = routed.result.usage
        self.metrics.tokens(routed.served.id, usage.prompt_tokens, usage.completion_tokens)
        served = routed.served
        return Answer(request.model, served.id, served.backend, routed.result, routed.fallbacks)

    def check_prompt(self, request: Generation, *, private: bool = False) -> None:
        """Refuse at once a prompt no served model of the request can hold.

        A prompt of N bytes is at least N / (the vocabulary's longest token)
        tokens: when that is more than the context of every member, no engine
        could take it, and sending it would only keep one busy (a 5 MB prompt
        to a 512-token model kept an engine busy for an hour). Members yoyu
        cannot size (remote, Ollama) are left to answer for themselves.
        """
        chain = self._chain(request.model, private)
        limits = [self._context_limit(member) for member in chain]
        known = [limit for limit in limits if limit is not None]
        if not chain or len(known) != len(chain):
            return
        size = wire_prompt_bytes(request)
        least_tokens = [-(-size // longest) for _, longest in known]
        if any(tokens <= n_ctx for tokens, (n_ctx, _) in zip(least_tokens, known, strict=True)):
            return
        raise BadRequestError(
            f"the prompt is {size} bytes: at least {least_tokens[0]} tokens for {chain[0].id}, "
            f"whose context holds {known[0][0]}; send less, or serve a model with a larger "
            "context",
            param="messages" if isinstance(request, ChatRequest) else "prompt",
        )

    def _context_limit(self, served: ServedModel) -> tuple[int, int] | None:
        """(context tokens, longest token bytes) of a managed model, when the plan knows."""
        if not served.managed:
            return None
        try:
            sizing = self._sizing(served)
        except YoyuError:
            return None
        if sizing.n_ctx is None or not sizing.longest_token_bytes:
            return None
        return sizing.n_ctx, sizing.longest_token_bytes

    def model_states(self) -> list[ModelState]:
        """Each served model: unloaded, loading, ready or failed (with why), and its engine."""
        return [
            ModelState(
                id=model.id,
                backend=model.backend,
                engine=self.backends[model.backend].engine_kind,
                state=self.residency.state(model) if model.managed else "ready",
                detail=self.residency.last_error(model.id) if model.managed else None,
            )
            for model in self.config.served.values()
        ]

    def open_stream(self, request: Generation, *, private: bool = False) -> StreamAnswer:
        """A streamed answer, opened on the first route member whose first chunk arrives."""
        routed = self._route(
            request.model, private, lambda served: self._open(served, request), request.cancel
        )
        return routed.result

    async def open_stream_async(self, request: Generation, *, private: bool = False) -> OpenStream:
        """``open_stream`` on the event loop; cancelling the task cancels the request."""
        routed = await self._route_async(
            request.model, private, lambda served: self._open_async(served, request),
            request.cancel,
        )  # fmt: skip
        return routed.result

    def embeddings(
        self, model: str, inputs: Sequence[str], *, private: bool = False
    ) -> EmbeddingAnswer:
        """Vectors for ``inputs`` from the first route whose backend can embed."""

        def call(backend: Backend, served: ServedModel) -> EmbeddingResponse:
            return backend.embed(self._upstream(served), list(inputs))

        def call_leased(served: ServedModel) -> EmbeddingResponse:
            with self._turn(served), self.residency.lease(served):
                return call(self.backends[served.backend], served)

        routed = self._route(model, private, call_leased)
        served, response = routed.served, routed.result
        return EmbeddingAnswer(
            model, served.id, served.backend, response.vectors, response.prompt_tokens
        )

    def served_ids(self, name: str, *, private: bool = False) -> list[str]:
        """The served models ``name`` stands for, in the order a request would try them."""
        return [served.id for served in self._chain(name, private)]

    def preload(self, name: str, *, private: bool = False) -> str:
        """Load ``name``'s first member that admission lets in, as a request would (with
        its fallback and privacy), without generating; returns the served model."""
        routed = self._route(name, private, lambda served: self.residency.lease(served).release())
        return routed.served.id

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
            checked = {status.name: status for status in self._last_health}
            return [checked.get(name) or self._unchecked(name) for name in self.backends]
        statuses = []
        for name, backend in self.backends.items():
            result = backend.health()
            if not result.ok:
                self._cooldowns.failed(name)
            self._restart_failing(result.failing_models)
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

    def _unchecked(self, name: str) -> BackendStatus:
        cooling = self._cooldowns.cooling(name)
        return BackendStatus(name, None, "not checked yet", self._remote(name), cooling)

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
        return gauges + self._queue_gauges() + self._engine_gauges()

    def _queue_gauges(self) -> list[Gauge]:
        gauges = []
        for queue in self.queues():
            model = (("model", queue.model),)
            gauges += [
                Gauge("yoyu_queue_running", "Requests a model is answering now.",
                      queue.running, model),
                Gauge("yoyu_queue_waiting", "Requests waiting for a slot of the model.",
                      queue.waiting, model),
                Gauge("yoyu_queue_max_concurrent", "Requests a model answers at once.",
                      queue.max_concurrent, model),
                Gauge("yoyu_queue_max_waiting", "Requests that may wait before a 429.",
                      queue.max_queue, model),
            ]  # fmt: skip
        return gauges

    def _engine_gauges(self) -> list[Gauge]:
        """What engines say of their own load (vLLM's KV pool fill), read at scrape time."""
        gauges = []
        for loaded in self._local_loaded_models():
            sample = read_engine_sample(loaded.metrics_url) if loaded.metrics_url else None
            if sample is None:
                continue
            model = (("model", loaded.id),)
            gauges += [
                Gauge("yoyu_engine_kv_used_ratio", "Share of the engine's KV pool in use.",
                      sample.kv_used_fraction, model),
                Gauge("yoyu_engine_requests_running", "Requests the engine is running.",
                      sample.requests_running, model),
                Gauge("yoyu_engine_requests_waiting", "Requests waiting for KV room.",
                      sample.requests_waiting, model),
            ]  # fmt: skip
        return gauges

    def _local_loaded_models(self) -> list[LoadedModel]:
        """Models the engines on this machine hold; a remote API is not asked at each scrape,
        and a backend that cannot answer just has nothing to report."""
        found: list[LoadedModel] = []
        for backend in self.backends.values():
            if backend.remote:
                continue
            try:
                found += backend.loaded_models()
            except BackendError:
                continue
        return found

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

    def _guard_loading(self) -> contextlib.AbstractContextManager[object]:
        """The guard samples fast while a model loads (nothing to do with the guard off)."""
        return self.guard.loading() if self.guard is not None else contextlib.nullcontext()

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
        self.offload.close()

    def _maintain(self) -> None:
        next_health = time.monotonic() + self.config.server.health_interval_s
        while not self._stop.wait(MAINTENANCE_TICK_S):
            try:
                self.residency.reap()
                self._stop_runaway_engines()
                if time.monotonic() >= next_health:
                    self.health()
                    next_health = time.monotonic() + self.config.server.health_interval_s
            except YoyuError as error:
                log.warning("gateway maintenance: %s", error)
            except Exception:  # a bug; the reaper and health checks must outlive it
                log.exception("gateway maintenance failed; it goes on at the next tick")

    def _stop_runaway_engines(self) -> None:
        """Stop a managed engine that keeps a core busy with no request in flight."""
        in_flight = {info.id: info.in_flight for info in self.residency.snapshot()}
        engines = [
            EngineLoad(loaded.id, loaded.pid, in_flight[loaded.id])
            for backend in self._managed_backends()
            for loaded in backend.loaded_models()
            if loaded.id in in_flight
        ]
        for model_id, share in self._runaway.tick(engines, time.monotonic()):
            log.warning(
                "stopping the engine of %s: %.0f%% of a core for %d s with no request in flight; "
                "the next request loads it again", model_id, 100 * share, BUSY_TICKS,
            )  # fmt: skip
            self.residency.unload(model_id)

    def _restart_failing(self, model_ids: tuple[str, ...]) -> None:
        """Unload (when idle) a model whose engine died or stopped answering: the next
        request loads it anew instead of waiting on an engine that will never answer."""
        for model_id in model_ids:
            if model_id in self.config.served and self.residency.unload(model_id):
                log.warning(
                    "stopped the engine of %s: it died or did not answer its health check; "
                    "the next request loads it again", model_id,
                )  # fmt: skip

    def _managed_backends(self) -> list[Backend]:
        names = {model.backend for model in self.config.served.values() if model.managed}
        return [self.backends[name] for name in names]

    # -- routing ---------------------------------------------------------------

    def _open(self, served: ServedModel, request: Generation) -> StreamAnswer:
        """Lease ``served``, open its stream and wait for the first chunk: a member that
        fails before saying anything can still give way to the next one."""
        backend, upstream = self.backends[served.backend], self._for_upstream(request, served)
        slot = self._turn(served, request.cancel)
        try:
            model_lease = self.residency.lease(served)
        except BaseException:
            slot.release()
            raise
        lease = Lease(served.id, lambda: _release(model_lease, slot))
        try:
            if isinstance(upstream, ChatRequest):
                chunks = backend.stream_chat(upstream)
            else:
                chunks = backend.stream_complete(upstream)
            first = next(iter(chunks), None)
        except BaseException:
            lease.release()
            raise
        first = _first_or_release(first, lease, served)
        return StreamAnswer(request.model, served, first, chunks, lease, *self._notes(served))

    async def _open_async(self, served: ServedModel, request: Generation) -> OpenStream:
        """``_open`` on the event loop: on the loop for a backend that answers there, else
        the blocking ``_open`` and its reading in one worker thread."""
        backend, upstream = self.backends[served.backend], self._for_upstream(request, served)
        if not _on_loop(backend, upstream):
            stream, chunks = await self.offload.pump(lambda: self._open(served, request))
            return PumpedStreamAnswer(stream, chunks)
        slot = await self._turn_async(served)
        try:
            model_lease = await self._lease_async(served)
        except BaseException:
            slot.release()
            raise
        lease = Lease(served.id, lambda: _release(model_lease, slot))
        try:
            upstream_chunks = backend.stream_on_loop(upstream)
            first = await anext(upstream_chunks, None)
        except BaseException:
            lease.release()
            raise
        first = _first_or_release(first, lease, served)
        return LoopStreamAnswer(
            request.model, served, first, upstream_chunks, lease, *self._notes(served)
        )

    def _notes(
        self, served: ServedModel
    ) -> tuple[Callable[[BackendError], None], Callable[[ChatChunk], None]]:
        """What an open stream of ``served`` reports when it fails, and when it finishes."""
        return (
            lambda error: self._record_failure(served, error),
            lambda last: self._count_stream_tokens(served, last),
        )

    async def _turn_async(self, served: ServedModel) -> Slot:
        """``_turn`` for a task: it waits in the same line without a thread."""
        try:
            slot = await self._queues[served.id].enter_async(
                timeout_s=self.config.server.request_timeout_s
            )
        except QueueFullError:
            self.metrics.queue_rejected(served.id)
            raise
        self.metrics.queue_wait(served.id, slot.waited_s)
        return slot

    async def _lease_async(self, served: ServedModel) -> Lease:
        """The lease at once when the model is loaded; a load (or waiting on one) runs in
        a worker thread, and a lease that arrives after its client left is given back."""
        lease = self.residency.lease_now(served)
        if lease is not None:
            return lease
        return await self.offload.run_owned(
            lambda: self.residency.lease(served), lambda late: late.release()
        )

    def _turn(self, served: ServedModel, cancel: Cancellation | None = None) -> Slot:
        """A slot of ``served``'s queue, waiting in line when it is busy; a full line
        raises QueueFullError, which moves the request on to the route's next member."""
        try:
            slot = self._queues[served.id].enter(
                timeout_s=self.config.server.request_timeout_s, cancel=cancel
            )
        except QueueFullError:
            self.metrics.queue_rejected(served.id)
            raise
        self.metrics.queue_wait(served.id, slot.waited_s)
        return slot

    def _worker_threads(self) -> int:
        """Enough threads for every request the models' lines admit (a blocking member call
        holds one while it runs or waits) and a few for the rest, so no request waits
        unseen in the pool's own queue: the lines are the only place a request waits."""
        held = sum(queue.limits.max_concurrent + queue.limits.max_queue
                   for queue in self._queues.values())  # fmt: skip
        return held + SPARE_WORKER_THREADS

    def queues(self) -> list[QueueStats]:
        """Every served model's queue: running, waiting, limits, refusals."""
        return [queue.stats() for queue in self._queues.values()]

    def _queue_limits(self, model: ServedModel) -> QueueLimits:
        """A served model's own limits, else the server's, else by where it runs."""
        server = self.config.server
        concurrent = model.max_concurrent
        if concurrent is None:
            concurrent = server.max_concurrent
        if concurrent is None:
            remote = self._remote(model.backend)
            concurrent = DEFAULT_MAX_CONCURRENT_REMOTE if remote else DEFAULT_MAX_CONCURRENT_LOCAL
        queue = model.max_queue if model.max_queue is not None else server.max_queue
        return QueueLimits(max_concurrent=concurrent, max_queue=queue)

    def _count_stream_tokens(self, served: ServedModel, last: ChatChunk) -> None:
        if last.usage is not None:
            usage = last.usage
            self.metrics.tokens(served.id, usage.prompt_tokens, usage.completion_tokens)

    def _route(
        self,
        name: str,
        private: bool,
        call: Callable[[ServedModel], T],
        cancel: Cancellation | None = None,
    ) -> Routed[T]:
        """Call the members of ``name``'s chain in order; the first answer wins.

        Connection errors, 5xx, timeouts and admission refusals move on to the
        next member; a 4xx is the caller's and is raised, and so is a
        cancellation: nobody waits for another member's answer.
        """
        walk = _RouteWalk(self, name, cancel)
        for served in self._chain(name, private):
            try:
                result = call(served)
            except _MEMBER_FAILURES as error:
                walk.failed(served, error)
                continue
            return walk.answered(served, result)
        raise walk.exhausted()

    async def _route_async(
        self,
        name: str,
        private: bool,
        call: Callable[[ServedModel], Awaitable[T]],
        cancel: Cancellation | None = None,
    ) -> Routed[T]:
        """``_route`` for calls on the event loop, by the same rules (``_RouteWalk``)."""
        walk = _RouteWalk(self, name, cancel)
        for served in self._chain(name, private):
            try:
                result = await call(served)
            except _MEMBER_FAILURES as error:
                walk.failed(served, error)
                continue
            return walk.answered(served, result)
        raise walk.exhausted()

    def _chain(self, name: str, private: bool) -> list[ServedModel]:
        """The served models to try for ``name``: local ones only when private, those
        whose backend is cooling down last."""
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
        return [self.config.served[member] for member in chain]

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

    def sizing(self, model_id: str) -> Sizing:
        """What admission sizes a served model at (read-only; the dashboard shows it)."""
        if model_id not in self.config.served:
            raise UnknownModelError(f"model {model_id!r} is not served here")
        return self._sizing(self.config.served[model_id])

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

    def _for_upstream(self, request: Generation, served: ServedModel) -> Generation:
        return dataclasses.replace(request, model=self._upstream(served))

    def _remote(self, backend_name: str) -> bool:
        return self.backends[backend_name].remote

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
        queue = self._queues[model.id].stats()
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
            running=queue.running,
            waiting=queue.waiting,
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


def _on_loop(backend: Backend, request: Generation) -> TypeGuard[LoopGeneration]:
    """Whether ``backend`` answers ``request`` on the event loop (else: a worker thread)."""
    return isinstance(backend, LoopGeneration) and backend.answers_on_loop(request)


def _falls_back(error: YoyuError) -> bool:
    """Engine trouble moves on; a request the engine refused as malformed does not."""
    if isinstance(error, BackendRequestError):
        status = error.status_code
        return status is None or status >= 500 or status in _RETRYABLE_STATUS
    return isinstance(error, (AdmissionError, QueueFullError, BackendError))


def _first_or_release(first: ChatChunk | None, lease: Lease, served: ServedModel) -> ChatChunk:
    """A stream's first chunk; a stream that ended before one frees its model and fails."""
    if first is None:
        lease.release()
        raise BackendCrashedError(f"{served.backend} sent an empty stream")
    return first


def _release(lease: Lease, slot: Slot) -> None:
    """A stream's hold on its model: the lease first (the model may unload), then the slot
    (the next request in line may start)."""
    try:
        lease.release()
    finally:
        slot.release()


def _no_route(name: str, failures: Sequence[tuple[str, YoyuError]]) -> YoyuError:
    if len(failures) == 1:
        return failures[0][1]
    reasons = "; ".join(f"{member}: {error}" for member, error in failures)
    causes = tuple(error for _, error in failures)
    return NoRouteError(f"every route for {name!r} failed: {reasons}", causes=causes)


def _close(chunks: Iterator[ChatChunk]) -> None:
    close = getattr(chunks, "close", None)
    if callable(close):
        try:
            close()
        except ValueError:  # still running in a worker thread (a client left mid-stream)
            log.debug("stream still running while closed; it ends with its request")
