"""Ollama's wire format both ways, without a server: bodies in, OpenAI requests out;
answers and streams in, Ollama's bodies and NDJSON lines out (``ollama_wire``), and
the listing shapes (``ollama_listing``)."""

from __future__ import annotations

import base64
import json
import math

import pytest

from yoyu.backends.ollama import ollama_message
from yoyu.backends.protocol import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EngineTimings,
    Usage,
)
from yoyu.errors import BadRequestError, UnknownModelError
from yoyu.gateway import ollama_listing as listing
from yoyu.gateway import ollama_wire as ollama
from yoyu.gateway.residency import ResidentInfo
from yoyu.gateway.service import ModelEntry

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 16).decode()
HI = [{"role": "user", "content": "hi"}]
TOOL_TURNS = [
    {"role": "user", "content": "6 times 7, and the weather?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "mul", "arguments": {"a": 6, "b": 7}}},
        {"function": {"name": "weather", "arguments": {"city": "Kyoto"}}},
    ]},
    {"role": "tool", "tool_name": "weather", "content": "sunny"},
    {"role": "tool", "tool_name": "mul", "content": "42"},
]  # fmt: skip


def chat(**body: object) -> ChatRequest:
    call = ollama.chat_call({"model": "m", "messages": HI, **body})
    assert isinstance(call.request, ChatRequest)
    return call.request


# -- requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(300, 300.0), (0, 0.0), ("0", 0.0), ("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3),
     ("1.5h", 5400.0), ("2s", 2.0), ("10", 10.0), (-1, math.inf), ("-1m", math.inf),
     ("-1", math.inf), (None, None)],
)  # fmt: skip
def test_keep_alive_reads_seconds_and_go_durations(value: object, seconds: float | None) -> None:
    assert ollama.keep_alive_seconds(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "m5", True, [1], {"s": 1}])
def test_a_keep_alive_that_is_no_duration_is_refused_naming_it(value: object) -> None:
    with pytest.raises(BadRequestError, match="keep_alive") as caught:
        ollama.keep_alive_seconds(value)
    assert caught.value.http_status == 400


def test_chat_maps_options_onto_openai_fields_and_leaves_runner_options_to_the_plan() -> None:
    options = {
        "num_predict": 12, "temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": ["\n\n"],
        "top_k": 20, "repeat_penalty": 1.1, "num_ctx": 8192, "num_gpu": 99, "unknown": 1,
    }  # fmt: skip
    request = chat(options=options)
    assert (request.max_tokens, request.temperature, request.top_p) == (12, 0.2, 0.9)
    assert (request.seed, request.stop) == (7, ("\n\n",))
    assert request.extra["top_k"] == 20 and request.extra["repeat_penalty"] == 1.1
    assert not {"num_ctx", "num_gpu", "unknown", "options"} & set(request.extra)


def test_ollama_defaults_mean_the_engines_own() -> None:
    request = chat(options={"num_predict": -1, "seed": -1})
    assert request.max_tokens is None and request.seed is None
    assert chat(options={"num_predict": -2}).max_tokens is None


@pytest.mark.parametrize(
    ("options", "named"),
    [({"num_predict": "ten"}, "num_predict"), ({"temperature": "hot"}, "temperature"),
     ({"num_ctx": 1.5e9, "top_k": True}, "top_k"), ({"stop": [1]}, "stop"),
     ({"use_mmap": 1}, "use_mmap")],
)  # fmt: skip
def test_an_option_of_the_wrong_type_is_a_400_naming_it(
    options: dict[str, object], named: str
) -> None:
    with pytest.raises(BadRequestError, match=named) as caught:
        chat(options=options)
    assert caught.value.param == f"options.{named}"


def test_format_json_or_a_schema_becomes_a_response_format() -> None:
    assert chat(format="json").extra["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    assert chat(format=schema).extra["response_format"] == {"type": "json_object", "schema": schema}
    assert "response_format" not in chat(format="").extra
    with pytest.raises(BadRequestError, match="format"):
        chat(format="yaml")


def test_think_becomes_the_template_switch_and_a_level_an_effort() -> None:
    assert chat(think=False).extra["chat_template_kwargs"] == {"enable_thinking": False}
    high = chat(think="max").extra
    assert high["chat_template_kwargs"] == {"enable_thinking": True}
    assert high["reasoning_effort"] == "high"
    with pytest.raises(BadRequestError, match="think"):
        chat(think="lots")


def test_images_become_data_url_parts_of_their_own_type() -> None:
    request = chat(messages=[{"role": "user", "content": "what is this?", "images": [PNG, JPEG]}])
    parts = request.messages[0].content
    assert isinstance(parts, list)
    assert parts[0] == {"type": "text", "text": "what is this?"}
    assert parts[1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"  # type: ignore[index]
    assert parts[2]["image_url"]["url"].startswith("data:image/jpeg;base64,")  # type: ignore[index]
    with pytest.raises(BadRequestError, match="not base64"):
        chat(messages=[{"role": "user", "content": "x", "images": ["%%%"]}])


def test_tool_calls_get_ids_and_string_arguments_and_results_find_their_call() -> None:
    request = chat(messages=TOOL_TURNS, tools=[{"type": "function", "function": {"name": "mul"}}])
    assistant, weather, product = request.messages[1], request.messages[2], request.messages[3]
    calls = assistant.extra["tool_calls"]
    assert isinstance(calls, list)
    assert [c["id"] for c in calls] == ["call_0", "call_1"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": 6, "b": 7}
    # Results answer by tool name, whatever their order.
    assert weather.extra["tool_call_id"] == "call_1" and weather.extra["name"] == "weather"
    assert product.extra["tool_call_id"] == "call_0"
    assert request.extra["tools"] == [{"type": "function", "function": {"name": "mul"}}]


def test_the_ollama_backend_turns_the_translated_messages_back_into_the_same_ones() -> None:
    """The two directions agree: Ollama -> OpenAI here, OpenAI -> Ollama in the backend."""
    request = chat(messages=TOOL_TURNS)
    back = [ollama_message(message) for message in request.messages]
    assert back[1]["tool_calls"] == [
        {"function": {"name": "mul", "arguments": {"a": 6, "b": 7}}},
        {"function": {"name": "weather", "arguments": {"city": "Kyoto"}}},
    ]
    assert [(m["role"], m["content"]) for m in back] == [
        (turn["role"], turn["content"]) for turn in TOOL_TURNS
    ]
    assert back[2]["tool_name"] == "weather"


def test_no_messages_or_an_empty_prompt_is_a_load_or_unload() -> None:
    call = ollama.chat_call({"model": "m", "messages": [], "keep_alive": 0})
    assert call.request is None and call.keep_alive_s == 0
    loaded = ollama.generate_call({"model": "m", "keep_alive": "10m"})
    assert loaded.request is None and loaded.keep_alive_s == 600
    assert loaded.stream  # Ollama streams unless told not to


def test_generate_goes_through_the_chat_template_unless_raw_or_a_suffix() -> None:
    call = ollama.generate_call({"model": "m", "prompt": "Why?", "system": "Be brief.",
                                 "stream": False, "template": "", "suffix": ""})  # fmt: skip
    assert isinstance(call.request, ChatRequest) and not call.stream
    assert [(m.role, m.content) for m in call.request.messages] == [
        ("system", "Be brief."), ("user", "Why?")
    ]  # fmt: skip
    raw = ollama.generate_call({"model": "m", "prompt": "<s>[INST]", "raw": True})
    assert isinstance(raw.request, CompletionRequest) and raw.request.prompt == "<s>[INST]"
    fim = ollama.generate_call({"model": "m", "prompt": "def f(", "suffix": "return x"})
    assert isinstance(fim.request, CompletionRequest)
    assert fim.request.extra["suffix"] == "return x"


@pytest.mark.parametrize(
    ("body", "named"),
    [({"template": "{{ .Prompt }}"}, "template"), ({"context": [1, 2, 3]}, "context"),
     ({"raw": True, "images": [PNG]}, "images"), ({"raw": True, "system": "Be."}, "system"),
     ({"stream": "yes"}, "stream"),
     ({"model": ""}, "model"), ({"prompt": 5}, "prompt")],
)  # fmt: skip
def test_generate_refuses_what_it_cannot_honour(body: dict[str, object], named: str) -> None:
    with pytest.raises(BadRequestError, match=named):
        ollama.generate_call({"model": "m", "prompt": "hi", **body})


def test_embed_inputs_and_dimensions() -> None:
    assert ollama.embed_inputs({"model": "m", "input": "a"}) == ("m", ["a"])
    assert ollama.embed_inputs({"model": "m", "input": ["a", "b"]}) == ("m", ["a", "b"])
    assert ollama.embed_inputs({"model": "m"}) == ("m", [])
    with pytest.raises(BadRequestError, match="input"):
        ollama.embed_inputs({"model": "m", "input": [1]})
    assert ollama.embed_dimensions({"dimensions": 2}) == 2
    with pytest.raises(BadRequestError, match="dimensions"):
        ollama.embed_dimensions({"dimensions": -3})


def test_model_names_with_the_default_tag_find_the_served_model() -> None:
    known = {"tiny", "qwen:7b"}.__contains__
    assert ollama.model_name("tiny:latest", known) == "tiny"
    assert ollama.model_name("qwen:7b", known) == "qwen:7b"
    assert ollama.model_name("ghost:latest", known) == "ghost:latest"


# -- answers -------------------------------------------------------------------


def response(**fields: object) -> ChatResponse:
    values: dict[str, object] = {
        "id": "x", "model": "m", "text": "Hello.", "finish_reason": "stop",
        "usage": Usage(prompt_tokens=11, completion_tokens=3), "elapsed_s": 0.5,
    }  # fmt: skip
    return ChatResponse(**(values | fields))  # type: ignore[arg-type]


def test_rfc3339_with_nanoseconds_as_go_writes_it() -> None:
    assert ollama.rfc3339_nano(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert ollama.rfc3339_nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert ollama.rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_a_whole_chat_answer_has_ollamas_fields_and_nanosecond_durations() -> None:
    timings = EngineTimings(prompt_tokens=11, prompt_ms=20.0, decode_tokens=3, decode_ms=30.0)
    answer = response(engine_timings=timings, finish_reason="length")
    body = ollama.chat_body(answer, "tiny:latest", ollama.response_durations(answer, 90_000_000))
    assert body["model"] == "tiny:latest" and body["done"] is True
    assert body["message"] == {"role": "assistant", "content": "Hello."}
    assert body["done_reason"] == "length"
    assert body["total_duration"] == 90_000_000
    assert (body["prompt_eval_count"], body["prompt_eval_duration"]) == (11, 20_000_000)
    assert (body["eval_count"], body["eval_duration"]) == (3, 30_000_000)
    assert "load_duration" not in body  # not known: left out, as Ollama leaves out zeros


def test_without_engine_timings_the_whole_answer_time_is_the_eval_time() -> None:
    fields = ollama.response_durations(response(), 600_000_000).fields()
    assert fields["eval_duration"] == 500_000_000 and "prompt_eval_duration" not in fields


def test_openai_tool_calls_come_back_with_their_arguments_as_an_object() -> None:
    call = {"id": "call_9", "type": "function",
            "function": {"name": "mul", "arguments": '{"a": 6, "b": 7}'}}  # fmt: skip
    message = {"role": "assistant", "content": None, "reasoning_content": "multiply",
               "tool_calls": [call]}  # fmt: skip
    raw = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}]}
    answer = response(text="", finish_reason="tool_calls", raw=raw)
    body = ollama.chat_body(answer, "m", ollama.Durations(1))
    assert body["done_reason"] == "stop"  # Ollama says "stop" when a tool is called
    assert body["message"]["thinking"] == "multiply"
    assert body["message"]["tool_calls"] == [
        {"id": "call_9", "function": {"index": 0, "name": "mul", "arguments": {"a": 6, "b": 7}}}
    ]
    generated = ollama.generate_body(answer, "m", ollama.Durations(1))
    assert generated["response"] == "" and generated["tool_calls"][0]["function"]["name"] == "mul"


def test_arguments_that_are_not_a_json_object_are_kept_raw_not_lost() -> None:
    calls = [{"function": {"name": "f", "arguments": "not json"}}]
    assert ollama.ollama_tool_calls(calls)[0]["function"]["arguments"] == {"_raw": "not json"}


def test_a_stream_becomes_ndjson_lines_with_tool_calls_whole_and_a_done_line() -> None:
    writer = ollama.NdjsonWriter("chat", "m", started_ns=0)
    chunks = [
        ChatChunk("Hel", 0.10),
        ChatChunk("lo", 0.15),
        ChatChunk(None, 0.20, tool_calls=({"index": 0, "id": "call_1", "type": "function",
                                           "function": {"name": "mul", "arguments": ""}},)),
        ChatChunk(None, 0.25, tool_calls=({"index": 0, "function": {"arguments": '{"a": 6,'}},)),
        ChatChunk(None, 0.30, tool_calls=({"index": 0, "function": {"arguments": ' "b": 7}'}},)),
        ChatChunk(None, 0.35, finish_reason="length"),
        ChatChunk(None, 0.40, usage=Usage(prompt_tokens=9, completion_tokens=4)),
    ]  # fmt: skip
    data = b"".join(writer.chunk(chunk) for chunk in chunks) + writer.done()
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert [line["message"]["content"] for line in lines[:2]] == ["Hel", "lo"]
    assert all(line["done"] is False for line in lines[:3])
    assert lines[2]["message"]["tool_calls"] == [
        {"id": "call_1", "function": {"index": 0, "name": "mul", "arguments": {"a": 6, "b": 7}}}
    ]
    done = lines[3]
    assert done["done"] is True and done["done_reason"] == "length"
    assert (done["prompt_eval_count"], done["eval_count"]) == (9, 4)
    assert done["prompt_eval_duration"] == 100_000_000  # to the first piece
    assert done["eval_duration"] == 300_000_000  # from it to the last event
    assert len(lines) == 4


def test_a_generate_stream_carries_response_text() -> None:
    writer = ollama.NdjsonWriter("generate", "m", started_ns=0)
    first = json.loads(writer.chunk(ChatChunk("Once", 0.1)))
    assert first["response"] == "Once" and "message" not in first
    assert writer.chunk(ChatChunk("", 0.2)) == b""  # half a character: no line
    done = json.loads(writer.done())
    assert done["response"] == "" and done["eval_count"] == 1  # no usage: pieces counted


def test_load_and_unload_answers() -> None:
    assert ollama.action_body("chat", "m", "unload")["message"] == {
        "role": "assistant", "content": ""
    }  # fmt: skip
    loaded = ollama.action_body("generate", "m", "load")
    assert (loaded["response"], loaded["done"], loaded["done_reason"]) == ("", True, "load")


def test_errors_in_ollamas_shape_and_an_unknown_model_as_ollama_words_it() -> None:
    unknown = UnknownModelError("model 'x' is not served here; ask for one of: a, b")
    assert ollama.error_body(unknown, "x") == {"error": "model 'x' not found; ask for one of: a, b"}
    assert ollama.error_body(BadRequestError("stream must be true or false")) == {
        "error": "stream must be true or false"
    }


def test_embed_vectors_are_scaled_to_length_one_and_cut_to_dimensions() -> None:
    assert ollama.normalized([3.0, 4.0]) == [0.6, 0.8]
    assert ollama.normalized([3.0, 4.0, 12.0], dimensions=2) == [0.6, 0.8]
    assert ollama.normalized([0.0, 0.0]) == [0.0, 0.0]


# -- listing -------------------------------------------------------------------


def test_a_name_is_listed_with_the_details_of_the_model_that_answers_for_it() -> None:
    entries = {
        "tiny": ModelEntry("tiny", "model", backend="local", managed=True, size_bytes=1000),
        "fast": ModelEntry("fast", "route", targets=("tiny", "cloud")),
        "coder": ModelEntry("coder", "alias", targets=("fast",)),
    }
    assert listing.served_entry("coder", entries).id == "tiny"
    facts = listing.ModelFacts("coder", entries["tiny"], path="/m/tiny.gguf", modified_ns=1)
    tag = listing.tag_entry(facts)
    assert (tag["name"], tag["size"], len(tag["digest"])) == ("coder", 1000, 64)
    assert tag["modified_at"] == "1970-01-01T00:00:00.000000001Z"
    assert listing.digest(facts) != listing.digest(listing.ModelFacts("tiny", entries["tiny"]))


@pytest.mark.parametrize(
    ("params", "size"), [(268_098_176, "268.10M"), (7_615_616_512, "7.6B"), (110_912, "110.91K")]
)
def test_parameter_sizes_read_as_ollama_prints_them(params: int, size: str) -> None:
    assert listing.parameter_size(params) == size


def test_ps_says_when_the_ttl_runs_out_and_far_off_without_one() -> None:
    entry = ModelEntry("tiny", "model")
    facts = listing.ModelFacts("tiny", entry, settings={"n_ctx": 256})
    now = 1_700_000_000 * ollama.NS_PER_S
    idle = ResidentInfo("tiny", "local", 5 << 20, in_flight=0, idle_s=2.0, pinned=False, ttl_s=10)
    shown = listing.process_entry(facts, idle, now)
    assert shown["expires_at"] == ollama.rfc3339_nano(now + 8 * ollama.NS_PER_S)
    assert (shown["size"], shown["size_vram"], shown["context_length"]) == (5 << 20, 0, 256)
    kept = ResidentInfo("tiny", "local", 1, in_flight=0, idle_s=2.0, pinned=False, ttl_s=0)
    assert listing.process_entry(facts, kept, now)["expires_at"] > "2100"
