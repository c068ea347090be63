"""A fake Ollama server: real HTTP on 127.0.0.1, Ollama's documented answers.

The Ollama binary cannot run in tests, so this replays its protocol. Shapes
and field names are those of ollama/ollama ``docs/api.md`` (commit
01e52d24bc00defcd9bcc6d995b11df0f08bc6f1): ``/api/chat`` and
``/api/generate`` (NDJSON chunks with ``done: false``, a final object with
``done_reason``, ``total_duration``, ``load_duration``,
``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count``,
``eval_duration`` in nanoseconds; empty ``messages`` loads, plus
``keep_alive: 0`` unloads, answering ``done_reason`` ``"load"``/``"unload"``),
``/api/tags`` and ``/api/ps`` (``name``, ``model``, ``size``, ``digest``,
``details``, ``expires_at``, ``size_vram``), ``/api/show``, ``/api/embed``
(``embeddings``, ``prompt_eval_count``), ``/api/pull`` (NDJSON ``pulling manifest``,
``pulling <digest>`` lines with ``digest``, ``total``, ``completed``, then
``verifying sha256 digest``, ``writing manifest``, ``success``; a model the
registry does not have gets ``{"error": "pull model manifest: file does not
exist"}`` after ``pulling manifest``, as Ollama sends it). Errors are ``{"error": "..."}``
with the status, or a line of that shape mid-stream under the 200 already
sent (docs.ollama.com ``api/errors``); ``/api/version`` answers
``{"version": "0.12.6"}``. As Ollama does, a request whose runner options
(``num_ctx``, ``num_gpu``...) differ from the loaded model's reloads it,
which the fake counts in ``reloads``.

Controls, all thread-safe: ``install``, ``pullable`` (a model the registry has;
a pull installs it), ``reply``, ``fail_next`` (an error
status), ``error_mid_stream_after`` (an error line after N chunks),
``die_mid_stream_after`` (the connection is cut after N chunks),
``linger_polls`` (an unloaded model stays in ``/api/ps`` for N more polls);
``requests`` records every request received.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SHUTDOWN_POLL_S = 0.02  # how often serve_forever looks for shutdown(): a stop takes this long

VERSION = "0.12.6"
CREATED_AT = "2024-09-12T21:17:29.110811Z"
EXPIRES_AT = "2024-06-04T14:38:31.83753-07:00"
RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap")
EMBEDDING_DIMENSIONS = 8
_TOKEN_NS = 10_000_000  # 10 ms per generated token
_PROMPT_TOKEN_NS = 1_000_000
_KV_BYTES_PER_CTX = 4096
_PARAMS_LAYER_BYTES = 96  # the small params layer a pulled model has beside its weights
PULL_UNKNOWN_ERROR = "pull model manifest: file does not exist"


@dataclass
class FakeModel:
    """An installed model; ``size`` is its blob size in bytes."""

    name: str
    size: int = 2_019_393_189
    family: str = "llama"
    parameter_size: str = "3.2B"
    quantization_level: str = "Q4_K_M"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


@dataclass
class Resident:
    """A loaded model and the runner options it was loaded with."""

    model: FakeModel
    options: dict[str, Any]
    keep_alive: Any = None

    @property
    def size(self) -> int:
        return self.model.size + int(self.options.get("num_ctx", 2048)) * _KV_BYTES_PER_CTX

    @property
    def size_vram(self) -> int:
        return 0 if self.options.get("num_gpu") == 0 else self.size


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class _Faults:
    fail_status: int | None = None
    fail_message: str = ""
    fail_path: str | None = None
    error_after: int | None = None
    die_after: int | None = None


@dataclass
class _State:
    installed: dict[str, FakeModel] = field(default_factory=dict)
    pullable: dict[str, FakeModel] = field(default_factory=dict)  # the registry's models
    loaded: dict[str, Resident] = field(default_factory=dict)
    linger: dict[str, int] = field(default_factory=dict)  # name -> polls to stay after unload
    unloading: dict[str, int] = field(default_factory=dict)  # name -> /api/ps polls left
    reply: str = "Hello from the fake Ollama server."
    requests: list[RecordedRequest] = field(default_factory=list)
    reloads: int = 0
    faults: _Faults = field(default_factory=_Faults)


def full_name(model: str) -> str:
    """``llama3.2`` -> ``llama3.2:latest``, as Ollama names models."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


class FakeOllama:
    """Start with ``with FakeOllama() as fake:``; ``fake.base_url`` is its address."""

    def __init__(self) -> None:
        self._state = _State()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL_S,), daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeOllama:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- controls ----------------------------------------------------------

    def install(self, name: str, **fields: Any) -> FakeModel:
        model = FakeModel(full_name(name), **fields)
        with self._lock:
            self._state.installed[model.name] = model
        return model

    def pullable(self, name: str, **fields: Any) -> FakeModel:
        """A model ``/api/pull`` can download (its layers add up to ``size``)."""
        model = FakeModel(full_name(name), **fields)
        with self._lock:
            self._state.pullable[model.name] = model
        return model

    def reply(self, text: str) -> None:
        """What every model answers; one word (with its space) per token."""
        with self._lock:
            self._state.reply = text

    def fail_next(self, status: int, message: str, path: str | None = None) -> None:
        """The next request (to ``path``, if given) answers ``status``, ``{"error": message}``."""
        with self._lock:
            self._state.faults = _Faults(fail_status=status, fail_message=message, fail_path=path)

    def error_mid_stream_after(self, chunks: int) -> None:
        with self._lock:
            self._state.faults = _Faults(error_after=chunks)

    def die_mid_stream_after(self, chunks: int) -> None:
        with self._lock:
            self._state.faults = _Faults(die_after=chunks)

    def linger_polls(self, name: str, polls: int) -> None:
        """After its next unload, ``name`` stays listed by ``/api/ps`` for ``polls`` polls."""
        with self._lock:
            self._state.linger[full_name(name)] = polls

    # -- what happened -----------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    @property
    def loaded(self) -> dict[str, Resident]:
        with self._lock:
            return dict(self._state.loaded)

    @property
    def reloads(self) -> int:
        with self._lock:
            return self._state.reloads

    # -- the server's side (called from handler threads) --------------------

    def _record(self, request: RecordedRequest) -> _Faults | None:
        """Record ``request``; return the fault it triggers, consumed."""
        with self._lock:
            self._state.requests.append(request)
            faults = self._state.faults
            if faults.fail_status is not None and faults.fail_path not in (None, request.path):
                return None
            if faults == _Faults():
                return None
            self._state.faults = _Faults()
            return faults

    def _model(self, name: str) -> FakeModel | None:
        with self._lock:
            return self._state.installed.get(full_name(name))

    def _pullable(self, name: str) -> FakeModel | None:
        with self._lock:
            return self._state.pullable.get(full_name(name))

    def _finish_pull(self, model: FakeModel) -> None:
        with self._lock:
            self._state.installed[model.name] = model

    def _ensure_loaded(self, model: FakeModel, body: dict[str, Any]) -> None:
        options = {k: v for k, v in (body.get("options") or {}).items() if k in RUNNER_OPTIONS}
        with self._lock:
            current = self._state.loaded.get(model.name)
            if current is not None and current.options != options:
                self._state.reloads += 1
            self._state.loaded[model.name] = Resident(model, options, body.get("keep_alive"))
            self._state.unloading.pop(model.name, None)

    def _unload(self, model: FakeModel) -> None:
        with self._lock:
            polls = self._state.linger.pop(model.name, 0)
            if polls > 0 and model.name in self._state.loaded:
                self._state.unloading[model.name] = polls
            else:
                self._state.loaded.pop(model.name, None)

    def _ps(self) -> list[dict[str, Any]]:
        """Loaded models; one that is unloading is listed for its remaining polls."""
        with self._lock:
            entries = [_ps_entry(resident) for resident in self._state.loaded.values()]
            for name, polls in list(self._state.unloading.items()):
                if polls <= 1:
                    del self._state.unloading[name]
                    self._state.loaded.pop(name, None)
                else:
                    self._state.unloading[name] = polls - 1
            return entries

    def _tags(self) -> list[dict[str, Any]]:
        with self._lock:
            models = list(self._state.installed.values())
        return [_tag_entry(model) for model in models]

    def _tokens(self, limit: int | None) -> tuple[list[str], str]:
        with self._lock:
            words = self._state.reply.split(" ")
        tokens = [word if i == 0 else " " + word for i, word in enumerate(words)]
        if limit is not None and limit < len(tokens):
            return tokens[:limit], "length"
        return tokens, "stop"


def _ps_entry(resident: Resident) -> dict[str, Any]:
    return {
        "name": resident.model.name,
        "model": resident.model.name,
        "size": resident.size,
        "digest": resident.model.digest,
        "details": resident.model.details(),
        "expires_at": EXPIRES_AT,
        "size_vram": resident.size_vram,
    }


def _tag_entry(model: FakeModel) -> dict[str, Any]:
    details = model.details()
    details.pop("parent_model")
    details["families"] = None
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": "2023-11-04T14:56:49.277302595-07:00",
        "size": model.size,
        "digest": model.digest,
        "details": details,
    }


def _final_stats(prompt_tokens: int, eval_count: int) -> dict[str, Any]:
    prompt_ns = prompt_tokens * _PROMPT_TOKEN_NS
    eval_ns = eval_count * _TOKEN_NS
    return {
        "total_duration": prompt_ns + eval_ns + 1_334_875,
        "load_duration": 1_334_875,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": eval_count,
        "eval_duration": eval_ns,
    }


def _prompt_tokens(body: dict[str, Any]) -> int:
    if "prompt" in body:
        return len(str(body["prompt"]).split())
    return sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 255 - 0.5, 6) for byte in digest[:EMBEDDING_DIMENSIONS]]


def _handler_for(fake: FakeOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(_OllamaHandler):
        server_fake = fake

    return Handler


class _OllamaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeOllama

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``requests`` instead."""

    def do_GET(self) -> None:
        self._dispatch(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            self._send(400, {"error": f"invalid character: {exc}"}, record_body=raw.decode())
            return
        self._dispatch(body)

    def _send(self, status: int, payload: Any, record_body: Any = None) -> None:
        if record_body is not None:
            self.server_fake._record(RecordedRequest("POST", self.path, record_body, {}))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, body: dict[str, Any] | None) -> None:
        fake = self.server_fake
        record = RecordedRequest(self.command, self.path, body, dict(self.headers.items()))
        faults = fake._record(record)
        if faults is not None and faults.fail_status is not None:
            self._send(faults.fail_status, {"error": faults.fail_message})
            return
        routes: dict[tuple[str, str], Callable[[], None]] = {
            ("GET", "/api/version"): lambda: self._send(200, {"version": VERSION}),
            ("GET", "/api/tags"): lambda: self._send(200, {"models": fake._tags()}),
            ("GET", "/api/ps"): self._ps,
            ("POST", "/api/show"): lambda: self._show(body or {}),
            ("POST", "/api/embed"): lambda: self._embed(body or {}),
            ("POST", "/api/chat"): lambda: self._generate(body or {}, "chat", faults),
            ("POST", "/api/generate"): lambda: self._generate(body or {}, "generate", faults),
            ("POST", "/api/pull"): lambda: self._pull(body or {}, faults),
        }
        route = routes.get((self.command, self.path))
        if route is None:
            self._send(404, {"error": "404 page not found"})
            return
        route()

    def _ps(self) -> None:
        self._send(200, {"models": self.server_fake._ps()})

    def _known(self, body: dict[str, Any]) -> FakeModel | None:
        name = str(body.get("model", ""))
        if not name:
            self._send(400, {"error": "model is required"})
            return None
        model = self.server_fake._model(name)
        if model is None:
            self._send(404, {"error": f"model '{name}' not found"})
        return model

    def _show(self, body: dict[str, Any]) -> None:
        model = self._known(body)
        if model is None:
            return
        info = {"general.architecture": model.family, "llama.context_length": 131072}
        self._send(
            200,
            {
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model.name}\n',
                "parameters": 'stop "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": model.details(),
                "model_info": info,
            },
        )

    def _embed(self, body: dict[str, Any]) -> None:
        model = self._known(body)
        if model is None:
            return
        self.server_fake._ensure_loaded(model, body)
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        count = sum(len(str(text).split()) for text in texts)
        payload = {
            "model": model.name,
            "embeddings": [_vector(str(text)) for text in texts],
            "total_duration": 14_143_917,
            "load_duration": 1_019_500,
            "prompt_eval_count": count,
        }
        self._send(200, payload)

    def _generate(self, body: dict[str, Any], kind: str, faults: _Faults | None) -> None:
        model = self._known(body)
        if model is None:
            return
        fake = self.server_fake
        head = {"model": model.name, "created_at": CREATED_AT}
        empty = (
            "messages" in body and not body["messages"]
            if kind == "chat"
            else not body.get("prompt")
        )
        if empty:
            self._load_or_unload(model, body, kind, head)
            return
        fake._ensure_loaded(model, body)
        limit = (body.get("options") or {}).get("num_predict")
        tokens, reason = fake._tokens(int(limit) if limit is not None else None)
        final = head | {"done_reason": reason, "done": True}
        final |= _final_stats(_prompt_tokens(body), len(tokens))
        if body.get("stream", True):
            self._stream(head, kind, tokens, final, faults)
            return
        self._send(200, _with_text(final, kind, "".join(tokens)))

    def _pull(self, body: dict[str, Any], faults: _Faults | None) -> None:
        """Ollama's pull stream; the model is installed once ``success`` is sent."""
        fake = self.server_fake
        model = fake._pullable(str(body.get("model", "")))
        lines = _pull_lines(model)
        if not body.get("stream", True):
            last = list(lines)[-1]
            self._send(500 if "error" in last else 200, last)
        else:
            self._stream_lines(lines, faults)
        if model is not None and faults is None:
            fake._finish_pull(model)

    def _load_or_unload(
        self, model: FakeModel, body: dict[str, Any], kind: str, head: dict[str, Any]
    ) -> None:
        fake = self.server_fake
        if body.get("keep_alive") in (0, "0", "0s"):
            fake._unload(model)
            reason = "unload"
        else:
            fake._ensure_loaded(model, body)
            reason = "load"
        self._send(200, _with_text(head | {"done_reason": reason, "done": True}, kind, ""))

    def _stream(
        self,
        head: dict[str, Any],
        kind: str,
        tokens: list[str],
        final: dict[str, Any],
        faults: _Faults | None,
    ) -> None:
        self._stream_lines(_lines(head, kind, tokens, final), faults)

    def _stream_lines(self, lines: Iterator[dict[str, Any]], faults: _Faults | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, line in enumerate(lines):
            if faults is not None and faults.die_after == index:
                self.close_connection = True
                self.connection.shutdown(2)  # cut mid-body: no terminating chunk
                return
            if faults is not None and faults.error_after == index:
                line = {"error": "an error was encountered while running the model"}
                self._write_chunk(json.dumps(line).encode() + b"\n")
                break
            self._write_chunk(json.dumps(line).encode() + b"\n")
        self._write_chunk(b"")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _with_text(payload: dict[str, Any], kind: str, text: str) -> dict[str, Any]:
    if kind == "chat":
        return payload | {"message": {"role": "assistant", "content": text}}
    return payload | {"response": text}


def _lines(
    head: dict[str, Any], kind: str, tokens: list[str], final: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    for token in tokens:
        yield _with_text(head | {"done": False}, kind, token)
    yield _with_text(final, kind, "")


def _pull_lines(model: FakeModel | None) -> Iterator[dict[str, Any]]:
    """``/api/pull``'s lines: each layer without ``completed``, half done, done."""
    yield {"status": "pulling manifest"}
    if model is None:
        yield {"error": PULL_UNKNOWN_ERROR}
        return
    weights = model.size - _PARAMS_LAYER_BYTES
    for digest, total in ((model.digest, weights), (model.digest[::-1], _PARAMS_LAYER_BYTES)):
        status = {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": total}
        yield status
        yield status | {"completed": total // 2}
        yield status | {"completed": total}
    yield from ({"status": s} for s in ("verifying sha256 digest", "writing manifest", "success"))
