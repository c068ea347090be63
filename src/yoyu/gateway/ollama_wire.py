"""Ollama's ``/api/*`` JSON shapes, translated onto the OpenAI requests the service takes.

Pure functions on dicts, like ``wire`` for OpenAI: an Ollama body becomes the
OpenAI body it means, which ``wire`` then parses and checks (one set of
checks, one set of pass-through rules), and an answer becomes Ollama's body or
NDJSON lines. The shapes follow Ollama's own source, ``api/types.go`` and
``server/routes.go`` at v0.33.0-rc2 (commit fb30760996871fa9460115c753afd2c60d4ab0f7)::

    /api/chat      messages (images as base64, tool_calls with arguments as an
                   object, tool_name), tools, format, options, think, keep_alive
                   -> ChatRequest
    /api/generate  prompt + system -> ChatRequest (the model's chat template, as
                   Ollama applies its own); raw or suffix -> CompletionRequest
    options        num_predict -> max_tokens, temperature, top_p, seed, stop;
                   llama.cpp's samplers (top_k, min_p, repeat_penalty...) pass on;
                   runner options (num_ctx, num_gpu...) are the plan's to decide
    format         "json" or a JSON schema -> response_format (llama.cpp's form)
    keep_alive     seconds, or a Go duration ("5m", "1h30m"); negative: forever
    answers        done_reason, created_at (RFC 3339, nanoseconds), durations in
                   nanoseconds, prompt_eval_count, eval_count
    errors         {"error": "message"} with the status; mid-stream, one such line

``stream`` defaults to true, as in Ollama.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yoyu.backends.protocol import ChatChunk, ChatRequest, ChatResponse, CompletionRequest
from yoyu.errors import BadRequestError, UnknownModelError, YoyuError
from yoyu.gateway import wire

OLLAMA_VERSION = "0.33.0"  # the Ollama release whose API this layer follows
NS_PER_S = 1_000_000_000
FOREVER_S = math.inf
Generation = ChatRequest | CompletionRequest

# Ollama option -> (OpenAI field, kind). Kinds follow Ollama's ``Options.FromMap``.
_SAMPLING: dict[str, tuple[str, str]] = {
    "temperature": ("temperature", "float"),
    "top_p": ("top_p", "float"),
    "seed": ("seed", "int"),
    "top_k": ("top_k", "int"),
    "min_p": ("min_p", "float"),
    "typical_p": ("typical_p", "float"),
    "repeat_penalty": ("repeat_penalty", "float"),
    "repeat_last_n": ("repeat_last_n", "int"),
    "presence_penalty": ("presence_penalty", "float"),
    "frequency_penalty": ("frequency_penalty", "float"),
    "mirostat": ("mirostat", "int"),
    "mirostat_tau": ("mirostat_tau", "float"),
    "mirostat_eta": ("mirostat_eta", "float"),
}
# Chosen when a model is loaded: yoyu's plan and the served settings decide them.
_RUNNER: dict[str, str] = {
    "num_ctx": "int", "num_batch": "int", "num_gpu": "int", "main_gpu": "int",
    "num_thread": "int", "use_mmap": "bool", "num_keep": "int", "draft_num_predict": "int",
    "low_vram": "bool", "numa": "bool", "penalize_newline": "bool", "tfs_z": "float",
}  # fmt: skip
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_IMAGE_TYPES = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)
_DONE_REASONS = {"length": "length", "stop": "stop"}  # tool_calls and the rest: "stop"


@dataclass(frozen=True)
class OllamaCall:
    """One ``/api/chat`` or ``/api/generate`` request, translated.

    ``request`` is None when there is nothing to generate (no messages, an
    empty prompt): Ollama then loads the model, or unloads it with
    ``keep_alive`` 0. ``keep_alive_s`` is None when the client did not say,
    ``FOREVER_S`` for a negative value.
    """

    model: str
    request: Generation | None
    stream: bool
    keep_alive_s: float | None


# -- requests ----------------------------------------------------------------


def chat_call(body: Mapping[str, Any]) -> OllamaCall:
    """``/api/chat``'s body as a chat request (or a load/unload when it has no messages)."""
    model = requested_model(body)
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise BadRequestError("messages must be a list of {role, content} objects")
    request = None
    if messages:
        payload = {**_generation_fields(body), "messages": openai_messages(messages)}
        if body.get("tools"):
            payload["tools"] = body["tools"]
        request = wire.chat_request({"model": model, **payload})
    return OllamaCall(model, request, _stream(body), keep_alive_seconds(body.get("keep_alive")))


def generate_call(body: Mapping[str, Any]) -> OllamaCall:
    """``/api/generate``'s body: the prompt through the model's chat template (as Ollama
    applies its own), or as is with ``raw`` or a ``suffix`` (fill in the middle)."""
    model = requested_model(body)
    prompt = _text(body, "prompt")
    _refuse_unsupported(body)
    request: Generation | None = None
    if prompt or _text(body, "suffix"):
        request = _generate_request(model, prompt, body)
    return OllamaCall(model, request, _stream(body), keep_alive_seconds(body.get("keep_alive")))


def _generate_request(model: str, prompt: str, body: Mapping[str, Any]) -> Generation:
    fields = _generation_fields(body)
    suffix = _text(body, "suffix")
    if body.get("raw") or suffix:
        if body.get("images") or _text(body, "system"):
            raise BadRequestError(
                "images and system need the chat template; drop raw and suffix to send them"
            )
        fields.pop("logprobs", None)  # a count in OpenAI's completions, not Ollama's flag
        extra = {"suffix": suffix} if suffix else {}
        return wire.completion_request({"model": model, "prompt": prompt, **fields, **extra})
    user: dict[str, Any] = {"role": "user", "content": prompt}
    if body.get("images"):
        user["images"] = body["images"]
    system = _text(body, "system")
    turns = [{"role": "system", "content": system}] if system else []
    payload = {**fields, "messages": openai_messages([*turns, user])}
    return wire.chat_request({"model": model, **payload})


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    """Fields yoyu cannot honour: refused rather than silently dropped."""
    if _text(body, "template"):
        raise BadRequestError(
            "template is not supported: the engine applies the model's own chat template; "
            "send raw=true with a prompt you formatted yourself",
            param="template",
        )
    if body.get("context"):
        raise BadRequestError(
            "context (token ids of an earlier answer) is not supported; keep the conversation "
            "in /api/chat messages instead",
            param="context",
        )


def _generation_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI fields of ``options``, ``format`` and ``think``."""
    fields = sampling_fields(body.get("options"))
    if "format" in body and body["format"] not in (None, ""):
        fields["response_format"] = response_format(body["format"])
    if body.get("think") is not None:
        fields |= think_fields(body["think"])
    for name in ("logprobs", "top_logprobs"):
        if body.get(name) is not None:
            fields[name] = body[name]
    return fields


def sampling_fields(options: object) -> dict[str, Any]:
    """Ollama's ``options`` as OpenAI request fields; runner options are checked and left
    to the plan (the served model's load settings), unknown ones ignored as Ollama does."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BadRequestError("options must be an object", param="options")
    fields: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name in _SAMPLING:
            target, kind = _SAMPLING[name]
            fields[target] = _option(name, value, kind)
        elif name in _RUNNER:
            _option(name, value, _RUNNER[name])
    if "num_predict" in options and options["num_predict"] is not None:
        predict = _option("num_predict", options["num_predict"], "int")
        if predict > 0:  # -1: until the end; -2: fill the context (the engine's own limit)
            fields["max_tokens"] = predict
    if options.get("stop") is not None:
        fields["stop"] = _stops(options["stop"])
    if fields.get("seed") is not None and fields["seed"] < 0:
        del fields["seed"]  # Ollama's -1: a random seed
    return fields


def _option(name: str, value: object, kind: str) -> Any:
    """A value checked as Ollama's ``Options.FromMap`` checks it (ints may come as floats)."""
    if isinstance(value, bool):
        if kind == "bool":
            return value
    elif isinstance(value, (int, float)) and kind in ("int", "float"):
        return int(value) if kind == "int" else float(value)
    words = {"int": "an integer", "float": "a number", "bool": "true or false"}
    raise BadRequestError(f"option {name!r} must be {words[kind]}", param=f"options.{name}")


def _stops(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise BadRequestError("option 'stop' must be a list of strings", param="options.stop")


def response_format(value: object) -> dict[str, Any]:
    """``"json"`` or a JSON schema, in the form both llama.cpp servers take (a schema
    under ``json_object``: llama-cpp-python knows no ``json_schema`` type)."""
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_object", "schema": value}
    raise BadRequestError('format must be "json" or a JSON schema object', param="format")


def think_fields(value: object) -> dict[str, Any]:
    """``think`` (true/false or "low"/"medium"/"high"/"max") as the chat template switch
    llama.cpp's servers read, and OpenAI's ``reasoning_effort`` for a level."""
    if isinstance(value, bool):
        return {"chat_template_kwargs": {"enable_thinking": value}}
    if value in ("low", "medium", "high", "max"):
        effort = "high" if value == "max" else value
        return {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": effort}
    raise BadRequestError(
        'think must be true, false, "low", "medium", "high" or "max"', param="think"
    )


def openai_messages(messages: Sequence[object]) -> list[dict[str, Any]]:
    """Ollama's messages as OpenAI's: images become content parts, tool calls get ids
    and their arguments as a JSON string, a tool's result is tied to its call."""
    translated: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (call id, tool name) not answered yet
    for index, entry in enumerate(messages):
        if not isinstance(entry, dict):
            raise BadRequestError(f"messages[{index}] must be an object with a role")
        message = _openai_message(entry, index)
        if message["role"] == "assistant" and message.get("tool_calls"):
            pending = [(c["id"], c["function"]["name"]) for c in message["tool_calls"]]
        elif message["role"] == "tool":
            message["tool_call_id"] = _answered_call(entry, pending)
        translated.append(message)
    return translated


def _openai_message(entry: Mapping[str, Any], index: int) -> dict[str, Any]:
    role = entry.get("role")
    message: dict[str, Any] = {
        "role": role.lower() if isinstance(role, str) else role,
        "content": _content(entry, index),
    }
    calls = entry.get("tool_calls")
    if calls:
        if not isinstance(calls, list):
            raise BadRequestError(f"messages[{index}].tool_calls must be a list")
        message["tool_calls"] = [_openai_tool_call(call, index, n) for n, call in enumerate(calls)]
    if isinstance(entry.get("tool_name"), str):
        message["name"] = entry["tool_name"]
    return message


def _content(entry: Mapping[str, Any], index: int) -> str | list[dict[str, Any]]:
    text = entry.get("content") or ""
    if not isinstance(text, str):
        raise BadRequestError(f"messages[{index}].content must be a string")
    images = entry.get("images") or []
    if not images:
        return text
    if not isinstance(images, list):
        raise BadRequestError(f"messages[{index}].images must be a list of base64 strings")
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    return parts + [image_part(image, index) for image in images]


def image_part(image: object, index: int) -> dict[str, Any]:
    """A base64 image as an OpenAI ``image_url`` part with a data URL of its own type."""
    try:
        data = base64.b64decode(image, validate=True) if isinstance(image, str) else b""
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        raise BadRequestError(f"messages[{index}].images holds something that is not base64")
    kind = next((mime for magic, mime in _IMAGE_TYPES if data.startswith(magic)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{kind};base64,{image}"}}


def _openai_tool_call(call: object, index: int, number: int) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequestError(f"messages[{index}].tool_calls[{number}] needs a function name")
    arguments = function.get("arguments") or {}
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call_id = call.get("id") if isinstance(call, dict) and call.get("id") else f"call_{number}"
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": function["name"], "arguments": text},
    }


def _answered_call(entry: Mapping[str, Any], pending: list[tuple[str, str]]) -> str:
    """The id of the call a tool's result answers: its own, else the first unanswered
    call of that tool's name, else the first unanswered call (Ollama keeps no ids)."""
    given = entry.get("tool_call_id")
    name = entry.get("tool_name")
    chosen = next((p for p in pending if p[0] == given), None)
    chosen = chosen or next((p for p in pending if p[1] == name), None)
    chosen = chosen or (pending[0] if pending else None)
    if chosen is not None:
        pending.remove(chosen)
        return chosen[0]
    return str(given or "call_0")


def keep_alive_seconds(value: object) -> float | None:
    """Seconds to keep a model after the request: a number of seconds or a Go duration
    ("5m", "1h30m", "300ms"); negative means forever. None: the client did not say."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return FOREVER_S if value < 0 else float(value)
    if isinstance(value, str):
        seconds = _go_duration(value.strip())
        if seconds is not None:
            return FOREVER_S if seconds < 0 else seconds
    raise BadRequestError(
        f"keep_alive {value!r} is not a duration; send seconds (300), a duration such as "
        '"5m" or "1h", 0 to unload, or -1 to keep the model loaded',
        param="keep_alive",
    )


def _go_duration(text: str) -> float | None:
    """A Go ``time.ParseDuration`` string in seconds (a bare number counts as seconds)."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    try:
        return sign * float(body)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(number + unit for number, unit in parts) != body:
        return None
    return sign * sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def embed_inputs(body: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``/api/embed``'s model and inputs (a string or a list of strings; may be empty)."""
    value = body.get("input")
    if value is None or value == "":
        return requested_model(body), []
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
        raise BadRequestError("input must be a string or a list of strings", param="input")
    return requested_model(body), inputs


def embed_dimensions(body: Mapping[str, Any]) -> int | None:
    value = body.get("dimensions")
    if value is None or value == 0:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise BadRequestError("dimensions must be a whole number above 0", param="dimensions")


def requested_model(body: Mapping[str, Any]) -> str:
    model = body.get("model") or body.get("name")  # "name": Ollama's deprecated spelling
    if not isinstance(model, str) or not model:
        raise BadRequestError("model is required", param="model")
    return model


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequestError(f"{name} must be a string", param=name)
    return value


def _stream(body: Mapping[str, Any]) -> bool:
    stream = body.get("stream", True)
    if stream is None:
        return True
    if not isinstance(stream, bool):
        raise BadRequestError("stream must be true or false", param="stream")
    return stream


# -- answers -----------------------------------------------------------------


def rfc3339_nano(epoch_ns: int) -> str:
    """``2026-12-04T06:49:37.123456789Z``: Go's ``time.RFC3339Nano`` in UTC (trailing
    zeros of the fraction dropped, as Go drops them)."""
    seconds, nanos = divmod(epoch_ns, NS_PER_S)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def done_reason(finish_reason: str | None) -> str:
    """OpenAI's finish reason as Ollama's: "length" stays, everything else (a tool call
    included, as Ollama reports it) is "stop"."""
    return _DONE_REASONS.get(finish_reason or "stop", "stop")


@dataclass(frozen=True)
class Durations:
    """What an answer cost, in nanoseconds (0: not known, left out as Ollama leaves it)."""

    total_ns: int
    prompt_eval_count: int = 0
    prompt_eval_ns: int = 0
    eval_count: int = 0
    eval_ns: int = 0
    load_ns: int = 0

    def fields(self) -> dict[str, int]:
        values = {
            "total_duration": self.total_ns,
            "load_duration": self.load_ns,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_ns,
            "eval_count": self.eval_count,
            "eval_duration": self.eval_ns,
        }
        return {name: value for name, value in values.items() if value > 0}


def response_durations(response: ChatResponse, total_ns: int) -> Durations:
    """Counts from the usage; times from the engine's own timings when it gives them,
    else the engine's whole answer time as the generation time."""
    usage, timings = response.usage, response.engine_timings
    if timings is not None:
        prompt_ns, eval_ns = int(timings.prompt_ms * 1e6), int(timings.decode_ms * 1e6)
    else:
        prompt_ns, eval_ns = 0, int(response.elapsed_s * NS_PER_S)
    return Durations(
        total_ns, usage.prompt_tokens or 0, prompt_ns, usage.completion_tokens, eval_ns
    )


def answer_message(response: ChatResponse) -> dict[str, Any]:
    """The assistant's message of a whole answer: text, thinking, tool calls."""
    message: dict[str, Any] = {"role": "assistant", "content": response.text}
    choice = _first_choice(response.raw)
    said = choice.get("message")
    said = said if isinstance(said, dict) else {}
    thinking = said.get("reasoning_content") or said.get("thinking")
    if isinstance(thinking, str) and thinking:
        message["thinking"] = thinking
    calls = said.get("tool_calls") or list(response.tool_calls)
    if calls:
        message["tool_calls"] = ollama_tool_calls(calls)
    return message


def chat_body(response: ChatResponse, model: str, durations: Durations) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": rfc3339_nano(time.time_ns()),
        "message": answer_message(response),
        "done": True,
        "done_reason": done_reason(response.finish_reason),
        **durations.fields(),
    }


def generate_body(response: ChatResponse, model: str, durations: Durations) -> dict[str, Any]:
    message = answer_message(response)
    body: dict[str, Any] = {
        "model": model,
        "created_at": rfc3339_nano(time.time_ns()),
        "response": message["content"],
    }
    if "thinking" in message:
        body["thinking"] = message["thinking"]
    body |= {"done": True, "done_reason": done_reason(response.finish_reason)}
    if "tool_calls" in message:
        body["tool_calls"] = message["tool_calls"]
    return body | durations.fields()


def action_body(kind: str, model: str, reason: str) -> dict[str, Any]:
    """The answer to a load (``reason`` "load") or an unload ("unload")."""
    body: dict[str, Any] = {"model": model, "created_at": rfc3339_nano(time.time_ns())}
    body |= (
        {"message": {"role": "assistant", "content": ""}} if kind == "chat" else {"response": ""}
    )
    return body | {"done": True, "done_reason": reason}


def ollama_tool_calls(calls: Sequence[object]) -> list[dict[str, Any]]:
    """OpenAI's tool calls (arguments as a JSON string) as Ollama's (an object)."""
    translated = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            continue
        entry: dict[str, Any] = {
            "function": {
                "index": index,
                "name": str(function.get("name") or ""),
                "arguments": _arguments(function.get("arguments")),
            }
        }
        if isinstance(call, Mapping) and call.get("id"):
            entry["id"] = call["id"]
        translated.append(entry)
    return translated


def _arguments(arguments: object) -> dict[str, Any]:
    """A JSON string parsed to its object; text that is not a JSON object is kept under
    ``_raw`` so the client sees what the model said rather than nothing."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def _first_choice(raw: Mapping[str, object]) -> Mapping[str, Any]:
    choices = raw.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


class NdjsonWriter:
    """Ollama's streamed lines for one answer: a line per piece of text, tool calls whole
    once their deltas are complete, then the ``done`` line with the counts and times."""

    def __init__(self, kind: str, model: str, started_ns: int) -> None:
        self.kind = kind
        self.model = model
        self.started_ns = started_ns  # perf_counter_ns when the request arrived
        self._calls: dict[int, dict[str, Any]] = {}
        self._pieces = 0
        self._first_s: float | None = None
        self._last: ChatChunk | None = None
        self._finish: str | None = None

    def chunk(self, chunk: ChatChunk) -> bytes:
        self._last = chunk
        self._finish = chunk.finish_reason or self._finish
        for delta in chunk.tool_calls:
            _merge_call(self._calls, delta)
        if not chunk.content:
            return b""
        self._pieces += 1
        if self._first_s is None:
            self._first_s = chunk.t_s
        return self._line(chunk.content, {"done": False})

    def done(self) -> bytes:
        """The tool calls (when any), then the closing line."""
        lines = b""
        if self._calls:
            calls = ollama_tool_calls([self._calls[i] for i in sorted(self._calls)])
            lines = self._line("", {"done": False}, tool_calls=calls)
        closing = {"done": True, "done_reason": done_reason(self._finish)}
        return lines + self._line("", closing | self._durations().fields())

    def error(self, error: YoyuError) -> bytes:
        return json_line(error_body(error))

    def _durations(self) -> Durations:
        last = self._last
        total = time.perf_counter_ns() - self.started_ns
        usage = last.usage if last else None
        timings = last.engine_timings if last else None
        if timings is not None:
            prompt_ns, eval_ns = int(timings.prompt_ms * 1e6), int(timings.decode_ms * 1e6)
        else:  # time to the first piece, then from it to the last chunk
            first = self._first_s or 0.0
            prompt_ns = int(first * NS_PER_S)
            eval_ns = int(((last.t_s if last else first) - first) * NS_PER_S)
        prompt_count = usage.prompt_tokens or 0 if usage else 0
        eval_count = usage.completion_tokens if usage else self._pieces
        return Durations(total, prompt_count, prompt_ns, eval_count, eval_ns)

    def _line(self, text: str, fields: dict[str, Any], **extra: Any) -> bytes:
        body: dict[str, Any] = {"model": self.model, "created_at": rfc3339_nano(time.time_ns())}
        if self.kind == "chat":
            body["message"] = {"role": "assistant", "content": text, **extra}
        else:
            body["response"] = text
            body |= extra
        return json_line(body | fields)


def _merge_call(calls: dict[int, dict[str, Any]], delta: Mapping[str, Any]) -> None:
    """One OpenAI tool-call delta into the call it continues (by index)."""
    index = delta.get("index", len(calls))
    call = calls.setdefault(
        index if isinstance(index, int) else len(calls),
        {"id": "", "function": {"name": "", "arguments": ""}},
    )
    call["id"] = delta.get("id") or call["id"]
    function = delta.get("function")
    if isinstance(function, Mapping):
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # an engine that sends the object whole
            arguments = json.dumps(arguments)
        call["function"]["name"] += str(function.get("name") or "")
        call["function"]["arguments"] += str(arguments or "")


def normalized(vector: Sequence[float], dimensions: int | None = None) -> list[float]:
    """A vector cut to ``dimensions`` and scaled to length 1, as Ollama's ``/api/embed``
    answers (its legacy ``/api/embeddings`` does not scale)."""
    kept = list(vector[:dimensions] if dimensions else vector)
    norm = math.sqrt(sum(value * value for value in kept))
    return [value / max(norm, 1e-12) for value in kept]


# -- errors ----------------------------------------------------------------


def error_body(error: YoyuError, model: str | None = None) -> dict[str, str]:
    """Ollama's ``{"error": "..."}``; an unknown model reads as Ollama says it."""
    message = str(error)
    if isinstance(error, UnknownModelError) and model:
        hint = message.partition("; ")[2]
        message = f"model '{model}' not found" + (f"; {hint}" if hint else "")
    return {"error": message}


def json_line(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def model_name(name: str, known: Callable[[str], bool]) -> str:
    """A name as served: Ollama clients add the default tag, ``model:latest``."""
    if not known(name) and name.endswith(":latest") and known(name[: -len(":latest")]):
        return name[: -len(":latest")]
    return name
