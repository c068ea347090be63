"""One chaos client request and what became of it, judged the way a client program sees it.

A request either gets its answer, or a *clean* failure that a client library
can act on: a status with OpenAI's error object, or, once a stream has begun,
an SSE ``data: {"error": ...}`` event. Anything else is *unclean*: a reset
connection, a stream that stops without ``[DONE]`` or an error event, a body
that is not OpenAI's error shape, or no answer within the timeout (a hang).
The chaos benchmark's promise is that the unclean count stays at zero while
engines die under it.

Outcomes are short strings, so a run's tally is a ``Counter``:

    answered                 the answer, whole, or the stream to ``[DONE]``
    left                     the client hung up mid-stream on purpose
    503 service_unavailable  a clean error: the status and the error's type
    stream error: backend_error   a clean error event inside a stream
    unclean: reset | hang | truncated | malformed
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

ANSWERED = "answered"
LEFT = "left"
UNCLEAN = "unclean: "


@dataclass(frozen=True)
class ChaosRequest:
    """One planned request: which name it asks for, and how it reads the answer."""

    index: int
    model: str
    stream: bool
    leave_after_first: bool = False  # hang up after the first event (a stream only)
    max_tokens: int = 8


@dataclass(frozen=True)
class Outcome:
    request: ChaosRequest
    result: str  # one of the module's outcome strings
    route: str  # the served model that answered (x-yoyu-route), "" when none did
    seconds: float

    @property
    def clean(self) -> bool:
        return not self.result.startswith(UNCLEAN)


def send(client: httpx.Client, request: ChaosRequest, route_header: str) -> Outcome:
    """Send ``request`` and classify what came back; never raises for what the server did."""
    started = time.perf_counter()
    body = {
        "model": request.model,
        "messages": [{"role": "user", "content": f"Count to three. ({request.index})"}],
        "max_tokens": request.max_tokens,
        "stream": request.stream,
    }
    route = ""
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            route = response.headers.get(route_header, "")
            if response.status_code != 200:
                result = _error_status(response.status_code, response.read())
            elif request.stream:
                result = _read_stream(response, request.leave_after_first)
            else:
                result = _whole(response.read())
    except httpx.TimeoutException:
        result = UNCLEAN + "hang"
    except httpx.TransportError:
        result = UNCLEAN + "reset"
    return Outcome(request, result, route, time.perf_counter() - started)


def _error_status(status: int, raw: bytes) -> str:
    """``"503 service_unavailable"`` for OpenAI's error object; unclean for anything else."""
    error = _json(raw).get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return UNCLEAN + "malformed"
    return f"{status} {error.get('type') or 'error'}"


def _whole(raw: bytes) -> str:
    choices = _json(raw).get("choices")
    return ANSWERED if isinstance(choices, list) and choices else UNCLEAN + "malformed"


def _read_stream(response: httpx.Response, leave_after_first: bool) -> str:
    """Read server-sent events to ``[DONE]`` or an error event (or leave after the first)."""
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line.removeprefix("data: ")
        if data == "[DONE]":
            return ANSWERED
        event = _json(data.encode())
        if not event:
            return UNCLEAN + "malformed"
        error = event.get("error")
        if isinstance(error, dict):
            return f"stream error: {error.get('type') or 'error'}"
        if leave_after_first:
            return LEFT  # closing the response here drops the connection mid-stream
    return UNCLEAN + "truncated"


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
