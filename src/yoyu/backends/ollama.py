"""An Ollama daemon over its native HTTP API (``docs/api.md`` in ollama/ollama).

Ollama keeps its own model store and decides itself when a model is in
memory, so this adapter asks rather than assumes: ``/api/tags`` lists what
is installed, ``/api/ps`` what is loaded and how much of it sits on GPUs
(``size``, ``size_vram``), ``/api/version`` answers health checks.

Loading is a chat request with no messages and a ``keep_alive``; unloading
the same with ``keep_alive: 0``, after which ``/api/ps`` is polled until the
model is gone, so "unloaded" means the memory is back. Load settings are
Ollama's runner options (``num_ctx``, ``num_gpu``...; llama.cpp's names
``n_ctx``, ``n_gpu_layers``, ``n_batch``, ``n_threads`` are translated) plus
``keep_alive``. They are sent again with every request for that model:
Ollama reloads a model whose request options differ from the loaded ones,
and a request without them would quietly reload it with the defaults.

``pull`` downloads a model (``/api/pull``), reporting Ollama's progress lines
as ``PullProgress``. Answers are NDJSON when streamed; an error after the stream has started
arrives as a line ``{"error": "..."}`` under a 200 status (docs.ollama.com
``api/errors``). Durations are nanoseconds; they become ``EngineTimings``.
HTTP and its failures go through ``OpenAIHttpClient``'s generic half, so the
error mapping is the one every backend shares.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from yoyu.backends.openai_http import HttpTimeouts, OpenAIHttpClient, is_loopback_url
from yoyu.backends.protocol import (
    BackendHealth,
    ChatChunk,
    ChatMessage,
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
    BackendTimeoutError,
    SettingsError,
)
from yoyu.machine.runtimes import ollama_base_url

DEFAULT_UNLOAD_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.05
_NS_PER_MS = 1_000_000

# Runner options a load may set (Ollama's api/types.go Runner), and llama.cpp's names for them.
RUNNER_OPTIONS = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap", "low_vram", "numa"}
)
_LLAMA_NAMES = {"n_ctx": "num_ctx", "n_gpu_layers": "num_gpu", "n_batch": "num_batch"}
_LLAMA_NAMES |= {"n_threads": "num_thread"}
# Request fields that are options in Ollama but top-level in OpenAI's API.
_SAMPLING_OPTIONS = frozenset(
    {"top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "presence_penalty",
     "frequency_penalty", "num_keep", "mirostat", "mirostat_tau", "mirostat_eta"}
)  # fmt: skip


@dataclass(frozen=True)
class PullProgress:
    """One status line of ``/api/pull``: ``pulling manifest``, ``pulling <digest>`` (with
    ``digest``, ``total`` and, once bytes arrived, ``completed``), ``verifying sha256 digest``,
    ``writing manifest``, ``success``."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


@dataclass(frozen=True)
class PullResult:
    """A finished pull; ``total_bytes`` sums each layer's ``total`` once, to be compared
    with the size ``/api/tags`` then lists."""

    model: str
    total_bytes: int


class OllamaBackend:
    """One Ollama server. Thread-safe; implements ``yoyu.backends.protocol.Backend``.

    Requests are translated to Ollama's native API (``ollama_message``: the
    ``developer`` role as ``system``, tool calls and results in Ollama's
    shape) and answers back (tool calls as OpenAI's deltas).
    """

    engine_kind = "ollama"

    def __init__(
        self,
        *,
        name: str = "ollama",
        base_url: str | None = None,
        keep_alive: str | int | None = None,
        remote: bool | None = None,
        unload_timeout_s: float = DEFAULT_UNLOAD_TIMEOUT_S,
        connect_timeout_s: float | None = None,
        read_timeout_s: float | None = None,
        timeouts: HttpTimeouts | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url or ollama_base_url(os.environ if environ is None else environ)
        self.base_url = self.base_url.rstrip("/")
        self.remote = (not is_loopback_url(self.base_url)) if remote is None else remote
        self.keep_alive = keep_alive
        self.unload_timeout_s = unload_timeout_s
        base = timeouts or HttpTimeouts()
        self._client = OpenAIHttpClient(
            self.base_url,
            label=f"Ollama at {self.base_url}",
            timeouts=HttpTimeouts(
                connect_s=base.connect_s if connect_timeout_s is None else connect_timeout_s,
                read_s=base.read_s if read_timeout_s is None else read_timeout_s,
                write_s=base.write_s,
                pool_s=base.pool_s,
            ),
            transport=transport,
        )
        self._lock = threading.Lock()
        self._settings: dict[str, dict[str, object]] = {}  # Ollama name -> load settings

    # -- models ------------------------------------------------------------

    def health(self) -> BackendHealth:
        started = time.perf_counter()
        try:
            body = self._client.get_json("/api/version")
        except BackendError as exc:
            return BackendHealth(False, str(exc))
        version = body.get("version") if isinstance(body, dict) else None
        if not isinstance(version, str):
            return BackendHealth(False, f"{self.base_url}/api/version did not answer like Ollama")
        return BackendHealth(True, f"Ollama {version}", time.perf_counter() - started)

    def list_models(self) -> list[ModelInfo]:
        """Installed models (``/api/tags``), marked loaded when ``/api/ps`` lists them."""
        loaded = {entry["name"] for entry in self._ps()}
        return [
            ModelInfo(entry["name"], self.name, entry["name"] in loaded, _int(entry.get("size")))
            for entry in self._entries("/api/tags")
        ]

    def loaded_models(self) -> list[LoadedModel]:
        return [self._loaded_model(entry["name"], entry) for entry in self._ps()]

    def show(self, model_id: str) -> dict[str, Any]:
        """``/api/show``: details, parameters, template and ``model_info`` (GGUF keys)."""
        body = self._client.post_json("/api/show", {"model": model_id})
        return body if isinstance(body, dict) else {}

    def load(self, model: ModelRef, settings: Mapping[str, object]) -> LoadedModel:
        """Ask Ollama to load ``model.id`` with ``settings``; blocks until it is resident."""
        name = ollama_name(model.id)
        load_settings = _load_settings(settings)
        body: dict[str, object] = {"model": model.id, "messages": [], "stream": False}
        body |= self._runner_fields(load_settings)
        started = time.perf_counter()
        try:
            self._client.post_json("/api/chat", body)
        except BackendError as exc:
            raise BackendStartError(f"Ollama could not load {model.id!r}: {exc}") from exc
        load_s = time.perf_counter() - started
        with self._lock:
            self._settings[name] = load_settings
        entry = next((e for e in self._ps() if e["name"] == name), None)
        if entry is None:
            raise BackendStartError(
                f"Ollama answered the load of {model.id!r} but /api/ps does not list it; "
                "check the Ollama server's log"
            )
        return self._loaded_model(model.id, entry, load_s)

    def unload(self, model_id: str) -> None:
        """``keep_alive: 0``, then wait until ``/api/ps`` no longer lists the model."""
        name = ollama_name(model_id)
        with self._lock:
            self._settings.pop(name, None)
        if not self._is_loaded(name):
            return
        self._client.post_json("/api/chat", {"model": model_id, "messages": [], "keep_alive": 0})
        deadline = time.monotonic() + self.unload_timeout_s
        while self._is_loaded(name):
            if time.monotonic() >= deadline:
                raise BackendTimeoutError(
                    f"Ollama still lists {model_id!r} in /api/ps {self.unload_timeout_s:g} s "
                    "after unloading it; check the Ollama server's log"
                )
            time.sleep(_POLL_INTERVAL_S)

    def pull(
        self, name: str, on_progress: Callable[[PullProgress], None] | None = None
    ) -> PullResult:
        """Download ``name`` into Ollama's store, ``on_progress`` called for every status line.

        Raises BackendRequestError with Ollama's message on an ``{"error": ...}`` line
        (an unknown model), BackendCrashedError when the stream ends before ``success``.
        """
        layers: dict[str, int] = {}
        lines = self._client.stream_lines("/api/pull", {"model": name, "stream": True})
        try:
            for line in lines:
                if not line.strip():
                    continue
                progress = _pull_progress(_line_payload(line, self._client.label))
                if progress.digest is not None and progress.total is not None:
                    layers[progress.digest] = progress.total
                if on_progress is not None:
                    on_progress(progress)
                if progress.status == "success":
                    return PullResult(name, sum(layers.values()))
        finally:
            lines.close()
        raise BackendCrashedError(
            f"{self._client.label} ended the pull of {name!r} before success; "
            "run it again (Ollama resumes) or check the Ollama server's log"
        )

    def pids(self) -> list[int]:
        """Ollama's runner processes are the daemon's, not ours to attribute."""
        return []

    def close(self) -> None:
        self._client.close()

    # -- requests ----------------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResponse:
        started = time.perf_counter()
        payload = self._client.post_json("/api/chat", self._chat_body(request, stream=False))
        _raise_for_error_line(payload, self._client.label)
        return _response(payload, "chat", time.perf_counter() - started)

    def stream_chat(self, request: ChatRequest) -> Iterator[ChatChunk]:
        return self._stream("/api/chat", self._chat_body(request, stream=True), "chat")

    def complete(self, request: CompletionRequest) -> ChatResponse:
        started = time.perf_counter()
        body = self._generate_body(request, stream=False)
        payload = self._client.post_json("/api/generate", body)
        _raise_for_error_line(payload, self._client.label)
        return _response(payload, "generate", time.perf_counter() - started)

    def stream_complete(self, request: CompletionRequest) -> Iterator[ChatChunk]:
        return self._stream("/api/generate", self._generate_body(request, stream=True), "generate")

    def embed(self, model: str, inputs: Sequence[str]) -> EmbeddingResponse:
        started = time.perf_counter()
        body: dict[str, object] = {"model": model, "input": list(inputs)}
        body |= self._runner_fields(self._settings_for(model))
        payload = self._client.post_json("/api/embed", body)
        _raise_for_error_line(payload, self._client.label)
        vectors = payload.get("embeddings") if isinstance(payload, dict) else None
        if not isinstance(vectors, list):
            raise BackendRequestError(
                f"{self._client.label} answered /api/embed without embeddings"
            )
        return EmbeddingResponse(
            model=str(payload.get("model", model)),
            vectors=tuple(tuple(float(x) for x in vector) for vector in vectors),
            prompt_tokens=_int(payload.get("prompt_eval_count")),
            elapsed_s=time.perf_counter() - started,
        )

    # -- internals ---------------------------------------------------------

    def _chat_body(self, request: ChatRequest, *, stream: bool) -> dict[str, object]:
        messages = [ollama_message(message) for message in request.messages]
        body: dict[str, object] = {"model": request.model, "messages": messages}
        return self._request_body(body, request, stream)

    def _generate_body(self, request: CompletionRequest, *, stream: bool) -> dict[str, object]:
        # A plain completion has no chat template: ``raw`` keeps Ollama from applying one.
        body: dict[str, object] = {"model": request.model, "prompt": request.prompt, "raw": True}
        return self._request_body(body, request, stream)

    def _request_body(
        self, body: dict[str, object], request: ChatRequest | CompletionRequest, stream: bool
    ) -> dict[str, object]:
        runner = self._runner_fields(self._settings_for(request.model))
        options = dict(_as_dict(runner.pop("options", {})))
        options |= _sampling_options(request)
        extra = dict(request.extra)
        n = extra.pop("n", None)
        if isinstance(n, int) and n > 1:
            raise BackendRequestError(
                f"n={n}: Ollama gives one choice per request; send {n} requests",
                status_code=400,
                param="n",
            )
        extra.pop("stream_options", None)  # OpenAI's; Ollama reports usage on its done line
        options |= {key: extra.pop(key) for key in list(extra) if key in _SAMPLING_OPTIONS}
        body |= runner | extra | {"stream": stream}
        if options:
            body["options"] = options
        return body

    def _runner_fields(self, settings: Mapping[str, object]) -> dict[str, object]:
        """``options`` and ``keep_alive`` as a load set them, for every later request."""
        fields: dict[str, object] = {}
        options = {key: value for key, value in settings.items() if key != "keep_alive"}
        if options:
            fields["options"] = options
        keep_alive = settings.get("keep_alive", self.keep_alive)
        if keep_alive is not None:
            fields["keep_alive"] = keep_alive
        return fields

    def _settings_for(self, model_id: str) -> dict[str, object]:
        with self._lock:
            return dict(self._settings.get(ollama_name(model_id), {}))

    def _stream(self, path: str, body: Mapping[str, object], kind: str) -> Iterator[ChatChunk]:
        started = time.perf_counter()
        lines = self._client.stream_lines(path, body)
        try:
            yield from ndjson_chunks(lines, kind, started, self._client.label)
        finally:
            lines.close()

    def _entries(self, path: str) -> list[dict[str, Any]]:
        body = self._client.get_json(path)
        models = body.get("models") if isinstance(body, dict) else None
        entries = models if isinstance(models, list) else []
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]

    def _ps(self) -> list[dict[str, Any]]:
        return self._entries("/api/ps")

    def _is_loaded(self, name: str) -> bool:
        return any(entry["name"] == name for entry in self._ps())

    def _loaded_model(
        self, model_id: str, entry: Mapping[str, Any], load_s: float | None = None
    ) -> LoadedModel:
        return LoadedModel(
            id=model_id,
            backend=self.name,
            base_url=self.base_url,
            settings=self._settings_for(model_id),
            load_s=load_s,
            size_bytes=_int(entry.get("size")),
            vram_bytes=_int(entry.get("size_vram")),
        )


def ollama_name(model_id: str) -> str:
    """The name Ollama lists a model by: ``llama3.2`` is ``llama3.2:latest``."""
    last = model_id.rsplit("/", 1)[-1]
    return model_id if ":" in last else f"{model_id}:latest"


def _load_settings(settings: Mapping[str, object]) -> dict[str, object]:
    """Ollama's runner options from ``settings``, llama.cpp's names translated."""
    translated: dict[str, object] = {}
    for key, value in settings.items():
        option = _LLAMA_NAMES.get(key, key)
        if key == "n_gpu_layers" and value == -1:
            value = 999  # Ollama caps num_gpu at the model's layer count
        if option != "keep_alive" and option not in RUNNER_OPTIONS:
            known = ", ".join(sorted(RUNNER_OPTIONS | set(_LLAMA_NAMES) | {"keep_alive"}))
            raise SettingsError(f"Ollama has no load setting {key!r}; use one of {known}")
        translated[option] = value
    return translated


def _sampling_options(request: ChatRequest | CompletionRequest) -> dict[str, object]:
    options = {
        "num_predict": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": list(request.stop) or None,
    }
    return {key: value for key, value in options.items() if value is not None}


def ndjson_chunks(
    lines: Iterator[str] | Generator[str, None, None], kind: str, started: float, label: str
) -> Iterator[ChatChunk]:
    """Ollama's streamed lines as chunks; the ``done`` line closes with usage and timings.

    Raises BackendRequestError on an ``{"error": ...}`` line and
    BackendCrashedError when the lines stop before ``done``.
    """
    for line in lines:
        if not line.strip():
            continue
        payload = _line_payload(line, label)
        t_s = time.perf_counter() - started
        if payload.get("done"):
            yield ChatChunk(
                None, t_s, payload.get("done_reason"), _usage(payload), _timings(payload)
            )
            return
        yield ChatChunk(_content(payload, kind), t_s, tool_calls=_tool_call_deltas(payload))
    raise BackendCrashedError(f"{label} ended its stream before the done line; check its log")


def _line_payload(line: str, label: str) -> dict[str, Any]:
    try:
        payload = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BackendRequestError(f"{label} sent a line that is not JSON: {line[:300]!r}") from exc
    if not isinstance(payload, dict):
        raise BackendRequestError(f"{label} sent a stream line that is not an object")
    _raise_for_error_line(payload, label)
    return payload


def _pull_progress(payload: Mapping[str, Any]) -> PullProgress:
    digest = payload.get("digest")
    return PullProgress(
        status=str(payload.get("status", "")),
        digest=digest if isinstance(digest, str) and digest else None,
        total=_int(payload.get("total")),
        completed=_int(payload.get("completed")),
    )


def _raise_for_error_line(payload: Any, label: str) -> None:
    """Ollama's errors are ``{"error": "message"}``, even in the middle of a 200 stream."""
    if isinstance(payload, dict) and payload.get("error"):
        raise BackendRequestError(f"{label} reported an error: {str(payload['error'])[:300]}")


def _response(payload: Mapping[str, Any], kind: str, elapsed_s: float) -> ChatResponse:
    return ChatResponse(
        id="",
        model=str(payload.get("model", "")),
        text=_content(payload, kind) or "",
        finish_reason=payload.get("done_reason"),
        usage=_usage(payload),
        elapsed_s=elapsed_s,
        engine_timings=_timings(payload),
        raw=dict(payload),
        tool_calls=_tool_call_deltas(payload),
    )


_OLLAMA_ROLES = {"developer": "system"}  # Ollama knows system, user, assistant, tool


def ollama_message(message: ChatMessage) -> dict[str, object]:
    """An OpenAI message as Ollama's ``/api/chat`` takes it: text content, tool calls with
    their arguments as an object (OpenAI sends a JSON string), the tool's name on results."""
    body: dict[str, object] = {
        "role": _OLLAMA_ROLES.get(message.role, message.role),
        "content": message.text,
    }
    calls = message.extra.get("tool_calls")
    if isinstance(calls, list):
        body["tool_calls"] = [_ollama_tool_call(call) for call in calls if isinstance(call, dict)]
    name = message.extra.get("name")
    if message.role == "tool" and isinstance(name, str):
        body["tool_name"] = name
    return body


def _ollama_tool_call(call: Mapping[str, Any]) -> dict[str, object]:
    function = call.get("function") or {}
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            arguments = {"_raw": arguments}  # passed on for the model to see, not lost
    name = function.get("name") if isinstance(function, dict) else None
    return {"function": {"name": name, "arguments": arguments or {}}}


def _tool_call_deltas(payload: Mapping[str, Any]) -> tuple[dict[str, object], ...]:
    """Ollama's tool calls (whole, arguments as an object) as OpenAI's, arguments as JSON."""
    calls = (payload.get("message") or {}).get("tool_calls")
    if not isinstance(calls, list):
        return ()
    deltas = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        deltas.append({
            "index": index,
            "id": f"call_{index}_{function.get('name', '')}",
            "type": "function",
            "function": {
                "name": function.get("name", ""),
                "arguments": json.dumps(function.get("arguments") or {}),
            },
        })  # fmt: skip
    return tuple(deltas)


def _content(payload: Mapping[str, Any], kind: str) -> str | None:
    if kind == "generate":
        text = payload.get("response")
    else:
        text = (payload.get("message") or {}).get("content")
    return text if isinstance(text, str) else None


def _usage(payload: Mapping[str, Any]) -> Usage:
    """``prompt_eval_count`` is left out when the whole prompt came from the cache."""
    return Usage(
        prompt_tokens=_int(payload.get("prompt_eval_count")),
        completion_tokens=_int(payload.get("eval_count")) or 0,
    )


def _timings(payload: Mapping[str, Any]) -> EngineTimings | None:
    if "eval_duration" not in payload:
        return None
    return EngineTimings(
        prompt_tokens=_int(payload.get("prompt_eval_count")) or 0,
        prompt_ms=(_int(payload.get("prompt_eval_duration")) or 0) / _NS_PER_MS,
        decode_tokens=_int(payload.get("eval_count")) or 0,
        decode_ms=(_int(payload.get("eval_duration")) or 0) / _NS_PER_MS,
    )


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _as_dict(value: object) -> dict[str, object]:
    return dict(value) if isinstance(value, dict) else {}
