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
  assembles the whole answer (``whole_from_stream``, which llama-server gets
  too: it stops a stream at once and a whole answer only within a second), so
  a client that leaves stops it (its connection is cut);
- its named chat formats (``gemma``, ``chatml``..., which yoyu picks when the
  file's own template is missing or unusable) keep only the text of user,
  assistant and system turns: a tool's result, an assistant's tool call and
  content parts vanished from the prompt without a word (the real Gemma saw
  20 of an agent turn's tokens), and Gemma's drops system turns. Under a named
  format they become text turns (``plain_turns``), as the model's own
  template would have written them. llama-server's built-in templates (the
  same names, rendered without Jinja) get the same, without ``tools``, which
  it refuses unless Jinja renders the prompt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from yoyu.backends.llamacpp_flags import EngineKind
from yoyu.backends.protocol import ChatMessage, ChatRequest, CompletionRequest
from yoyu.errors import BackendRequestError

PYTHON_ENGINE: EngineKind = "llama-cpp-python"
_ROLE_FOR_PYTHON_ENGINE = {"developer": "system"}
_NO_SYSTEM_TURN = frozenset({"gemma"})  # llama-cpp-python's formats that drop system turns
_TOOL = "tool"
_TOOL_FIELDS = frozenset({"tools", "tool_choice", "parallel_tool_calls"})


def chat_for_engine(
    request: ChatRequest, engine: EngineKind, chat_format: str | None = None
) -> ChatRequest:
    """``request`` as ``engine`` understands it; a BackendRequestError (400) when it cannot.

    ``chat_format`` is the named format llama-cpp-python was started with (None: the
    file's own template, which is given every message as sent).
    """
    if engine != PYTHON_ENGINE:
        return _for_builtin_template(request) if chat_format is not None else request
    _refuse_several_choices(request.extra)
    messages = tuple(_known_role(message) for message in request.messages)
    if chat_format is not None and not _takes_tools(chat_format):
        messages = plain_turns(messages, merge_system=chat_format in _NO_SYSTEM_TURN)
    return dataclasses.replace(request, messages=messages)


def _for_builtin_template(request: ChatRequest) -> ChatRequest:
    """llama-server with one of its built-in (non-Jinja) templates: they predate the
    developer role, render text turns only, and it refuses ``tools`` without Jinja; so
    tool turns become text and the offer of tools is left out (the model has no
    template that could show it)."""
    extra = {key: value for key, value in request.extra.items() if key not in _TOOL_FIELDS}
    known = tuple(_known_role(message) for message in request.messages)
    return dataclasses.replace(
        request, messages=plain_turns(known, merge_system=False), extra=extra
    )


def plain_turns(messages: Sequence[ChatMessage], *, merge_system: bool) -> tuple[ChatMessage, ...]:
    """Every message as a user, assistant or system turn of text, nothing dropped.

    A tool call becomes the assistant's words ``[called mul({"a":6})]``, a tool's
    result a user turn ``[mul returned] 42``; with ``merge_system`` (formats with no
    system turn) the system text leads the first user turn.
    """
    turns = [_plain(message) for message in messages]
    if not merge_system:
        return tuple(turns)
    system = "\n\n".join(turn.text for turn in turns if turn.role == "system")
    rest = [turn for turn in turns if turn.role != "system"]
    first_user = next((i for i, turn in enumerate(rest) if turn.role == "user"), None)
    if system and first_user is not None:
        lead = rest[first_user]
        rest[first_user] = ChatMessage("user", f"{system}\n\n{lead.text}")
    elif system:
        rest.insert(0, ChatMessage("user", system))
    return tuple(rest)


def _takes_tools(chat_format: str) -> bool:
    """llama-cpp-python's tool-calling handlers (chatml-function-calling, functionary...)
    read tool turns themselves."""
    return "function" in chat_format


def _plain(message: ChatMessage) -> ChatMessage:
    if message.role == "tool":
        name = message.extra.get("name") or _TOOL
        return ChatMessage("user", f"[{name} returned] {message.text}")
    calls = message.extra.get("tool_calls")
    words = [message.text] if message.text else []
    if message.role == "assistant" and isinstance(calls, list):
        words += [_called(call) for call in calls if isinstance(call, Mapping)]
    return ChatMessage(message.role, "\n".join(words))


def _called(call: Mapping[str, object]) -> str:
    function = call.get("function")
    if not isinstance(function, Mapping):
        return f"[called {_TOOL}]"
    return f"[called {function.get('name', _TOOL)}({function.get('arguments', '')})]"


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


def whole_from_stream(engine: EngineKind, extra: Mapping[str, object]) -> bool:
    """Whether to stream a whole answer from ``engine`` and assemble it here.

    A stream stops the moment its connection is cut. llama-cpp-python does not
    notice a gone client of a whole answer at all; llama-server checks once a
    second (measured on the real Gemma: 1.9 CPU-seconds more per abandoned
    answer, 0.03 when streamed). The fold keeps one choice and no logprobs, so a
    request for those goes to llama-server whole.
    """
    if engine == PYTHON_ENGINE:
        return True
    n = extra.get("n")
    return not ((isinstance(n, int) and n > 1) or extra.get("logprobs"))


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
