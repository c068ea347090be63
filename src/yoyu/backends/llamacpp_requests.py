"""Each llama.cpp server's dialect of the OpenAI API, so a client's request reaches it whole.

llama-server speaks the current schema (the ``developer`` role, ``n`` up to
its slots, token-id prompts, tool calls). llama-cpp-python's server (0.3.x)
does not, and answers what it cannot parse with a 422 of pydantic errors or a
500 with its traceback. Measured with its server and the openai client:

- ``role: "developer"`` (what current OpenAI SDK agents send for system
  instructions) is unknown to it: sent as ``system``, which it knows;
- ``n`` > 1 gets one choice, silently: refused here with a 400 naming ``n``;
- a ``prompt`` of token ids is refused by its schema: a 400 saying to send text;
- it notices a client that left only while streaming, so a whole answer it
  was asked for kept it generating for nobody: yoyu streams from it and
  assembles the whole answer (``whole_from_stream``), so a client that leaves
  stops it (its connection is cut, and its stream loop checks for that).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from yoyu.backends.llamacpp_flags import EngineKind
from yoyu.backends.protocol import ChatMessage, ChatRequest, CompletionRequest
from yoyu.errors import BackendRequestError

PYTHON_ENGINE: EngineKind = "llama-cpp-python"
_ROLE_FOR_PYTHON_ENGINE = {"developer": "system"}


def chat_for_engine(request: ChatRequest, engine: EngineKind) -> ChatRequest:
    """``request`` as ``engine`` understands it; a BackendRequestError (400) when it cannot."""
    if engine != PYTHON_ENGINE:
        return request
    _refuse_several_choices(request.extra)
    messages = tuple(_known_role(message) for message in request.messages)
    return dataclasses.replace(request, messages=messages)


def completion_for_engine(request: CompletionRequest, engine: EngineKind) -> CompletionRequest:
    if engine != PYTHON_ENGINE:
        return request
    _refuse_several_choices(request.extra)
    if not isinstance(request.prompt, str):
        raise BackendRequestError(
            "llama-cpp-python's server takes the prompt as text, not token ids; send text, "
            "or serve the model with llama-server",
            status_code=400,
            param="prompt",
        )
    return request


def whole_from_stream(engine: EngineKind) -> bool:
    """Whether a whole answer must be streamed from ``engine`` to be stoppable."""
    return engine == PYTHON_ENGINE


def _known_role(message: ChatMessage) -> ChatMessage:
    role = _ROLE_FOR_PYTHON_ENGINE.get(message.role)
    return message if role is None else dataclasses.replace(message, role=role)


def _refuse_several_choices(extra: Mapping[str, object]) -> None:
    n = extra.get("n")
    if isinstance(n, int) and n > 1:
        raise BackendRequestError(
            f"n={n}: llama-cpp-python's server gives one choice per request; send {n} "
            "requests, or serve the model with llama-server (n up to its parallel slots)",
            status_code=400,
            param="n",
        )
