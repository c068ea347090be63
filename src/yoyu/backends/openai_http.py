"""The one HTTP client for every OpenAI-compatible engine, local or remote.

The managed llama.cpp server, vLLM, LM Studio, exo and remote APIs all speak
the same wire format, so they share this client instead of each adapter
carrying its own copy. It owns three things:

- request bodies from ``ChatRequest``/``CompletionRequest`` and answers
  parsed back into ``ChatResponse``/``ChatChunk``;
- the SSE stream: ``data:`` lines, ``[DONE]``, keep-alive comments, and error
  objects arriving mid-stream (``data: {"error": ...}`` or an ``event: error``);
- translating httpx's exceptions, in one place (``map_http_errors``), into
  ``BackendError`` subclasses whose message names the engine and its address.

Engines with their own JSON API (Ollama) use the same client through its
generic half, ``get_json``/``post_json``/``stream_lines``, so they share the
error mapping instead of copying it. An API key goes out as a Bearer header
only; if an upstream echoes it back in an error, it is masked before the
message leaves this module.

An engine on loopback (``http://127.0.0.1:...``) is reached through
``LoopbackTransport.open`` (``http.client`` connections, without httpx's
Client, Request and Response: less CPU per call on the cores the engine
needs); anything else, through httpx (TLS, proxies). Both give the same
errors, mapped in one place.

``base_url`` ends where the OpenAI paths begin, as in the ``openai`` client:
``http://127.0.0.1:8080/v1``, ``https://openrouter.ai/api/v1``.

A stream always ends with one closing chunk (``content`` ``None``) that holds
the usage: the engine's figures when it sent them (``stream_options``
``include_usage``; llama-server's ``timings``), otherwise completion tokens
counted from the token chunks and prompt tokens left unknown.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import itertools
import json
import logging
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from yoyu.backends.cancellation import Cancellation
from yoyu.backends.loopback_async import AsyncAnswer, AsyncLoopback
from yoyu.backends.loopback_transport import (
    CANCEL_EXTENSION,
    LeanResponse,
    LoopbackTransport,
    Outgoing,
    Timeouts,
)
from yoyu.backends.protocol import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingResponse,
    EngineTimings,
    Usage,
)
from yoyu.errors import (
    BackendCrashedError,
    BackendError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    RequestCancelledError,
)

Kind = Literal["chat", "completion"]
_PATHS: dict[Kind, str] = {"chat": "/chat/completions", "completion": "/completions"}
_DONE = "[DONE]"
_MAX_ERROR_CHARS = 300
_MASK = "***"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpTimeouts:
    """Seconds allowed per phase. ``read_s`` bounds the gap between two bytes,
    not the whole answer, so a long generation is fine while a stalled one is not."""

    connect_s: float = 5.0
    read_s: float = 300.0
    write_s: float = 30.0
    pool_s: float = 30.0

    def as_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_s, read=self.read_s, write=self.write_s, pool=self.pool_s
        )


class _Answer(Protocol):
    """What the status and body checks read: httpx's Response or the loopback's own."""

    @property
    def status_code(self) -> int: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event: its ``event:`` name (``message`` by default) and data."""

    event: str
    data: str


@contextlib.contextmanager
def map_http_errors(label: str, url: str, cancel: Cancellation | None = None) -> Iterator[None]:
    """Turn httpx's transport errors into BackendError subclasses, most specific first;
    any failure of a request that was cancelled is its cancellation."""
    try:
        with _mapped_transport_errors(label, url):
            yield
    except BackendError as exc:
        if cancel is not None and cancel.cancelled:
            raise RequestCancelledError(f"{label}: {cancel.reason}") from exc
        raise


@contextlib.contextmanager
def _mapped_transport_errors(label: str, url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise BackendTimeoutError(
            f"{label} at {url} timed out ({type(exc).__name__}); "
            "raise the timeout or check the engine's load"
        ) from exc
    except httpx.ConnectError as exc:
        raise BackendUnavailableError(
            f"{label} at {url} refused the connection ({exc}); is the engine running?"
        ) from exc
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise BackendCrashedError(
            f"{label} at {url} dropped the connection mid-answer ({exc}); check the engine's log"
        ) from exc
    except httpx.TransportError as exc:
        raise BackendUnavailableError(
            f"{label} at {url} could not be reached ({type(exc).__name__}: {exc})"
        ) from exc


def _cancellable(cancel: Cancellation | None) -> dict[str, Any]:
    """The request extension the loopback transport reads to cut the connection on cancel."""
    return {} if cancel is None else {CANCEL_EXTENSION: cancel}


class OpenAIHttpClient:
    """Blocking client for one OpenAI-compatible base URL; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        *,
        label: str = "engine",
        api_key: str | None = None,
        timeouts: HttpTimeouts | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.label = label
        self._api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if transport is None and is_loopback_url(self.base_url) and base_url.startswith("http:"):
            transport = LoopbackTransport()  # a fifth of httpcore's CPU per local call
        self._timeouts = timeouts or HttpTimeouts()
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=self._timeouts.as_httpx(),
            transport=transport,
        )
        # Calls to loopback skip httpx's Client (see the module's docstring), and may be
        # made on an event loop (``chat_on_loop``, ``stream_on_loop``).
        self._loopback = transport if isinstance(transport, LoopbackTransport) else None
        self._on_loop = AsyncLoopback() if self._loopback is not None else None
        url = httpx.URL(self.base_url)
        self._address = (url.host, url.port or 80)
        self._path_prefix = url.raw_path.decode("ascii").rstrip("/")
        self._headers = list(headers.items())
        self._json_headers = [*self._headers, ("Content-Type", "application/json")]

    def get_json(self, path: str, timeout_s: float | None = None) -> Any:
        """GET ``path`` below the base URL and return its JSON body; ``timeout_s``
        bounds the whole exchange (a probe), instead of the client's phase limits."""
        with self._masked(), map_http_errors(self.label, self.base_url + path), self._while_open():
            response: _Answer
            if self._loopback is not None:
                response = self._lean("GET", path, None, None, timeout_s)
            else:
                timeout = (
                    httpx.Timeout(timeout_s) if timeout_s is not None else httpx.USE_CLIENT_DEFAULT
                )
                response = self._client.get(path, timeout=timeout)
            _raise_for_status(response, self.label, path)
            return _json_body(response, self.label, path)

    def post_json(
        self, path: str, body: Mapping[str, object], cancel: Cancellation | None = None
    ) -> Any:
        """POST ``body`` as JSON to ``path`` and return the JSON answer."""
        with (
            self._masked(),
            map_http_errors(self.label, self.base_url + path, cancel),
            self._while_open(),
        ):
            response: _Answer
            if self._loopback is not None:
                response = self._lean("POST", path, body, cancel)
            else:
                response = self._client.post(path, json=body, extensions=_cancellable(cancel))
            _raise_for_status(response, self.label, path)
            return _json_body(response, self.label, path)

    def stream_lines(
        self, path: str, body: Mapping[str, object], cancel: Cancellation | None = None
    ) -> Generator[str, None, None]:
        """POST ``body`` and yield the answer's lines as they arrive (NDJSON, SSE).

        An error status is raised before the first line; a dropped connection
        surfaces as BackendCrashedError from the iterator, a cancelled request
        as CancelledError.
        """
        with (
            self._masked(),
            map_http_errors(self.label, self.base_url + path, cancel),
            self._while_open(),
            self._opened_stream(path, body, cancel) as response,
        ):
            if response.status_code >= 400:
                response.read()
                _raise_for_status(response, self.label, path)
            yield from response.iter_lines()

    def _opened_stream(
        self, path: str, body: Mapping[str, object], cancel: Cancellation | None
    ) -> contextlib.AbstractContextManager[httpx.Response | LeanResponse]:
        if self._loopback is None:
            return self._client.stream("POST", path, json=body, extensions=_cancellable(cancel))
        return contextlib.closing(self._lean("POST", path, body, cancel))

    def _lean(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None,
        cancel: Cancellation | None,
        timeout_s: float | None = None,
    ) -> LeanResponse:
        """One exchange with an engine on loopback, straight on the transport's connections.
        Reading its body (``json``, ``text``, the error check) gives the connection back."""
        assert self._loopback is not None
        outgoing = self._outgoing(method, path, body)
        response = self._loopback.open(outgoing, self._lean_timeouts(timeout_s), cancel)
        log.debug("HTTP %s %s%s -> %d", method, self.base_url, path, response.status_code)
        return response

    def _outgoing(self, method: str, path: str, body: Mapping[str, object] | None) -> Outgoing:
        headers, payload = self._headers, b""
        if body is not None:
            payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            headers = self._json_headers
        host, port = self._address
        return Outgoing(method, host, port, self._path_prefix + path, headers, payload)

    def _lean_timeouts(self, timeout_s: float | None) -> Timeouts:
        if timeout_s is not None:  # a probe: one bound for every phase
            return Timeouts(timeout_s, timeout_s, timeout_s)
        phases = self._timeouts
        return Timeouts(phases.connect_s, phases.read_s, phases.write_s)

    def embed(self, model: str, inputs: Sequence[str]) -> EmbeddingResponse:
        """``/embeddings`` for a list of texts: one vector each, in order."""
        started = time.perf_counter()
        payload = self.post_json("/embeddings", {"model": model, "input": list(inputs)})
        with self._masked():
            _raise_for_error_object(payload, self.label)
        return parse_embeddings(payload, time.perf_counter() - started)

    def list_model_ids(self, timeout_s: float | None = None) -> list[str]:
        body = self.get_json("/models", timeout_s)
        entries = body.get("data", []) if isinstance(body, dict) else []
        return [str(entry["id"]) for entry in entries if isinstance(entry, dict) and "id" in entry]

    def chat(self, request: ChatRequest) -> ChatResponse:
        return self._post("chat", chat_body(request, stream=False), request.cancel)

    def complete(self, request: CompletionRequest) -> ChatResponse:
        return self._post("completion", completion_body(request, stream=False), request.cancel)

    def stream_chat(self, request: ChatRequest) -> Generator[ChatChunk, None, None]:
        return self._stream("chat", chat_body(request, stream=True), request.cancel)

    def stream_complete(self, request: CompletionRequest) -> Generator[ChatChunk, None, None]:
        return self._stream("completion", completion_body(request, stream=True), request.cancel)

    def close(self) -> None:
        self._client.close()
        if self._on_loop is not None:
            self._on_loop.close()

    # -- on an event loop (engines on loopback) ----------------------------------

    @property
    def answers_on_loop(self) -> bool:
        """Whether this engine can be called on an event loop (it is on loopback)."""
        return self._on_loop is not None

    async def chat_on_loop(self, request: ChatRequest) -> ChatResponse:
        """``chat`` without blocking the loop; cancelling the task cuts the connection."""
        return await self._post_on_loop("chat", chat_body(request, stream=False))

    async def complete_on_loop(self, request: CompletionRequest) -> ChatResponse:
        return await self._post_on_loop("completion", completion_body(request, stream=False))

    def stream_chat_on_loop(self, request: ChatRequest) -> LoopChunks:
        """``stream_chat`` on the loop: ``async for`` its chunks, ``close()`` to leave."""
        return LoopChunks(self, "chat", chat_body(request, stream=True))

    def stream_complete_on_loop(self, request: CompletionRequest) -> LoopChunks:
        return LoopChunks(self, "completion", completion_body(request, stream=True))

    async def _post_on_loop(self, kind: Kind, body: Mapping[str, object]) -> ChatResponse:
        started = time.perf_counter()
        path = _PATHS[kind]
        with self._masked(), map_http_errors(self.label, self.base_url + path), self._while_open():
            answer = await self._send_on_loop(path, body)
            await answer.read()
            _raise_for_status(answer, self.label, path)
            payload = _json_body(answer, self.label, path)
            _raise_for_error_object(payload, self.label)
        return parse_response(payload, kind, time.perf_counter() - started)

    async def _send_on_loop(self, path: str, body: Mapping[str, object]) -> AsyncAnswer:
        assert self._on_loop is not None
        outgoing = self._outgoing("POST", path, body)
        answer = await self._on_loop.open(outgoing, self._lean_timeouts(None))
        log.debug("HTTP POST %s%s -> %d", self.base_url, path, answer.status_code)
        return answer

    def _post(
        self, kind: Kind, body: Mapping[str, object], cancel: Cancellation | None
    ) -> ChatResponse:
        started = time.perf_counter()
        payload = self.post_json(_PATHS[kind], body, cancel)
        with self._masked():
            _raise_for_error_object(payload, self.label)
        return parse_response(payload, kind, time.perf_counter() - started)

    def _stream(
        self, kind: Kind, body: Mapping[str, object], cancel: Cancellation | None
    ) -> Generator[ChatChunk, None, None]:
        started = time.perf_counter()
        lines = self.stream_lines(_PATHS[kind], body, cancel)
        try:
            with self._masked(), map_http_errors(self.label, self.base_url, cancel):
                yield from stream_chunks(iter_sse_events(lines), kind, started, self.label)
            _drain(lines)
        finally:
            lines.close()

    @contextlib.contextmanager
    def _while_open(self) -> Iterator[None]:
        """A client closed under a caller (its model was unloaded while a health probe or
        request was on its way) is an unavailable backend, not httpx's RuntimeError."""
        try:
            yield
        except RuntimeError as exc:
            if not self._client.is_closed:
                raise
            raise BackendUnavailableError(
                f"{self.label}: its connection was closed (the model was unloaded meanwhile)"
            ) from exc

    @contextlib.contextmanager
    def _masked(self) -> Iterator[None]:
        """Mask the API key in any error raised inside, should an upstream echo it."""
        try:
            yield
        except BackendError as exc:
            if self._api_key and self._api_key in str(exc):
                exc.args = (str(exc).replace(self._api_key, _MASK),)
            raise


class LoopChunks:
    """A stream read on an event loop: ``async for`` its chunks; ``close()`` (plain, not
    awaited, so it also runs where a cancelled task cannot await) leaves it, and a stream
    left before its end has its connection cut, so the engine stops generating.

    The same readers as the blocking stream (``SseReader``, ``ChunkReader``) and the
    same errors: an error status before the first chunk, BackendRequestError for an
    error event, BackendCrashedError when the events stop before ``[DONE]``. Every
    event that arrived in one read is decoded at once, so ``ready()`` can tell a relay
    that the next chunk needs no wait (it then writes them to its client together).
    """

    def __init__(self, client: OpenAIHttpClient, kind: Kind, body: Mapping[str, object]) -> None:
        self._client = client
        self._kind = kind
        self._body = body
        self._answer: AsyncAnswer | None = None
        self._sse = SseReader()
        self._chunks = ChunkReader(kind, time.perf_counter(), client.label)
        self._decoded: collections.deque[ChatChunk] = collections.deque()
        self._partial_line = b""
        self._ended = False  # the body ended (with or without [DONE])
        self._closed = False

    def __aiter__(self) -> LoopChunks:
        return self

    async def __anext__(self) -> ChatChunk:
        if not self._decoded and not self._ended and not self._closed:
            client, path = self._client, _PATHS[self._kind]
            try:
                with client._masked(), map_http_errors(client.label, client.base_url + path):
                    await self._read_more(path)
            except BaseException:
                self.close()
                raise
        if self._decoded:
            return self._decoded.popleft()
        if self._ended:
            self._chunks.end()  # a stream cut before [DONE] is an error, after its chunks
        raise StopAsyncIteration

    def ready(self) -> bool:
        """Whether the next chunk is here already (``__anext__`` will not wait)."""
        return bool(self._decoded)

    async def _read_more(self, path: str) -> None:
        """Read until at least one chunk is decoded, or the stream is over."""
        answer = self._answer or await self._open(path)
        while not self._decoded:
            if self._chunks.done:
                await self._read_to_end(answer)
                return
            piece = await answer.next_piece()
            if not piece:
                self._decode_end()
                return
            self._decode(piece)

    def _decode(self, piece: bytes) -> None:
        *lines, self._partial_line = (self._partial_line + piece).split(b"\n")
        for line in lines:
            self._decode_line(line)

    def _decode_line(self, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", errors="replace")
        self._decode_event(self._sse.line(text))

    def _decode_event(self, event: SseEvent | None) -> None:
        if event is None or self._chunks.done:  # what follows [DONE] is not read
            return
        if (chunk := self._chunks.event(event)) is not None:
            self._decoded.append(chunk)

    def _decode_end(self) -> None:
        """The body ended: its last line and event, if unterminated, then no more."""
        if self._partial_line:
            self._decode_line(self._partial_line)
        self._decode_event(self._sse.end())
        self._ended = True
        self.close()

    async def _open(self, path: str) -> AsyncAnswer:
        with self._client._while_open():
            answer = self._answer = await self._client._send_on_loop(path, self._body)
        if answer.status_code >= 400:
            await answer.read()
            _raise_for_status(answer, self._client.label, path)
        return answer

    async def _read_to_end(self, answer: AsyncAnswer) -> None:
        """What follows ``[DONE]`` (the body's end), so the connection goes back to the
        pool; a server that keeps talking is cut off by ``close``."""
        for _ in range(_DRAIN_LINES):
            if not await answer.next_piece():
                break
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._answer is not None:
            self._answer.close()


def chat_body(request: ChatRequest, *, stream: bool) -> dict[str, object]:
    """The JSON body of ``/chat/completions``; unset fields are left to the engine."""
    body: dict[str, object] = {
        "model": request.model,
        "messages": [message.to_openai() for message in request.messages],
    }
    return _with_common_fields(body, request, stream)


def completion_body(request: CompletionRequest, *, stream: bool) -> dict[str, object]:
    prompt = request.prompt if isinstance(request.prompt, str) else list(request.prompt)
    body: dict[str, object] = {"model": request.model, "prompt": prompt}
    return _with_common_fields(body, request, stream)


def _with_common_fields(
    body: dict[str, object], request: ChatRequest | CompletionRequest, stream: bool
) -> dict[str, object]:
    optional = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": list(request.stop) or None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update(request.extra)
    return body


class SseReader:
    """text/event-stream lines grouped into events (a blank line ends one), fed one line
    at a time so a blocking loop and an event loop read streams with the same rules.

    Comment lines (``: ping``) are keep-alives and are skipped. A bare
    ``error: {...}`` line, which is not standard SSE, is read as an error event
    so that no engine's way of reporting a failure is lost.
    """

    def __init__(self) -> None:
        self._event_name = "message"
        self._data_lines: list[str] = []

    def line(self, line: str) -> SseEvent | None:
        """The event this line ends, if it ends one."""
        if not line:
            event = self.end()
            self._event_name, self._data_lines = "message", []
            return event
        field_name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field_name == "data":
            self._data_lines.append(value)
        elif field_name == "event":
            self._event_name = value
        elif field_name == "error":
            self._event_name, self._data_lines = "error", [value]
        return None

    def end(self) -> SseEvent | None:
        """The event pending when the lines stop (a stream cut before its blank line)."""
        if not self._data_lines:
            return None
        return SseEvent(self._event_name, "\n".join(self._data_lines))


def iter_sse_events(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Group text/event-stream lines into events (``SseReader``'s rules)."""
    reader = SseReader()
    for line in lines:
        if (event := reader.line(line)) is not None:
            yield event
    if (event := reader.end()) is not None:
        yield event


_DRAIN_LINES = 16


def _drain(lines: Iterator[str]) -> None:
    """Read what follows ``[DONE]`` (the body's end) so the connection goes back to
    the pool instead of being reset; a server that keeps talking is cut off."""
    for _ in itertools.islice(lines, _DRAIN_LINES):
        pass


class ChunkReader:
    """SSE events turned into chunks, timed from ``started`` (a ``perf_counter`` value);
    one event at a time, so both the blocking and the event-loop streams use it.

    ``event`` raises BackendRequestError on an error event; after ``[DONE]`` it
    gives the closing chunk (with the usage) and ``done`` is true; ``end``
    raises BackendCrashedError when the events stopped before ``[DONE]``.
    """

    def __init__(self, kind: Kind, started: float, label: str = "engine") -> None:
        self._kind = kind
        self._started = started
        self._label = label
        self._token_count = 0
        self._reported_usage: Usage | None = None
        self._timings: EngineTimings | None = None
        self.done = False

    def event(self, event: SseEvent) -> ChatChunk | None:
        t_s = time.perf_counter() - self._started
        if event.data.strip() == _DONE:
            self.done = True
            usage = self._reported_usage or Usage(None, completion_tokens=self._token_count)
            return ChatChunk(None, t_s, None, usage, self._timings)
        payload = _event_payload(event, self._label)
        self._reported_usage = _usage(payload) or self._reported_usage
        self._timings = _engine_timings(payload) or self._timings
        chunk = parse_stream_chunk(payload, self._kind, t_s)
        if chunk is not None:
            self._token_count += chunk.content is not None
        return chunk

    def end(self) -> None:
        if not self.done:
            raise BackendCrashedError(
                f"{self._label} ended its stream before [DONE]; check the engine's log"
            )


def stream_chunks(
    events: Iterable[SseEvent], kind: Kind, started: float, label: str = "engine"
) -> Iterator[ChatChunk]:
    """Turn SSE events into chunks (``ChunkReader``'s rules), up to the closing one."""
    reader = ChunkReader(kind, started, label)
    for event in events:
        chunk = reader.event(event)
        if chunk is not None:
            yield chunk
        if reader.done:
            return
    reader.end()


def _event_payload(event: SseEvent, label: str) -> dict[str, Any]:
    try:
        payload = json.loads(event.data)
    except json.JSONDecodeError as exc:
        raise BackendRequestError(
            f"{label} sent a stream event that is not JSON: {event.data[:_MAX_ERROR_CHARS]!r}"
        ) from exc
    if event.event == "error" and not (isinstance(payload, dict) and "error" in payload):
        payload = {"error": payload}
    if not isinstance(payload, dict):
        raise BackendRequestError(f"{label} sent a stream event that is not an object")
    _raise_for_error_object(payload, label)
    return payload


def parse_stream_chunk(payload: Mapping[str, Any], kind: Kind, t_s: float) -> ChatChunk | None:
    """One chunk per event that has a choice; usage-only events give ``None``."""
    choices = payload.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    finish_reason = choice.get("finish_reason")
    tool_calls: tuple[Mapping[str, object], ...] = ()
    if kind == "chat":
        delta = choice.get("delta") or {}
        content = delta.get("content")
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            tool_calls = tuple(call for call in calls if isinstance(call, dict))
    else:
        content = choice.get("text")
        # The closing event of a plain completion repeats an empty text.
        if finish_reason and content == "":
            content = None
    return ChatChunk(content=content, t_s=t_s, finish_reason=finish_reason, tool_calls=tool_calls)


def parse_response(payload: Mapping[str, Any], kind: Kind, elapsed_s: float) -> ChatResponse:
    """A non-streamed answer, chat or plain completion."""
    choice = (payload.get("choices") or [{}])[0]
    if kind == "chat":
        text = (choice.get("message") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    return ChatResponse(
        id=str(payload.get("id", "")),
        model=str(payload.get("model", "")),
        text=text,
        finish_reason=choice.get("finish_reason"),
        usage=_usage(payload) or Usage(prompt_tokens=None, completion_tokens=0),
        elapsed_s=elapsed_s,
        engine_timings=_engine_timings(payload),
        raw=dict(payload),
    )


def whole_answer(chunks: Iterable[ChatChunk], kind: Kind, model: str) -> ChatResponse:
    """A streamed answer folded into the whole one, OpenAI's body included: the text,
    tool calls put together from their deltas (by index: id, name, the arguments'
    pieces in order), the finish reason and the usage of the last event."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason, usage, timings, elapsed_s = None, None, None, 0.0
    for chunk in chunks:
        text.append(chunk.content or "")
        for delta in chunk.tool_calls:
            _merge_tool_call(calls, delta)
        finish_reason = chunk.finish_reason or finish_reason
        usage, timings = chunk.usage or usage, chunk.engine_timings or timings
        elapsed_s = chunk.t_s
    usage = usage or Usage(prompt_tokens=None, completion_tokens=0)
    body = _whole_body("".join(text), [calls[i] for i in sorted(calls)], finish_reason, kind)
    body |= {"model": model, "usage": _usage_body(usage)}
    return ChatResponse(
        id=str(body["id"]), model=model, text="".join(text), finish_reason=finish_reason,
        usage=usage, elapsed_s=elapsed_s, engine_timings=timings, raw=body,
    )  # fmt: skip


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: Mapping[str, Any]) -> None:
    index = delta.get("index", len(calls))
    call = calls.setdefault(
        index if isinstance(index, int) else len(calls),
        {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
    )
    call["id"] = delta.get("id") or call["id"]
    call["type"] = delta.get("type") or call["type"]
    function = delta.get("function") or {}
    if isinstance(function, Mapping):
        call["function"]["name"] += str(function.get("name") or "")
        call["function"]["arguments"] += str(function.get("arguments") or "")


def _whole_body(
    text: str, tool_calls: list[dict[str, Any]], finish_reason: str | None, kind: Kind
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
    if kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        elif not text:
            message["content"] = ""
        choice["message"] = message
    else:
        choice["text"] = text
    return {
        "id": f"cmpl-{time.time_ns()}",
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "choices": [choice],
    }


def _usage_body(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens or 0,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens or usage.completion_tokens,
    }


def parse_embeddings(payload: Any, elapsed_s: float) -> EmbeddingResponse:
    """An OpenAI ``/embeddings`` answer, vectors put back in input order by ``index``.

    llama-cpp-python's server answers one vector per *token* for a model that
    declares no pooling (any chat model); those are mean-pooled here, as
    llama-server's ``--pooling mean`` would, so every input gets one vector.
    """
    entries = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise BackendRequestError(
            "the embeddings answer has no data list; is this an embeddings API?"
        )
    ordered = sorted(entries, key=lambda entry: int(entry.get("index", 0)))
    usage = payload.get("usage") or {}
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return EmbeddingResponse(
        model=str(payload.get("model", "")),
        vectors=tuple(_one_vector(entry.get("embedding")) for entry in ordered),
        prompt_tokens=int(prompt_tokens) if prompt_tokens is not None else None,
        elapsed_s=elapsed_s,
    )


def _one_vector(embedding: Any) -> tuple[float, ...]:
    if not isinstance(embedding, list) or not embedding:
        raise BackendRequestError("an embeddings entry holds no vector")
    if not isinstance(embedding[0], list):
        return tuple(float(x) for x in embedding)
    columns = zip(*embedding, strict=True)  # per-token vectors: average each dimension
    return tuple(sum(column) / len(embedding) for column in columns)


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine (127.0.0.0/8, ::1, localhost).

    The gateway's privacy rule rests on this: anything else may be another
    machine, so it counts as remote.
    """
    host = httpx.URL(url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _usage(payload: Mapping[str, Any]) -> Usage | None:
    usage = payload.get("usage")
    if not isinstance(usage, dict) or "completion_tokens" not in usage:
        return None
    prompt = usage.get("prompt_tokens")
    return Usage(
        prompt_tokens=int(prompt) if prompt is not None else None,
        completion_tokens=int(usage["completion_tokens"]),
    )


def _engine_timings(payload: Mapping[str, Any]) -> EngineTimings | None:
    """llama-server's ``timings`` object (prompt_n, prompt_ms, predicted_n, ...)."""
    timings = payload.get("timings")
    if not isinstance(timings, dict) or "prompt_n" not in timings:
        return None
    return EngineTimings(
        prompt_tokens=int(timings["prompt_n"]),
        prompt_ms=float(timings.get("prompt_ms", 0.0)),
        decode_tokens=int(timings.get("predicted_n", 0)),
        decode_ms=float(timings.get("predicted_ms", 0.0)),
        cached_tokens=int(timings.get("cache_n", 0)),
    )


def _raise_for_status(response: _Answer, label: str, path: str) -> None:
    if response.status_code < 400:
        return
    message = _error_message(response)
    raise BackendRequestError(
        f"{label} answered {response.status_code} to {path}: {message}",
        status_code=response.status_code,
    )


def _error_message(response: _Answer) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:_MAX_ERROR_CHARS].strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict):
            return str(error.get("message", error))[:_MAX_ERROR_CHARS]
        return str(error)[:_MAX_ERROR_CHARS]
    return str(body)[:_MAX_ERROR_CHARS]


def _raise_for_error_object(payload: Any, label: str) -> None:
    """OpenAI-style servers report failures as ``{"error": {...}}``, even after a 200."""
    if not isinstance(payload, dict) or not payload.get("error"):
        return
    error = payload["error"]
    message = error.get("message", error) if isinstance(error, dict) else error
    status = None
    if isinstance(error, dict):  # an HTTP status as "code" (llama-server) or "status" (yoyu's)
        status = next((v for v in (error.get("code"), error.get("status")) if _is_status(v)), None)
    raise BackendRequestError(
        f"{label} reported an error: {str(message)[:_MAX_ERROR_CHARS]}", status_code=status
    )


def _is_status(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def _json_body(response: _Answer, label: str, path: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise BackendError(
            f"{label} answered {path} with something that is not JSON: "
            f"{response.text[:_MAX_ERROR_CHARS]!r}"
        ) from exc
