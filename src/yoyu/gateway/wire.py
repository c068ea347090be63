"""OpenAI's JSON shapes in and out: request bodies to protocol values, answers to bodies.

Pure functions on dicts, so the HTTP app stays a thin shell and the shapes
are tested without a server. The OpenAI schema grows every month, so the
rule is: parse and check what yoyu decides on (the model, the limits it
passes to an engine, streaming), and pass every other field through as the
client sent it: messages keep ``tool_calls``, ``tool_call_id``, ``name`` and
content parts; a body keeps ``tools``, ``tool_choice``, ``response_format``,
``logprobs``, ``n``... An out-of-range value yoyu checks is a 400 naming the
parameter, before any engine sees it (an engine answers them with a 500
and its traceback).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from yoyu.backends.protocol import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
)
from yoyu.errors import BadRequestError, YoyuError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MODELLED = {
    "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "stop", "seed", "stream", "stream_options", "input", "encoding_format",
}  # fmt: skip
# (name, lowest, highest, whole number) of the parameters checked at the edge
_RANGES: tuple[tuple[str, float, float, bool], ...] = (
    ("temperature", 0.0, 2.0, False),
    ("top_p", 0.0, 1.0, False),
    ("presence_penalty", -2.0, 2.0, False),
    ("frequency_penalty", -2.0, 2.0, False),
    ("n", 1, 128, True),
    ("top_logprobs", 0, 20, True),
)


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequestError(f"the request body is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise BadRequestError("the request body must be a JSON object")
    return payload


def chat_request(payload: Mapping[str, Any]) -> ChatRequest:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError(
            "messages must be a non-empty list of {role, content} objects", param="messages"
        )
    return ChatRequest(
        model=_model(payload),
        messages=tuple(_message(entry, index) for index, entry in enumerate(messages)),
        **_common(payload),
    )


def completion_request(payload: Mapping[str, Any]) -> CompletionRequest:
    return CompletionRequest(model=_model(payload), prompt=_prompt(payload), **_common(payload))


PARSERS: dict[str, Callable[[Mapping[str, Any]], ChatRequest | CompletionRequest]] = {
    "chat": chat_request,
    "completion": completion_request,
}


def embedding_inputs(payload: Mapping[str, Any]) -> tuple[str, list[str]]:
    value = payload.get("input")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise BadRequestError(
            "input must be a string or a non-empty list of strings", param="input"
        )
    return _model(payload), inputs


def wants_stream(payload: Mapping[str, Any]) -> bool:
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequestError("stream must be true or false", param="stream")
    return stream


def wants_usage(payload: Mapping[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def prompt_bytes(request: ChatRequest | CompletionRequest) -> int:
    """UTF-8 bytes of what the engine will read as text (a token-id prompt counts 0)."""
    if isinstance(request, CompletionRequest):
        return len(request.prompt.encode()) if isinstance(request.prompt, str) else 0
    return sum(len(message.text.encode()) for message in request.messages)


def _model(payload: Mapping[str, Any]) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequestError(
            "model must be a non-empty string naming a served model", param="model"
        )
    return model


def _message(entry: object, index: int) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(entry, dict):
        raise BadRequestError(f"{where} must be an object with a role", param=where)
    role = entry.get("role")
    if not isinstance(role, str) or role not in ROLES:  # a list or object is unhashable
        raise BadRequestError(
            f"{where}.role {role!r} is not a role; use one of {', '.join(sorted(ROLES))}",
            param=f"{where}.role",
        )
    content = entry.get("content")
    if not (content is None or isinstance(content, str) or _content_parts(content)):
        raise BadRequestError(
            f"{where}.content must be a string, a list of content parts or null",
            param=f"{where}.content",
        )
    extra = {key: value for key, value in entry.items() if key not in ("role", "content")}
    return ChatMessage(str(role), content, extra)


def _content_parts(content: object) -> bool:
    return isinstance(content, list) and all(isinstance(part, dict) for part in content)


def _prompt(payload: Mapping[str, Any]) -> str | tuple[int, ...]:
    """Text, one text in a list, or token ids: what one completion is asked for."""
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(_is_int(item) for item in prompt):
        return tuple(prompt)
    raise BadRequestError(
        "prompt must be a string or a list of token ids (one prompt per request)",
        param="prompt",
    )


def _common(payload: Mapping[str, Any]) -> dict[str, Any]:
    for name, low, high, whole in _RANGES:
        _check_range(payload.get(name), name, low, high, whole)
    max_tokens = payload.get("max_tokens", payload.get("max_completion_tokens"))
    name = "max_tokens" if "max_tokens" in payload else "max_completion_tokens"
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise BadRequestError(f"{name} must be a whole number of at least 1", param=name)
    return {
        "max_tokens": max_tokens,
        "temperature": payload.get("temperature"),
        "top_p": payload.get("top_p"),
        "stop": _stops(payload.get("stop")),
        "seed": _seed(payload.get("seed")),
        "extra": {key: value for key, value in payload.items() if key not in _MODELLED},
    }


def _check_range(value: object, name: str, low: float, high: float, whole: bool) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (whole and not isinstance(value, int))
    ):
        kind = "a whole number" if whole else "a number"
        raise BadRequestError(f"{name} must be {kind}", param=name)
    if not low <= value <= high:
        raise BadRequestError(f"{name} must be between {low:g} and {high:g}", param=name)


def _stops(stop: object) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        return tuple(stop)
    raise BadRequestError("stop must be a string or a list of strings", param="stop")


def _seed(seed: object) -> int | None:
    if seed is None or _is_int(seed):
        return seed  # type: ignore[return-value]
    raise BadRequestError("seed must be a whole number", param="seed")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- answers ---------------------------------------------------------------


def response_body(response: ChatResponse, route: str, kind: str) -> dict[str, Any]:
    """The engine's own body when it is OpenAI-shaped (keeps tool calls, logprobs), else built."""
    if isinstance(response.raw.get("choices"), list):
        return {**response.raw, "model": route}
    usage = response.usage
    choice: dict[str, Any] = {"index": 0, "finish_reason": response.finish_reason}
    if kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": response.text}
        if response.tool_calls:
            message["tool_calls"] = [dict(call) for call in response.tool_calls]
        choice["message"] = message
    else:
        choice |= {"text": response.text, "logprobs": None}
    return {
        "id": response.id or f"yoyu-{time.time_ns()}",
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": route,
        "choices": [choice],
        "usage": {
            "prompt_tokens": usage.prompt_tokens or 0,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens or usage.completion_tokens,
        },
    }


class StreamWriter(Protocol):
    """The bytes of one streamed answer in some wire format (this one's SSE, Ollama's
    NDJSON): each chunk's, the closing ones, and an error's once the headers are gone."""

    def chunk(self, chunk: ChatChunk) -> bytes: ...

    def done(self) -> bytes: ...

    def error(self, error: YoyuError) -> bytes: ...


class ChunkWriter:
    """SSE ``data:`` lines for one streamed answer, OpenAI's chunk shape."""

    def __init__(self, route: str, kind: str, include_usage: bool) -> None:
        self.route = route
        self.kind = kind
        self.include_usage = include_usage
        self.id = f"yoyu-{time.time_ns()}"
        self.created = int(time.time())
        self._first = True

    def chunk(self, chunk: ChatChunk) -> bytes:
        lines = b""
        if chunk.content is not None or chunk.finish_reason is not None or chunk.tool_calls:
            lines += _sse(self._envelope([self._choice(chunk)]))
        if chunk.usage is not None and self.include_usage:
            usage = chunk.usage
            body = self._envelope([])
            body["usage"] = {
                "prompt_tokens": usage.prompt_tokens or 0,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens or usage.completion_tokens,
            }
            lines += _sse(body)
        return lines

    def done(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, error: YoyuError) -> bytes:
        return sse_error(error)

    def _choice(self, chunk: ChatChunk) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": chunk.finish_reason}
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if self._first:
                delta["role"] = "assistant"
                self._first = False
            if chunk.content is not None:
                delta["content"] = chunk.content
            if chunk.tool_calls:
                delta["tool_calls"] = [dict(call) for call in chunk.tool_calls]
            choice["delta"] = delta
        else:
            choice |= {"text": chunk.content or "", "logprobs": None}
        return choice

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.route,
            "choices": choices,
        }


def error_body(error: YoyuError) -> dict[str, Any]:
    """OpenAI's error object for ``error``, from what the error class carries."""
    return {
        "error": {
            "message": str(error),
            "type": error.error_type,
            "code": error.error_code,
            "param": error.param,
        }
    }


def error_headers(error: YoyuError) -> dict[str, str]:
    """``Retry-After`` for a refusal that time may cure (memory, a full queue)."""
    if error.retry_after_s is None:
        return {}
    return {"Retry-After": str(max(1, round(error.retry_after_s)))}


def sse_error(error: YoyuError) -> bytes:
    return _sse(error_body(error))


def _sse(body: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
