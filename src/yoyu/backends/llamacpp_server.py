"""The managed llama.cpp backend: yoyu starts the engine, owns it, and stops it.

Each loaded model is one child process serving the OpenAI API on a free
127.0.0.1 port: llama-cpp-python's server (``python -m llama_cpp.server``)
by default, or a ``llama-server`` binary when one is configured or found on
PATH. Load settings are llama-cpp-python's ``Llama`` keyword names (what
``yoyu.plan.emit.llama_cpp.llama_cpp_python_kwargs`` produces) whichever
engine runs, plus ``extra_argv`` for flags passed through verbatim.

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

import atexit
import dataclasses
import json
import os
import re
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import httpx
import psutil

from yoyu.backends.engine_process import (
    EngineExitedError,
    EngineNotReadyError,
    EngineProcess,
    describe_returncode,
)
from yoyu.backends.llamacpp_log import parse_buffer_sizes
from yoyu.backends.openai_http import HttpTimeouts, OpenAIHttpClient
from yoyu.backends.ports import LOOPBACK, free_loopback_port
from yoyu.backends.protocol import (
    BackendHealth,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingResponse,
    EngineTimings,
    LoadedModel,
    ModelInfo,
    ModelRef,
    Usage,
)
from yoyu.errors import (
    BackendCrashedError,
    BackendError,
    BackendRequestError,
    BackendStartError,
    BackendUnavailableError,
    SettingsError,
)
from yoyu.paths import data_dir

EngineKind = Literal["llama-cpp-python", "llama-server"]
T = TypeVar("T")
DEFAULT_START_TIMEOUT_S = 180.0
DEFAULT_STOP_GRACE_S = 10.0
_DEATH_WAIT_S = 1.0
_ADDRESS_IN_USE = re.compile(r"address already in use|couldn't bind|bind.*failed", re.IGNORECASE)

# Variables the child inherits. pydantic-settings reads llama-cpp-python's
# settings from the environment (MODEL, PORT, N_CTX... in any case), so the
# parent's environment is filtered, never passed whole.
_INHERITED = {"PATH", "HOME", "USER", "LANG", "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV", "SYSTEMROOT"}
_INHERITED_PREFIXES = ("LC_", "CUDA_", "HIP_", "ROCR_", "GGML_", "LLAMA_", "OMP_", "LD_", "DYLD_")

# ggml.h ``enum ggml_type`` ids of KV cache types (the plan's emitter holds the
# same table; backends may not import plan).
_GGML_TYPE_NAMES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0"}
_GGML_TYPE_NAMES |= {20: "iq4_nl", 30: "bf16"}

# llama-cpp-python's server has no flag for these; it runs with the library's value.
_PYTHON_SERVER_IMPLIED: dict[str, object] = {"swa_full": True, "n_seq_max": 1, "kv_unified": False}
PYTHON_SERVER_MODULE = "yoyu.backends.llamacpp_python_server"  # llama_cpp.server, leak closed
_RESERVED = {"model", "model_alias", "host", "port", "extra_argv"}
# Unless the settings say otherwise. llama-cpp-python's server turns logits_all on, an
# n_ctx x n_vocab float32 array (32 GiB for Gemma 3 at its trained context) that only
# completion logprobs need. llama-server's --fit would change what was planned, its
# 8 GiB prompt cache and 32 checkpoints per slot would hold memory nobody planned, and
# without -np it serves 4 slots from a unified cache.
# The same values as yoyu.estimate's defaults (a test keeps them equal).
_PYTHON_SERVER_DEFAULTS = {"interrupt_requests": False, "verbose": True, "logits_all": False}
_LLAMA_SERVER_DEFAULTS: dict[str, object] = {
    "ctx_checkpoints": 2,
    "cache_ram_mib": 0,
    "n_seq_max": 1,
}
_LLAMA_SERVER_FIXED = ["--fit", "off", "-lv", "4"]  # -lv 4: buffer sizes, never prompts
_LIBRARY_N_BATCH = 512  # Llama's default n_batch
# llama-cpp-python chat_format names -> llama-server's built-in --chat-template names
_LLAMA_SERVER_TEMPLATES = {
    "llama-2": "llama2",
    "llama-3": "llama3",
    "mistral-instruct": "mistral-v1",
}

_LLAMA_SERVER_VALUE_FLAGS = {
    "n_ctx": "-c", "n_batch": "-b", "n_ubatch": "-ub", "n_threads": "-t",
    "n_threads_batch": "-tb", "n_seq_max": "-np", "seed": "-s", "main_gpu": "-mg",
    "ctx_checkpoints": "--ctx-checkpoints", "cache_ram_mib": "--cache-ram",
}  # fmt: skip
_LLAMA_SERVER_SWITCHES = {
    # setting: (flag when the setting differs from llama-server's default, that default)
    "use_mmap": ("--no-mmap", True), "use_mlock": ("--mlock", False),
    "offload_kqv": ("-nkvo", True), "swa_full": ("--swa-full", False),
    "embedding": ("--embeddings", False), "kv_unified": ("--kv-unified", False),
}  # fmt: skip


@dataclass(frozen=True)
class LlamaCppEngine:
    """Which server program runs the models, and how to call it."""

    kind: EngineKind
    executable: str

    def argv(
        self, model: ModelRef, model_path: Path, port: int, settings: Mapping[str, object]
    ) -> list[str]:
        """The full command line for one model on ``port``."""
        _reject_reserved(settings)
        extra = [str(arg) for arg in _as_list(settings.get("extra_argv", []))]
        # Through engine_main, which ends the server if this process dies (see there).
        if self.kind == "llama-server":
            head = [*_watched_by(sys.executable), "--exec", self.executable]
            head += ["-m", str(model_path), "--alias", model.id]
            head += ["--host", LOOPBACK, "--port", str(port)]
            return head + llama_server_flags(settings) + extra
        head = [*_watched_by(self.executable), PYTHON_SERVER_MODULE, "--model", str(model_path)]
        head += ["--model_alias", model.id, "--host", LOOPBACK, "--port", str(port)]
        return head + python_server_flags(settings) + extra


def _watched_by(python: str) -> list[str]:
    return [python, "-m", "yoyu.backends.engine_main", str(os.getpid())]


def find_engine(server_binary: str | None = None) -> LlamaCppEngine:
    """A configured ``llama-server`` first, then one on PATH, then llama-cpp-python's server."""
    if server_binary:
        return LlamaCppEngine("llama-server", server_binary)
    on_path = shutil.which("llama-server")
    if on_path:
        return LlamaCppEngine("llama-server", on_path)
    return python_engine()


def python_engine() -> LlamaCppEngine:
    """llama-cpp-python's server under this interpreter."""
    return LlamaCppEngine("llama-cpp-python", sys.executable)


def python_server_flags(settings: Mapping[str, object]) -> list[str]:
    """``--name value`` for every setting, as llama-cpp-python's argparse expects."""
    flags: list[str] = []
    merged = {**_PYTHON_SERVER_DEFAULTS, "n_outputs_max": _outputs_max(settings), **settings}
    for name, value in merged.items():
        if name in _RESERVED or _implied_by_python_server(name, value):
            continue
        flags += [f"--{name}", *_python_flag_values(value)]
    return flags


def _outputs_max(settings: Mapping[str, object]) -> object:
    """One output per ubatch, unless every token's logits or embedding is wanted
    (the rule of llama-server and of yoyu's plans; see llamacpp_python_server)."""
    if settings.get("logits_all") or settings.get("embedding"):
        return settings.get("n_batch", _LIBRARY_N_BATCH)
    return 1


def _implied_by_python_server(name: str, value: object) -> bool:
    if name not in _PYTHON_SERVER_IMPLIED:
        return False
    if value == _PYTHON_SERVER_IMPLIED[name]:
        return True
    raise SettingsError(
        f"llama-cpp-python's server cannot set {name}={value!r} (it always runs with "
        f"{_PYTHON_SERVER_IMPLIED[name]!r}); configure a llama-server binary for this setting"
    )


def _python_flag_values(value: object) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, dict):
        return [json.dumps(value)]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return [str(value)]


def llama_server_flags(settings: Mapping[str, object]) -> list[str]:
    """llama-server's flags (llama.cpp ``common/arg.cpp``) for ``Llama``-named settings."""
    flags: list[str] = list(_LLAMA_SERVER_FIXED)
    for name, value in {**_LLAMA_SERVER_DEFAULTS, **settings}.items():
        if name in _RESERVED:
            continue
        flags += _llama_server_flag(name, value)
    return flags


def _llama_server_flag(name: str, value: object) -> list[str]:
    if name in _LLAMA_SERVER_VALUE_FLAGS:
        return [_LLAMA_SERVER_VALUE_FLAGS[name], str(value)]
    if name in _LLAMA_SERVER_SWITCHES:
        flag, default = _LLAMA_SERVER_SWITCHES[name]
        return [] if bool(value) == default else [flag]
    if name == "n_gpu_layers":
        return ["-ngl", "all" if value == -1 else str(value)]
    if name in ("type_k", "type_v"):
        return ["-ctk" if name == "type_k" else "-ctv", _ggml_type_name(value)]
    if name == "flash_attn":
        return ["-fa", "on" if value else "off"]
    if name == "chat_format":
        return ["--chat-template", _LLAMA_SERVER_TEMPLATES.get(str(value), str(value))]
    if name == "n_outputs_max":
        return []  # llama-server sets it itself from -np and --embeddings, by the same rule
    if name == "logits_all":
        if value:
            raise SettingsError(
                "llama-server keeps no array of every token's logits; remove logits_all "
                "(it is a llama-cpp-python setting)"
            )
        return []
    if name == "tensor_split":
        return ["-ts", ",".join(f"{float(str(share)):g}" for share in _as_list(value))]
    known = sorted({*_LLAMA_SERVER_VALUE_FLAGS, *_LLAMA_SERVER_SWITCHES, "n_gpu_layers"})
    raise SettingsError(
        f"llama-server has no flag for setting {name!r}; use one of {', '.join(known)}, "
        "type_k, type_v, flash_attn, tensor_split, logits_all (false), or pass it in extra_argv"
    )


def _ggml_type_name(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and value in _GGML_TYPE_NAMES:
        return _GGML_TYPE_NAMES[value]
    raise SettingsError(f"unknown KV cache type {value!r}; use a name such as f16 or q8_0")


def _as_list(value: object) -> list[object]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise SettingsError(f"expected a list of values, got {value!r}")


def _reject_reserved(settings: Mapping[str, object]) -> None:
    clashes = sorted(set(settings) & (_RESERVED - {"extra_argv"}))
    if clashes:
        raise SettingsError(
            f"settings {', '.join(clashes)} are chosen by yoyu (model path, alias, "
            "127.0.0.1 and a free port); remove them"
        )


def engine_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment minus anything the engine would read as a setting."""
    source = os.environ if environ is None else environ
    kept = {
        name: value
        for name, value in source.items()
        if name in _INHERITED or name.startswith(_INHERITED_PREFIXES)
    }
    return {**kept, "PYTHONUNBUFFERED": "1"}


@dataclass
class _Running:
    """A loaded model: its record, its process and the client that talks to it."""

    loaded: LoadedModel
    process: EngineProcess
    client: OpenAIHttpClient
    model_path: Path


class LlamaCppServerBackend:
    """Managed llama.cpp: one child server per loaded model. Thread-safe.

    Implements ``yoyu.backends.protocol.Backend``; see that module for the
    blocking behaviour and the errors each method raises.
    """

    name = "llama.cpp"

    def __init__(
        self,
        *,
        engine: LlamaCppEngine | None = None,
        log_dir: Path | str | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        port_picker: Callable[[], int] = free_loopback_port,
        port_attempts: int = 3,
        timeouts: HttpTimeouts | None = None,
    ) -> None:
        self.engine = engine or find_engine()
        self.log_dir = Path(log_dir).expanduser() if log_dir else data_dir() / "engine-logs"
        self.start_timeout_s = start_timeout_s
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
        started = time.perf_counter()
        with self._lock:
            running = list(self._running.values())
        dead = [r.loaded.id for r in running if not r.process.is_alive()]
        if dead:
            return BackendHealth(False, f"engine for {', '.join(dead)} exited")
        for each in running:
            try:
                each.client.list_model_ids()
            except BackendError as exc:
                return BackendHealth(False, str(exc))
        detail = f"{len(running)} model(s) loaded" if running else "no model loaded"
        return BackendHealth(True, detail, time.perf_counter() - started)

    # -- requests ----------------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResponse:
        running = self._get(request.model)
        log_start = running.process.log_size()
        response = self._guard(running, lambda: running.client.chat(request))
        return _with_log_timings(response, running.process.log_text(log_start))

    def complete(self, request: CompletionRequest) -> ChatResponse:
        running = self._get(request.model)
        log_start = running.process.log_size()
        response = self._guard(running, lambda: running.client.complete(request))
        return _with_log_timings(response, running.process.log_text(log_start))

    def stream_chat(self, request: ChatRequest) -> Iterator[ChatChunk]:
        running = self._get(request.model)
        return self._stream(running, lambda: running.client.stream_chat(request))

    def stream_complete(self, request: CompletionRequest) -> Iterator[ChatChunk]:
        running = self._get(request.model)
        return self._stream(running, lambda: running.client.stream_complete(request))

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
        port = self._port_picker()
        argv = self.engine.argv(model, model_path, port, settings)
        log_path = self.log_dir / f"{_safe_name(model.id)}-{port}.log"
        process = EngineProcess(argv, log_path=log_path, env=engine_environment())
        client = OpenAIHttpClient(
            f"http://{LOOPBACK}:{port}/v1", label=f"llama.cpp ({model.id})", timeouts=self._timeouts
        )
        with self._lock:
            self._starting[process.pid] = process
        try:
            load_s = process.wait_until_ready(lambda: _serves(port, model.id), self.start_timeout_s)
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
            buffers=parse_buffer_sizes(process.log_text()),
            size_bytes=model_path.stat().st_size,
            log_path=log_path,
        )
        return _Running(loaded, process, client, model_path)

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
        what = str(exc)
        if isinstance(exc, EngineExitedError):
            what = f"exited ({describe_returncode(exc.returncode)}) before it was ready"
        message = (
            f"{self.engine.kind} could not serve {model_path} on {LOOPBACK}:{port}: {what}; "
            f"engine said: {engine_complaint(tail)} (full log: {process.log_path})"
        )
        error = BackendStartError(message, log_tail=tail, log_path=str(process.log_path))
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
        log_start = running.process.log_size()
        stream = open_stream()
        try:
            for chunk in stream:
                if chunk.usage is not None and chunk.usage.prompt_tokens is None:
                    chunk = _with_log_usage(chunk, running.process.log_text(log_start))
                yield chunk
        except BackendError as exc:
            raise self._explain_death(running, exc) from exc
        finally:
            stream.close()

    def _explain_death(self, running: _Running, exc: BackendError) -> BackendError:
        """When the engine died, say so (with its exit status) instead of a socket error."""
        # A dropped connection usually means a dying engine: give it a moment to be reaped.
        lost_connection = isinstance(exc, (BackendCrashedError, BackendUnavailableError))
        returncode = running.process.wait_exited(_DEATH_WAIT_S if lost_connection else 0)
        if returncode is None:
            return exc
        self._forget(running.loaded.id, running)
        return BackendCrashedError(_died_message(running, returncode, "while answering"))

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


def _serves(port: int, model_id: str) -> bool:
    """Ready means: our model id is listed. A stranger on the port is not us."""
    try:
        response = httpx.get(f"http://{LOOPBACK}:{port}/v1/models", timeout=2.0)
        ids = [entry.get("id") for entry in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
    return response.status_code == 200 and model_id in ids


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
    if not model.path.is_file():
        raise BackendStartError(f"model file {model.path} does not exist; check the path")
    return model.path


def _died_message(running: _Running, returncode: int, when: str) -> str:
    complaint = engine_complaint(running.process.log_tail())
    return (
        f"llama.cpp engine for {running.loaded.id!r} (pid {running.process.pid}) died {when} "
        f"with {describe_returncode(returncode)}; engine said: {complaint} "
        f"(full log: {running.process.log_path})"
    )


def _process_tree(root_pid: int) -> list[int]:
    try:
        root = psutil.Process(root_pid)
        return [root_pid] + [child.pid for child in root.children(recursive=True)]
    except psutil.Error:
        return []


def _safe_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[:80] or "model"


# -- reading the engine's log ---------------------------------------------

_TRACEBACK_NOISE = re.compile(r"^(\s|Traceback |\^|~|During handling|The above exception)")
_ACCESS_LOG = re.compile(r"^INFO:\s")
_USAGE_LINE = re.compile(r"^usage: |^\s+\[--")
_COMPLAINT_WORDS = re.compile(r"error|invalid|failed|cannot|can't|unable|no such", re.IGNORECASE)
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_COMPLAINT_WINDOW = 8
_MAX_COMPLAINT_CHARS = 300


def engine_complaint(log_text: str) -> str:
    """The engine's own words for what went wrong, on one line.

    The last meaningful line (not a traceback frame, access log or usage
    text), preceded by the first line of the final stretch that names an
    error when that is a different line: llama.cpp's cause ("invalid magic
    characters") comes a few lines before the Python exception it leads to.
    """
    lines = [line.strip() for line in log_text.splitlines() if _is_meaningful(line)]
    if not lines:
        return "(the engine's log is empty)"
    window = lines[-_COMPLAINT_WINDOW:]
    cause = next((line for line in window if _COMPLAINT_WORDS.search(line)), window[-1])
    said = window[-1] if cause == window[-1] else f"{cause} ... {window[-1]}"
    return _PRINTABLE.sub("?", said)[:_MAX_COMPLAINT_CHARS]


def _is_meaningful(line: str) -> bool:
    if not line.strip():
        return False
    return not (_TRACEBACK_NOISE.match(line) or _ACCESS_LOG.match(line) or _USAGE_LINE.match(line))


_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_DECODE_EVAL = re.compile(r"(?<!prompt) eval time =\s*([\d.]+) ms /\s*(\d+) runs")
_PREFIX_HIT = re.compile(r"(\d+) prefix-match hit")


def parse_request_timings(log_text: str) -> EngineTimings | None:
    """llama.cpp's timing lines for one request (``llama_perf_context_print``).

    ``None`` unless the text holds exactly one request's lines: with two
    requests interleaved there is no telling whose figures are whose.
    """
    prompt = _PROMPT_EVAL.findall(log_text)
    decode = _DECODE_EVAL.findall(log_text)
    if len(prompt) != 1 or len(decode) != 1:
        return None
    cached = _PREFIX_HIT.findall(log_text)
    return EngineTimings(
        prompt_tokens=int(prompt[0][1]),
        prompt_ms=float(prompt[0][0]),
        decode_tokens=int(decode[0][1]),
        decode_ms=float(decode[0][0]),
        cached_tokens=int(cached[0]) if len(cached) == 1 else 0,
    )


def _with_log_timings(response: ChatResponse, log_text: str) -> ChatResponse:
    if response.engine_timings is not None:
        return response
    return dataclasses.replace(response, engine_timings=parse_request_timings(log_text))


def _with_log_usage(chunk: ChatChunk, log_text: str) -> ChatChunk:
    timings = chunk.engine_timings or parse_request_timings(log_text)
    if timings is None or chunk.usage is None:
        return chunk
    prompt_tokens = timings.prompt_tokens + timings.cached_tokens
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=chunk.usage.completion_tokens)
    return dataclasses.replace(chunk, usage=usage, engine_timings=timings)
