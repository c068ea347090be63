"""OpenAI's JSON shapes in and out: request bodies to protocol values, answers to bodies.

Pure functions on dicts, so the HTTP app stays a thin shell and the shapes
are tested without a server. Client fields yoyu does not model
(``logit_bias``, ``response_format``, ``top_k``...) pass through in ``extra``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from yoyu.backends.protocol import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
)
from yoyu.errors import BadRequestError

_MODELLED = {
    "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "stop", "seed", "stream", "stream_options", "input", "encoding_format",
}  # fmt: skip


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
        raise BadRequestError("messages must be a non-empty list of {role, content} objects")
    return ChatRequest(
        model=_model(payload),
        messages=tuple(_message(entry) for entry in messages),
        **_common(payload),
    )


def completion_request(payload: Mapping[str, Any]) -> CompletionRequest:
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequestError("prompt must be a string")
    return CompletionRequest(model=_model(payload), prompt=prompt, **_common(payload))


def embedding_inputs(payload: Mapping[str, Any]) -> tuple[str, list[str]]:
    value = payload.get("input")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise BadRequestError("input must be a string or a non-empty list of strings")
    return _model(payload), inputs


def wants_stream(payload: Mapping[str, Any]) -> bool:
    return payload.get("stream") is True


def wants_usage(payload: Mapping[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _model(payload: Mapping[str, Any]) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequestError("model must be a non-empty string naming a served model")
    return model


def _message(entry: object) -> ChatMessage:
    if not isinstance(entry, dict) or not isinstance(entry.get("role"), str):
        raise BadRequestError("each message must be an object with a role and content")
    content = entry.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise BadRequestError("message content must be a string or a list of text parts")
    return ChatMessage(entry["role"], content)


def _common(payload: Mapping[str, Any]) -> dict[str, Any]:
    stop = payload.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    max_tokens = payload.get("max_tokens", payload.get("max_completion_tokens"))
    return {
        "max_tokens": _number(max_tokens, "max_tokens", int),
        "temperature": _number(payload.get("temperature"), "temperature", float),
        "top_p": _number(payload.get("top_p"), "top_p", float),
        "stop": tuple(str(s) for s in stops),
        "seed": _number(payload.get("seed"), "seed", int),
        "extra": {key: value for key, value in payload.items() if key not in _MODELLED},
    }


def _number(value: object, name: str, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequestError(f"{name} must be a number")
    if kind is int and not isinstance(value, int):
        raise BadRequestError(f"{name} must be a whole number")
    return value


# -- answers ---------------------------------------------------------------


def response_body(response: ChatResponse, route: str, kind: str) -> dict[str, Any]:
    """The engine's own body when it is OpenAI-shaped (keeps tool calls, logprobs), else built."""
    if isinstance(response.raw.get("choices"), list):
        return {**response.raw, "model": route}
    usage = response.usage
    choice: dict[str, Any] = {"index": 0, "finish_reason": response.finish_reason}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": response.text}
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
        if chunk.content is not None or chunk.finish_reason is not None:
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

    def _choice(self, chunk: ChatChunk) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": chunk.finish_reason}
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if self._first:
                delta["role"] = "assistant"
                self._first = False
            if chunk.content is not None:
                delta["content"] = chunk.content
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


def error_body(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "code": code, "param": None}}


def sse_error(message: str, error_type: str, code: str | None) -> bytes:
    return _sse(error_body(message, error_type, code))


def _sse(body: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
