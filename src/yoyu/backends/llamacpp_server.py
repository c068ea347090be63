"""The managed llama.cpp backend: yoyu starts the engine, owns it, and stops it.

Each loaded model is one child process serving the OpenAI API on a free
127.0.0.1 port: llama-cpp-python's server by default, or a ``llama-server``
binary when one is configured or found on PATH (``llamacpp_flags`` turns the
load settings into its command line; ``llamacpp_requests`` shapes each
request for the engine that runs it).

Ports: yoyu picks a free port, and if the engine still finds it taken
("address already in use": another process bound it in between) the load is
retried on a fresh port, up to ``port_attempts`` times. A fixed port is a
picker that always returns it with ``port_attempts=1``; then a taken port is
a BackendStartError. Readiness means ``/v1/models`` lists our model id, so a
stranger already listening on the port is never mistaken for our engine.

Each engine's log goes to ``<log_dir>/<model id>-<port>.log``; the buffer
sizes llama.cpp prints while loading are parsed from it into
``LoadedModel.buffers``. For a streamed answer llama-cpp-python reports no
prompt token count, so it is read from the engine's own timing lines in the
log (``prompt eval time = ... / N tokens``) when exactly one request ran.

Embeddings: the engine serves ``/v1/embeddings`` only for a model loaded
with the setting ``embedding = true`` (llama-cpp-python ``--embedding``,
llama-server ``--embeddings``). In llama-cpp-python 0.3.x such a model still
generates, but every prompt token becomes an output (a larger output buffer
and slower prefill) and its context runs with ``kv_unified``, so embedding is
a load choice, not a default; ``embed`` on another model is a 400.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import psutil

from yoyu.backends.engine_process import (
    EngineExitedError,
    EngineNotReadyError,
    EngineProcess,
    describe_returncode,
)
from yoyu.backends.llamacpp_flags import LlamaCppEngine as LlamaCppEngine  # the engine choice
from yoyu.backends.llamacpp_flags import choose_engine, engine_environment
from yoyu.backends.llamacpp_flags import find_engine as find_engine
from yoyu.backends.llamacpp_flags import python_engine as python_engine
from yoyu.backends.llamacpp_log import (
    engine_complaint,
    with_log_timings,
    with_log_usage,
)
from yoyu.backends.llamacpp_requests import (
    chat_for_engine,
    completion_for_engine,
    whole_from_stream,
)
from yoyu.backends.openai_http import HttpTimeouts, OpenAIHttpClient, whole_answer
from yoyu.backends.ports import LOOPBACK, free_loopback_port
from yoyu.backends.protocol import (
    BackendHealth,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingResponse,
    LoadedModel,
    LoopStream,
    ModelInfo,
    ModelRef,
)
from yoyu.backends.vllm_engine import VLLM_KIND, VllmEngine, is_model_folder, vllm_engine
from yoyu.errors import (
    BackendCrashedError,
    BackendError,
    BackendRequestError,
    BackendStartError,
    BackendUnavailableError,
)
from yoyu.i18n import Message
from yoyu.paths import data_dir

T = TypeVar("T")
DEFAULT_START_TIMEOUT_S = 180.0
DEFAULT_STOP_GRACE_S = 10.0
HEALTH_PROBE_S = 5.0  # an engine that cannot list its model in this long is not answering
READY_PROBE_S = 2.0  # one poll of a starting engine: a slow answer is "not yet"
_DEATH_WAIT_S = 1.0
_ADDRESS_IN_USE = re.compile(r"address already in use|couldn't bind|bind.*failed", re.IGNORECASE)


@dataclass
class _Running:
    """A loaded model: its record, its process and the client that talks to it."""

    loaded: LoadedModel
    process: EngineProcess
    client: OpenAIHttpClient
    model_path: Path
    tree: tuple[int, ...] = ()  # the engine's processes once ready (vLLM: three of them)


class LlamaCppServerBackend:
    """Managed llama.cpp: one child server per loaded model. Thread-safe.

    Implements ``yoyu.backends.protocol.Backend``; see that module for the
    blocking behaviour and the errors each method raises.
    """

    remote = False  # the engines run on this machine, on 127.0.0.1

    def __init__(
        self,
        *,
        name: str = "llama.cpp",
        engine: LlamaCppEngine | VllmEngine | str | None = None,
        server_binary: str | None = None,
        log_dir: Path | str | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        port_picker: Callable[[], int] = free_loopback_port,
        port_attempts: int = 3,
        timeouts: HttpTimeouts | None = None,
    ) -> None:
        self.name = name
        # [backends.X] engine = "llama-server" | "llama-cpp-python", server_binary = PATH
        self.engine: LlamaCppEngine | VllmEngine
        if isinstance(engine, (LlamaCppEngine, VllmEngine)):
            self.engine = engine
        elif engine == VLLM_KIND and server_binary is None:
            self.engine = vllm_engine()
        else:
            self.engine = choose_engine(engine, server_binary)
        self.log_dir = Path(log_dir).expanduser() if log_dir else data_dir() / "engine-logs"
        self.start_timeout_s = max(start_timeout_s, getattr(self.engine, "start_timeout_s", 0.0))
        self.stop_grace_s = stop_grace_s
        self._port_picker = port_picker
        self._port_attempts = max(1, port_attempts)
        self._timeouts = timeouts or HttpTimeouts()
        self._running: dict[str, _Running] = {}
        # Engines still loading: their memory already counts (a guard must see a load
        # that blows up before it is ready), but they answer nothing yet.
        self._starting: dict[int, EngineProcess] = {}
        self._lock = threading.Lock()  # guards _running and _starting; dict access only
        self._load_lock = threading.Lock()  # one load at a time: loads compete for memory
        # A safety net: engines outlive an interpreter that forgot close() (not a SIGKILL).
        atexit.register(_close_if_alive, weakref.ref(self))

    @property
    def engine_kind(self) -> str:
        return self.engine.kind

    # -- lifecycle ---------------------------------------------------------

    def load(self, model: ModelRef, settings: Mapping[str, object]) -> LoadedModel:
        with self._load_lock:
            self._forget_dead()
            with self._lock:
                existing = self._running.get(model.id)
            if existing is not None:
                return _same_load_or_raise(existing, model, settings)
            model_path = _model_path(model)
            running = self._start_with_port_retries(model, model_path, settings)
            with self._lock:
                self._running[model.id] = running
            return running.loaded

    def unload(self, model_id: str) -> None:
        with self._lock:
            running = self._running.pop(model_id, None)
        if running is not None:
            _shut_down(running, self.stop_grace_s)

    def close(self) -> None:
        with self._lock:
            model_ids = list(self._running)
        for model_id in model_ids:
            self.unload(model_id)

    def loaded_models(self) -> list[LoadedModel]:
        self._forget_dead()
        with self._lock:
            return [running.loaded for running in self._running.values()]

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(m.id, self.name, loaded=True) for m in self.loaded_models()]

    def pids(self) -> list[int]:
        self._forget_dead()
        with self._lock:
            roots = [running.process.pid for running in self._running.values()]
            roots += list(self._starting)
        return [pid for root in roots for pid in _process_tree(root)]

    def health(self) -> BackendHealth:
        """Every engine probed (a stopped or wedged one times out in ``HEALTH_PROBE_S``)."""
        started = time.perf_counter()
        with self._lock:
            running = list(self._running.values())
        problems: dict[str, str] = {}
        for each in running:
            if not each.process.is_alive():
                problems[each.loaded.id] = f"engine for {each.loaded.id} exited"
                continue
            try:
                each.client.list_model_ids(timeout_s=HEALTH_PROBE_S)
            except BackendError as exc:
                if self._still_running(each):
                    problems[each.loaded.id] = str(exc)
        if problems:
            return BackendHealth(False, "; ".join(problems.values()), None, tuple(problems))
        detail = f"{len(running)} model(s) loaded" if running else "no model loaded"
        return BackendHealth(True, detail, time.perf_counter() - started)

    def _still_running(self, running: _Running) -> bool:
        """False once ``running`` was unloaded (by a request or the guard, while a health
        probe was out): its failure is then no engine's trouble."""
        with self._lock:
            return self._running.get(running.loaded.id) is running

    # -- requests ----------------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResponse:
        if whole_from_stream(self.engine.kind, request.extra):
            return whole_answer(self.stream_chat(request), "chat", request.model)
        running = self._get(request.model)
        shaped = chat_for_engine(request, self.engine.kind, _named_format(running))
        log_start = running.process.log_size()
        response = self._guard(running, lambda: running.client.chat(shaped))
        return with_log_timings(response, running.process.log_text(log_start))

    def complete(self, request: CompletionRequest) -> ChatResponse:
        if whole_from_stream(self.engine.kind, request.extra):
            return whole_answer(self.stream_complete(request), "completion", request.model)
        shaped = completion_for_engine(request, self.engine.kind)
        running = self._get(request.model)
        log_start = running.process.log_size()
        response = self._guard(running, lambda: running.client.complete(shaped))
        return with_log_timings(response, running.process.log_text(log_start))

    def stream_chat(self, request: ChatRequest) -> Iterator[ChatChunk]:
        running = self._get(request.model)
        shaped = chat_for_engine(request, self.engine.kind, _named_format(running))
        return self._stream(running, lambda: running.client.stream_chat(shaped))

    def stream_complete(self, request: CompletionRequest) -> Iterator[ChatChunk]:
        shaped = completion_for_engine(request, self.engine.kind)
        running = self._get(request.model)
        return self._stream(running, lambda: running.client.stream_complete(shaped))

    # -- on the gateway's event loop ---------------------------------------------
    # The same shaping, log reading and death checks as above; only the waiting differs.

    def answers_on_loop(self, request: ChatRequest | CompletionRequest) -> bool:
        return True  # every engine it starts listens on 127.0.0.1

    async def answer_on_loop(self, request: ChatRequest | CompletionRequest) -> ChatResponse:
        kind: Literal["chat", "completion"] = (
            "chat" if isinstance(request, ChatRequest) else "completion"
        )
        if whole_from_stream(self.engine.kind, request.extra):
            stream = self.stream_on_loop(request)
            try:
                chunks = [chunk async for chunk in stream]
            finally:
                stream.close()
            return whole_answer(chunks, kind, request.model)
        running, shaped = self._shaped(request)
        log_start = running.process.log_size()
        try:
            if isinstance(shaped, ChatRequest):
                response = await running.client.chat_on_loop(shaped)
            else:
                response = await running.client.complete_on_loop(shaped)
        except BackendError as exc:
            raise await asyncio.to_thread(self._explain_death, running, exc) from exc
        return with_log_timings(response, running.process.log_text(log_start))

    def stream_on_loop(self, request: ChatRequest | CompletionRequest) -> LoopStream:
        running, shaped = self._shaped(request)
        if isinstance(shaped, ChatRequest):
            return _WatchedLoopStream(self, running, running.client.stream_chat_on_loop(shaped))
        return _WatchedLoopStream(self, running, running.client.stream_complete_on_loop(shaped))

    def _shaped(
        self, request: ChatRequest | CompletionRequest
    ) -> tuple[_Running, ChatRequest | CompletionRequest]:
        """The model's engine, and the request as that engine takes it."""
        if isinstance(request, ChatRequest):
            running = self._get(request.model)
            return running, chat_for_engine(request, self.engine.kind, _named_format(running))
        shaped = completion_for_engine(request, self.engine.kind)
        return self._get(request.model), shaped

    def embed(self, model: str, inputs: Sequence[str]) -> EmbeddingResponse:
        running = self._get(model)
        if not running.loaded.settings.get("embedding"):
            raise BackendRequestError(
                f"model {model!r} was not loaded for embeddings; load it with the setting "
                "embedding = true to serve /v1/embeddings",
                status_code=400,
            )
        if self.engine.kind == "llama-server":
            return self._guard(running, lambda: running.client.embed(model, inputs))
        # llama-cpp-python 0.3.x misplaces the per-token vectors of every input after the
        # first in a batch (``Llama.embed``: ``pos += size``, not ``size * n_embd``), so
        # each input is sent alone.
        parts = [self._embed_one(running, model, text) for text in inputs]
        return _joined_embeddings(model, parts)

    # -- internals ---------------------------------------------------------

    def _embed_one(self, running: _Running, model: str, text: str) -> EmbeddingResponse:
        return self._guard(running, lambda: running.client.embed(model, [text]))

    def _start_with_port_retries(
        self, model: ModelRef, model_path: Path, settings: Mapping[str, object]
    ) -> _Running:
        for attempt in range(1, self._port_attempts + 1):
            try:
                return self._start(model, model_path, settings)
            except _PortTakenError as taken:
                if attempt == self._port_attempts:
                    raise taken.error from None
        raise AssertionError("unreachable: the last attempt raises")

    def _start(self, model: ModelRef, model_path: Path, settings: Mapping[str, object]) -> _Running:
        if self.engine.kind == VLLM_KIND and is_model_folder(model_path.parent):
            model_path = model_path.parent  # a weights file of a folder: vLLM loads the folder
        if self.engine.kind == VLLM_KIND and not is_model_folder(model_path):
            raise BackendStartError(
                f"vLLM loads a Hugging Face folder (config.json and safetensors), not "
                f"{model_path}; give the model's folder"
            )
        port = self._port_picker()
        argv = self.engine.argv(model, model_path, port, settings)
        log_path = self.log_dir / f"{_safe_name(model.id)}-{port}.log"
        process = EngineProcess(argv, log_path=log_path, env=engine_environment())
        client = OpenAIHttpClient(
            f"http://{LOOPBACK}:{port}/v1",
            label=f"{self.engine.kind} ({model.id})",
            timeouts=self._timeouts,
        )
        with self._lock:
            self._starting[process.pid] = process
        try:
            ready = functools.partial(_serves, client, model.id)
            load_s = process.wait_until_ready(ready, self.start_timeout_s)
        except (EngineExitedError, EngineNotReadyError) as exc:
            client.close()
            raise self._start_failure(process, model, model_path, port, exc) from None
        finally:
            with self._lock:
                self._starting.pop(process.pid, None)
        loaded = LoadedModel(
            id=model.id,
            backend=self.name,
            base_url=client.base_url,
            settings=dict(settings),
            pid=process.pid,
            load_s=load_s,
            buffers=self.engine.reported_buffers(process.log_text(), port),
            size_bytes=_size_bytes(model_path),
            log_path=log_path,
            metrics_url=self.engine.metrics_url(port),
        )
        return _Running(loaded, process, client, model_path, tuple(_process_tree(process.pid)))

    def _start_failure(
        self,
        process: EngineProcess,
        model: ModelRef,
        model_path: Path,
        port: int,
        exc: EngineExitedError | EngineNotReadyError,
    ) -> BackendError | _PortTakenError:
        process.stop(self.stop_grace_s)
        tail = process.log_tail()
        what: str | Message = str(exc)
        if isinstance(exc, EngineExitedError):
            what = Message(
                "exited ({code}) before it was ready",
                {"code": describe_returncode(exc.returncode)},
            )
        address = f"{LOOPBACK}:{port}"
        text = Message(
            "{engine} could not serve {path} on {address}: {what}; "
            "engine said: {complaint} (full log: {log})",
            {
                "engine": self.engine.kind, "path": model_path, "address": address,
                "what": what, "complaint": engine_complaint(tail), "log": process.log_path,
            },
        )  # fmt: skip
        error = BackendStartError(text, log_tail=tail, log_path=str(process.log_path))
        if _ADDRESS_IN_USE.search(tail):
            return _PortTakenError(error)
        return error

    def _get(self, model_id: str) -> _Running:
        with self._lock:
            running = self._running.get(model_id)
            loaded = ", ".join(self._running) or "none"
        if running is None:
            raise BackendUnavailableError(
                f"model {model_id!r} is not loaded in llama.cpp (loaded: {loaded}); load it first"
            )
        returncode = running.process.poll()
        if returncode is not None:
            self._forget(model_id, running)
            raise BackendUnavailableError(_died_message(running, returncode, "since it loaded"))
        return running

    def _guard(self, running: _Running, call: Callable[[], T]) -> T:
        try:
            return call()
        except BackendError as exc:
            raise self._explain_death(running, exc) from exc

    def _stream(
        self, running: _Running, open_stream: Callable[[], Generator[ChatChunk, None, None]]
    ) -> Iterator[ChatChunk]:
        watch = _StreamWatch(self, running)
        stream = open_stream()
        try:
            for chunk in stream:
                if (passed := watch.passed(chunk)) is not None:
                    yield passed
        except BackendError as exc:
            raise self._explain_death(running, exc) from exc
        finally:
            stream.close()
        yield from watch.ending()

    def _explain_death(self, running: _Running, exc: BackendError) -> BackendError:
        """When the engine died, say so (with its exit status) instead of a socket error."""
        # A dropped connection usually means a dying engine: give it a moment to be reaped.
        lost_connection = isinstance(exc, (BackendCrashedError, BackendUnavailableError))
        returncode = running.process.wait_exited(_DEATH_WAIT_S if lost_connection else 0)
        if returncode is None:
            return self._engine_died(running) or exc
        self._forget(running.loaded.id, running)
        return BackendCrashedError(_died_message(running, returncode, "while answering"))

    def _engine_died(self, running: _Running) -> BackendCrashedError | None:
        """vLLM outlives its engine: when the EngineCore or a Worker dies, the API server
        ends the streams it was serving with finish_reason "stop" (measured: a Worker
        SIGKILLed mid-answer; its /health still says 200 for tens of ms after) and then
        exits. A process of the tree it had when ready that is gone says so at once; the
        rest is stopped here (the error is returned), and the next request starts it again."""
        if self.engine.kind != VLLM_KIND or all(map(_alive, running.tree)):
            return None
        self._forget(running.loaded.id, running)
        return BackendCrashedError(
            f"vllm's engine for {running.loaded.id} died while answering (its answer was cut "
            f"short); it was stopped and the next request starts it again "
            f"(log: {running.process.log_path})"
        )

    def _forget_dead(self) -> None:
        with self._lock:
            dead = [(k, r) for k, r in self._running.items() if not r.process.is_alive()]
        for model_id, running in dead:
            self._forget(model_id, running)

    def _forget(self, model_id: str, running: _Running) -> None:
        with self._lock:
            if self._running.get(model_id) is running:
                del self._running[model_id]
        _shut_down(running, grace_s=0)


class _StreamWatch:
    """What the backend does to each chunk of a stream, whichever loop reads it: the prompt
    count from the engine's log when the engine sent none (llama-cpp-python), and vLLM's
    finish (and what follows) held until its engine is known alive."""

    def __init__(self, backend: LlamaCppServerBackend, running: _Running) -> None:
        self._backend = backend
        self._running = running
        self._log_start = running.process.log_size()
        self._held: list[ChatChunk] = []

    def passed(self, chunk: ChatChunk) -> ChatChunk | None:
        """The chunk to send on now, or ``None`` when it is held for the ending."""
        if chunk.usage is not None and chunk.usage.prompt_tokens is None:
            chunk = with_log_usage(chunk, self._running.process.log_text(self._log_start))
        if self._backend.engine.kind == VLLM_KIND and (self._held or chunk.finish_reason):
            self._held.append(chunk)
            return None
        return chunk

    @property
    def holding(self) -> bool:
        """Chunks are held (vLLM's ending): the next is sent only once the stream ends."""
        return bool(self._held)

    def ending(self) -> list[ChatChunk]:
        """The held chunks once the stream ended; raises when the engine died meanwhile."""
        if self._held and (died := self._backend._engine_died(self._running)) is not None:
            raise died
        return self._held


class _WatchedLoopStream:
    """An engine's stream on the event loop, through the same ``_StreamWatch``."""

    def __init__(
        self, backend: LlamaCppServerBackend, running: _Running, upstream: LoopStream
    ) -> None:
        self._backend = backend
        self._running = running
        self._upstream = upstream
        self._watch = _StreamWatch(backend, running)
        self._ending: list[ChatChunk] | None = None

    def __aiter__(self) -> _WatchedLoopStream:
        return self

    async def __anext__(self) -> ChatChunk:
        while self._ending is None:
            try:
                chunk = await self._upstream.__anext__()
            except StopAsyncIteration:
                self._ending = self._watch.ending()
                break
            except BackendError as exc:
                explain = self._backend._explain_death
                raise await asyncio.to_thread(explain, self._running, exc) from exc
            if (passed := self._watch.passed(chunk)) is not None:
                return passed
        if self._ending:
            return self._ending.pop(0)
        raise StopAsyncIteration

    def ready(self) -> bool:
        if self._ending is not None:
            return bool(self._ending)
        return self._upstream.ready() and not self._watch.holding

    def close(self) -> None:
        self._upstream.close()


def _joined_embeddings(model: str, parts: Sequence[EmbeddingResponse]) -> EmbeddingResponse:
    counts = [part.prompt_tokens for part in parts]
    return EmbeddingResponse(
        model=parts[0].model if parts else model,
        vectors=tuple(vector for part in parts for vector in part.vectors),
        prompt_tokens=None if None in counts else sum(c or 0 for c in counts),
        elapsed_s=sum(part.elapsed_s for part in parts),
    )


def _close_if_alive(backend_ref: weakref.ref[LlamaCppServerBackend]) -> None:
    backend = backend_ref()
    if backend is not None:
        backend.close()


class _PortTakenError(Exception):
    """A start failed only because the port was taken; retry elsewhere."""

    def __init__(self, error: BackendStartError) -> None:
        super().__init__(str(error))
        self.error = error


def _serves(client: OpenAIHttpClient, model_id: str) -> bool:
    """Ready means: our model id is listed. A stranger on the port is not us.

    Asked through the engine's own loopback client: a fresh ``httpx.get`` builds a TLS
    context each time (21 ms of CPU here), on every poll of every load.
    """
    try:
        return model_id in client.list_model_ids(timeout_s=READY_PROBE_S)
    except BackendError:
        return False


def _alive(pid: int) -> bool:
    """Running and not a zombie (a dead child its parent has not reaped yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _named_format(running: _Running) -> str | None:
    """The named chat format the engine was started with (None: the file's template)."""
    chat_format = running.loaded.settings.get("chat_format")
    return chat_format if isinstance(chat_format, str) else None


def _shut_down(running: _Running, grace_s: float) -> None:
    running.client.close()
    running.process.stop(grace_s)


def _same_load_or_raise(
    existing: _Running, model: ModelRef, settings: Mapping[str, object]
) -> LoadedModel:
    if (
        dict(settings) == dict(existing.loaded.settings)
        and _model_path(model) == existing.model_path
    ):
        return existing.loaded
    raise BackendError(
        f"model {model.id!r} is already loaded from {existing.model_path} with other settings; "
        "unload it first"
    )


def _model_path(model: ModelRef) -> Path:
    if model.path is None:
        raise BackendStartError(
            f"the managed llama.cpp backend needs a GGUF file for {model.id!r}; give its path"
        )
    if not model.path.is_file() and not is_model_folder(model.path):
        raise BackendStartError.from_message(
            "model file {path} does not exist; check the path", path=model.path
        )
    return model.path


def _size_bytes(model_path: Path) -> int:
    """A file's size, or the sum of a model folder's files."""
    if model_path.is_file():
        return model_path.stat().st_size
    return sum(path.stat().st_size for path in model_path.rglob("*") if path.is_file())


def _died_message(running: _Running, returncode: int, when: str) -> str:
    complaint = engine_complaint(running.process.log_tail())
    return (
        f"llama.cpp engine for {running.loaded.id!r} (pid {running.process.pid}) died {when} "
        f"with {describe_returncode(returncode)}{_lost_nodes(running.loaded.settings)}; "
        f"engine said: {complaint} (full log: {running.process.log_path})"
    )


def _lost_nodes(settings: Mapping[str, object]) -> str:
    """Which of the model's RPC nodes no longer answer: llama-server aborts on the
    first failed RPC call without naming the server, so yoyu asks each one."""
    endpoints = settings.get("rpc") or []
    if not isinstance(endpoints, (list, tuple)):
        return ""
    lost = [str(endpoint) for endpoint in endpoints if not _accepts(str(endpoint))]
    return f" after losing node {', '.join(lost)}" if lost else ""


def _accepts(endpoint: str) -> bool:
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def _process_tree(root_pid: int) -> list[int]:
    try:
        root = psutil.Process(root_pid)
        return [root_pid] + [child.pid for child in root.children(recursive=True)]
    except psutil.Error:
        return []


def _safe_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[:80] or "model"
