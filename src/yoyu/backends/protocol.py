"""The one contract every engine adapter keeps, and the plain values it trades in.

A backend is whatever answers OpenAI-style requests for some models: the
managed llama.cpp server yoyu starts itself, an Ollama daemon, or any
OpenAI-compatible server (vLLM, LM Studio, a remote API). The gateway, the
``run``/``chat`` commands and the monitor talk to all of them through
``Backend`` alone, so no engine name appears outside ``yoyu.backends``.

Every method blocks the calling thread until it has an answer. A backend
whose engines listen on loopback may also answer on an event loop
(``LoopGeneration``: the gateway's relay uses it so a request costs no worker
thread); it is the same request shaping and the same errors. Errors are
``yoyu.errors.BackendError`` subclasses, always, so a caller catches one
family::

    BackendStartError        load() could not bring the engine up
    BackendUnavailableError  nothing answers, or the model is not loaded there
    BackendTimeoutError      the engine took longer than the timeout allows
    BackendCrashedError      the engine died in the middle of an answer
    BackendRequestError      the engine refused the request (HTTP status, error event)

A model's life in a backend::

    (absent) --load()--> loading --ready--> loaded --unload()--> (absent)
                             \\--fails--> (absent), BackendStartError
    loaded --engine dies--> (absent): the next request raises
                            BackendUnavailableError or BackendCrashedError

Streams are plain iterators of ``ChatChunk``. Each chunk carries ``t_s``,
seconds since the request was sent, so a caller measures time to first token
(prefill) and decode speed without a clock of its own (``summarize_stream``).
Closing a stream early (``close()`` on the generator, or leaving a ``for``
loop that owns it) releases the connection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from yoyu.backends.cancellation import Cancellation

if TYPE_CHECKING:  # llama.cpp's log reader builds on these types; only the annotation needs it
    from yoyu.backends.llamacpp_log import ReportedBuffers


MessageContent = str | Sequence[Mapping[str, object]] | None  # text, or OpenAI content parts


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation, as OpenAI's ``messages`` entries.

    ``content`` is text, a list of content parts (text, images) as the client
    sent them, or ``None`` (an assistant turn that only calls tools);
    ``extra`` keeps every other field of the message as sent (``tool_calls``,
    ``tool_call_id``, ``name``), so an agent's tool loop reaches the engine whole.
    """

    role: str
    content: MessageContent = ""
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The text of the content (text parts joined), for engines that take text only."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(str(part.get("text", "")) for part in self.content)

    def to_openai(self) -> dict[str, object]:
        """The message as OpenAI's JSON has it."""
        content = (
            self.content if isinstance(self.content, (str, type(None))) else list(self.content)
        )
        return {**self.extra, "role": self.role, "content": content}


@dataclass(frozen=True)
class ChatRequest:
    """An OpenAI-style chat request; ``extra`` carries fields yoyu does not model.

    ``None`` means "the engine's default", so nothing is sent for it.
    ``extra`` is merged into the JSON body as is (``tools``, ``tool_choice``,
    ``response_format``, ``logit_bias``, ``top_k``...), so a gateway can pass a
    client's fields through. ``cancel`` stops the request from another thread.
    """

    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    cancel: Cancellation | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class CompletionRequest:
    """An OpenAI-style plain completion: a prompt (text, or token ids), no chat template."""

    model: str
    prompt: str | tuple[int, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    cancel: Cancellation | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Usage:
    """Tokens in and out. ``prompt_tokens`` is ``None`` when the engine did not say."""

    prompt_tokens: int | None
    completion_tokens: int

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class EngineTimings:
    """The engine's own account of one request (llama.cpp's ``timings``).

    ``prompt_tokens`` counts the tokens actually evaluated; ``cached_tokens``
    those reused from the previous request's KV cache, which cost nothing.
    """

    prompt_tokens: int
    prompt_ms: float
    decode_tokens: int
    decode_ms: float
    cached_tokens: int = 0

    @property
    def prefill_tps(self) -> float | None:
        return _per_second(self.prompt_tokens, self.prompt_ms / 1000)

    @property
    def decode_tps(self) -> float | None:
        return _per_second(self.decode_tokens, self.decode_ms / 1000)


@dataclass(frozen=True)
class ChatResponse:
    """A whole answer, from ``chat`` or ``complete``.

    ``elapsed_s`` runs from sending the request to reading the last byte.
    ``raw`` is the engine's JSON body, for fields this type does not model.
    """

    id: str
    model: str
    text: str
    finish_reason: str | None
    usage: Usage
    elapsed_s: float
    engine_timings: EngineTimings | None = None
    raw: Mapping[str, object] = field(default_factory=dict)
    tool_calls: tuple[Mapping[str, object], ...] = ()  # OpenAI's shape, when ``raw`` is not


@dataclass(frozen=True)
class ChatChunk:
    """One event of a streamed answer.

    ``content`` is the text this event adds, ``None`` when it adds none (the
    opening role event, the closing event). One token may decode to ``""``
    (half of a multi-byte character), which still counts as a token.
    ``usage`` and ``engine_timings`` appear on the last chunk only, when known.
    ``tool_calls`` carries the OpenAI deltas of a tool call being streamed
    (index, id, function name, a piece of the arguments), passed on as sent.
    """

    content: str | None
    t_s: float
    finish_reason: str | None = None
    usage: Usage | None = None
    engine_timings: EngineTimings | None = None
    tool_calls: tuple[Mapping[str, object], ...] = ()  # this event's tool-call deltas, as sent


@dataclass(frozen=True)
class StreamSummary:
    """What a finished stream amounts to: the text and how fast it came."""

    text: str
    token_chunks: int
    first_token_s: float | None
    decode_tps: float | None
    finish_reason: str | None
    usage: Usage | None
    engine_timings: EngineTimings | None


def summarize_stream(chunks: Sequence[ChatChunk]) -> StreamSummary:
    """Fold a stream's chunks into its text, time to first token and decode speed.

    Decode speed counts the tokens after the first over the time between the
    first and the last token, so the prefill does not dilute it.
    """
    token_chunks = [chunk for chunk in chunks if chunk.content is not None]
    last = chunks[-1] if chunks else None
    decode_tps = None
    if len(token_chunks) >= 2:
        decode_s = token_chunks[-1].t_s - token_chunks[0].t_s
        decode_tps = _per_second(len(token_chunks) - 1, decode_s)
    return StreamSummary(
        text="".join(chunk.content or "" for chunk in token_chunks),
        token_chunks=len(token_chunks),
        first_token_s=token_chunks[0].t_s if token_chunks else None,
        decode_tps=decode_tps,
        finish_reason=next((c.finish_reason for c in chunks if c.finish_reason), None),
        usage=last.usage if last else None,
        engine_timings=last.engine_timings if last else None,
    )


def _per_second(count: int, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


@dataclass(frozen=True)
class EmbeddingResponse:
    """One vector per input, in input order, and what producing them cost.

    ``prompt_tokens`` is ``None`` when the engine did not say; ``elapsed_s``
    runs from sending the request to reading the last byte.
    """

    model: str
    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int | None
    elapsed_s: float

    @property
    def dimensions(self) -> int | None:
        return len(self.vectors[0]) if self.vectors else None


@dataclass(frozen=True)
class ModelRef:
    """What to load: the id clients will ask for, and the file when there is one.

    Managed engines need ``path``; daemons that keep their own store (Ollama)
    and remote APIs take the ``id`` alone.
    """

    id: str
    path: Path | None = None


@dataclass(frozen=True)
class ModelInfo:
    """A model a backend can serve, loaded or not."""

    id: str
    backend: str
    loaded: bool
    size_bytes: int | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A model resident in a backend, and what it cost to get there.

    ``pid`` is the engine process serving it when yoyu can see one;
    ``buffers`` are the engine's own buffer sizes (llama.cpp prints them) and
    ``vram_bytes`` what the engine says lives on GPUs (Ollama's ``size_vram``).
    """

    id: str
    backend: str
    base_url: str
    settings: Mapping[str, object] = field(default_factory=dict)
    pid: int | None = None
    load_s: float | None = None
    buffers: ReportedBuffers | None = None
    size_bytes: int | None = None
    vram_bytes: int | None = None
    log_path: Path | None = None
    metrics_url: str | None = None  # where the engine reports its own load (vLLM)


@dataclass(frozen=True)
class BackendHealth:
    """Whether a backend answers, how fast, and in words why not."""

    ok: bool
    detail: str
    latency_s: float | None = None
    # Models whose engine has died or stopped answering (managed backends): the
    # gateway unloads them when idle, and the next request loads them anew.
    failing_models: tuple[str, ...] = ()


class LoopStream(Protocol):
    """A stream read on an event loop: ``async for`` its chunks. ``close()`` is plain (not
    awaited), so a task being cancelled can still leave it; left early, its connection
    is cut and the engine stops generating."""

    def __aiter__(self) -> LoopStream: ...

    async def __anext__(self) -> ChatChunk: ...

    def ready(self) -> bool:
        """Whether the next chunk is here already: a relay writes what it holds to its
        client once this is false, so chunks that arrived together leave together."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class LoopGeneration(Protocol):
    """A backend that can also answer on an event loop, without a worker thread.

    The gateway serves from one event loop; handing each request to a thread
    and back cost as much as the rest of its relay. A backend whose engines
    are on loopback offers these beside the blocking ``chat``/``stream_chat``
    (same shaping, same errors); a cancelled task is a cancelled request (its
    connection is cut). ``answers_on_loop`` says whether a given request may
    go this way; the others take the blocking path in a worker thread.
    """

    def answers_on_loop(self, request: ChatRequest | CompletionRequest) -> bool: ...

    async def answer_on_loop(self, request: ChatRequest | CompletionRequest) -> ChatResponse: ...

    def stream_on_loop(self, request: ChatRequest | CompletionRequest) -> LoopStream: ...


@runtime_checkable
class Backend(Protocol):
    """One engine, seen the same way whatever it is. See the module docstring
    for blocking, state transitions and the errors each method raises."""

    name: str

    @property
    def remote(self) -> bool:
        """Whether a request sent here leaves this machine (privacy routing decides on it)."""
        ...

    @property
    def engine_kind(self) -> str:
        """The engine program that holds the models, as the estimate names its profiles
        ("llama-cpp-python", "llama-server"), or "ollama" / "openai-compatible" for engines
        yoyu does not start: what a plan for a load here must be made for."""
        ...

    def health(self) -> BackendHealth:
        """Never raises: an unreachable engine is ``ok=False`` with the reason."""
        ...

    def list_models(self) -> list[ModelInfo]:
        """Models it can serve. Raises BackendUnavailableError, BackendTimeoutError."""
        ...

    def load(self, model: ModelRef, settings: Mapping[str, object]) -> LoadedModel:
        """Blocks until the model answers. Loading a loaded id with the same
        settings returns it as is. Raises BackendStartError, SettingsError."""
        ...

    def unload(self, model_id: str) -> None:
        """Blocks until the memory is given back; unloading an absent id is a no-op."""
        ...

    def loaded_models(self) -> list[LoadedModel]:
        """Models resident now; for managed engines, a dead process drops out."""
        ...

    def chat(self, request: ChatRequest) -> ChatResponse:
        """Raises BackendUnavailableError, BackendTimeoutError, BackendRequestError,
        BackendCrashedError."""
        ...

    def stream_chat(self, request: ChatRequest) -> Iterator[ChatChunk]:
        """As ``chat``; errors surface from the iterator, never as a hang."""
        ...

    def complete(self, request: CompletionRequest) -> ChatResponse:
        """As ``chat``, for a plain prompt."""
        ...

    def stream_complete(self, request: CompletionRequest) -> Iterator[ChatChunk]:
        """As ``stream_chat``, for a plain prompt."""
        ...

    def embed(self, model: str, inputs: Sequence[str]) -> EmbeddingResponse:
        """One vector per input. Raises as ``chat``; BackendRequestError (400) when
        the model cannot embed (a managed model not loaded with ``embedding``)."""
        ...

    def pids(self) -> list[int]:
        """Processes whose memory belongs to this backend, for the monitor."""
        ...

    def close(self) -> None:
        """Stop what this backend started and release its connections."""
        ...
