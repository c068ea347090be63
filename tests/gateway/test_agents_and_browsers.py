"""What agents send and what web pages send, through a real ``yoyu serve``.

Agents: a full tool-calling loop (call, tool result, final answer) with the real
``openai`` client, whole and streamed; every body field the client sends reaches
the engine unchanged; the ``developer`` role and a tool result reach llama-cpp-python
(which knows neither as sent); out-of-range parameters are a 400 naming them.
Browsers: a cross-origin "simple" POST, a foreign Host (DNS rebinding) and a foreign
Origin are refused before any route runs. Errors a client can act on: 503 with
Retry-After when every route is refused for memory, per-model states on /health.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.tiny_models import write_tiny_model

SETTINGS = "{ n_ctx = 256, n_batch = 64, n_ubatch = 64, seed = 1 }"
PAGE_ORIGIN = "http://127.0.0.1:9"  # a web page the user allowed (never contacted)
MUL_TOOL = {
    "type": "function",
    "function": {
        "name": "mul",
        "description": "Multiply two numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
}
QUESTION = {"role": "user", "content": "What is 6 times 7?"}
TOOL_TURN = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "mul", "arguments": '{"a":6,"b":7}'}}
    ],
}
TOOL_RESULT = {"role": "tool", "tool_call_id": "c1", "content": "42"}
JSON_TYPE = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(StubBehaviour(models=("stub-model",))) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("agents")
    tiny = write_tiny_model(folder / "tiny.gguf").path
    config = folder / "yoyu.toml"
    config.write_text(
        f"""
[server]
memory_floor = 0
health_interval_s = 3600
cors_origins = ["{PAGE_ORIGIN}"]

[backends.local]
kind = "llama.cpp"
start_timeout_s = 60

[backends.agentic]
kind = "openai"
base_url = "{stub.base_url}"
models = ["stub-model"]
remote = false

[served.tiny]
backend = "local"
path = "{tiny}"
settings = {SETTINGS}

[served.agent]
backend = "agentic"
upstream = "stub-model"

[aliases]
helper = "agent"
""",
        encoding="utf-8",
    )
    with GatewayProcess(["--config", str(config)], log_path=folder / "serve.log") as server:
        yield server


@pytest.fixture
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)


def last_body(stub: OpenAIStub) -> dict[str, Any]:
    body = stub.generation_requests()[-1].body
    assert body is not None
    return body


# -- agents ---------------------------------------------------------------------


def test_a_tool_loop_round_trips_whole(client: openai.OpenAI, stub: OpenAIStub) -> None:
    first = client.chat.completions.create(model="agent", messages=[QUESTION], tools=[MUL_TOOL])
    call = first.choices[0].message.tool_calls
    assert call is not None and call[0].function.name == "mul"
    assert json.loads(call[0].function.arguments) == {"a": 6, "b": 7}
    assert first.choices[0].finish_reason == "tool_calls"
    turn = first.choices[0].message.model_dump(exclude_none=True)
    result = {"role": "tool", "tool_call_id": call[0].id, "content": "42"}
    final = client.chat.completions.create(
        model="agent", messages=[QUESTION, turn, result], tools=[MUL_TOOL]
    )
    assert final.choices[0].message.content == f"The tool {call[0].id} said 42."
    forwarded = last_body(stub)["messages"]
    assert forwarded[1]["tool_calls"] == turn["tool_calls"]  # reached the engine whole
    assert forwarded[2] == result


def test_streamed_tool_calls_arrive_as_deltas(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="helper", messages=[QUESTION], tools=[MUL_TOOL], stream=True
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            name += delta.function.name or "" if delta.function else ""
            arguments += delta.function.arguments or "" if delta.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, json.loads(arguments), finish) == ("mul", {"a": 6, "b": 7}, "tool_calls")


def test_every_field_the_client_sends_is_forwarded_unchanged(
    gateway: GatewayProcess, stub: OpenAIStub
) -> None:
    body = {
        "model": "agent",
        "messages": [
            {"role": "developer", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "ann"},
        ],
        "tools": [MUL_TOOL],
        "tool_choice": "none",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
        "seed": 7,
        "stop": ["\n\n"],
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "max_completion_tokens": 9,
        "temperature": 0.5,
        "user": "ann",
    }
    answer = httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    forwarded = last_body(stub)
    assert forwarded["messages"] == body["messages"]  # developer role kept: this engine knows it
    for field in ("tools", "tool_choice", "parallel_tool_calls", "response_format", "seed",
                  "stop", "logprobs", "top_logprobs", "n", "temperature", "user"):  # fmt: skip
        assert forwarded[field] == body[field], field
    assert forwarded["max_tokens"] == 9 and forwarded["model"] == "stub-model"


def test_llama_cpp_python_gets_a_developer_turn_and_a_tool_result(gateway: GatewayProcess) -> None:
    """Both were 502s: llama-cpp-python knows no developer role, and yoyu dropped tool_calls."""
    messages = [{"role": "developer", "content": "Be terse."}, QUESTION, TOOL_TURN, TOOL_RESULT]
    answer = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "tiny", "messages": messages, "max_tokens": 4},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model": "tiny", "messages": [QUESTION], "max_tokens": -1}, "max_tokens", "at least 1"),
        ({"model": "tiny", "messages": [{"role": "boss", "content": "x"}]},
         "messages[0].role", "not a role"),
        ({"model": "tiny", "messages": [QUESTION], "temperature": 3}, "temperature", "between"),
        ({"model": "tiny", "messages": [QUESTION], "n": 5}, "n", "one choice per request"),
    ],
)  # fmt: skip
def test_what_an_engine_cannot_take_is_a_400_naming_the_parameter(
    gateway: GatewayProcess, body: dict[str, Any], param: str, fragment: str
) -> None:
    answer = httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=60)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == param and fragment in error["message"]
    assert "Traceback" not in error["message"] and "site-packages" not in error["message"]


def test_a_token_id_prompt_reaches_an_engine_that_takes_it(
    gateway: GatewayProcess, stub: OpenAIStub
) -> None:
    url = f"{gateway.base_url}/completions"
    to_stub = httpx.post(url, json={"model": "agent", "prompt": [1, 2, 3]}, timeout=30)
    assert to_stub.status_code == 200 and last_body(stub)["prompt"] == [1, 2, 3]
    to_python = httpx.post(url, json={"model": "tiny", "prompt": [1, 2, 3]}, timeout=60)
    assert to_python.status_code == 400 and to_python.json()["error"]["param"] == "prompt"


# -- browsers -------------------------------------------------------------------


def test_a_simple_cross_origin_post_is_refused_and_runs_nothing(
    gateway: GatewayProcess, stub: OpenAIStub
) -> None:
    before = len(stub.generation_requests())
    body = json.dumps({"model": "agent", "messages": [QUESTION]})
    for headers in (
        {"Content-Type": "text/plain", "Origin": "https://evil.example.com"},
        {"Content-Type": "text/plain"},  # no Origin (a form, a curl): still not JSON
    ):
        answer = httpx.post(f"{gateway.base_url}/chat/completions", content=body, headers=headers)
        assert answer.status_code in (403, 415)
    foreign = httpx.post(
        f"{gateway.base_url}/chat/completions",
        content=body,
        headers={**JSON_TYPE, "Origin": "https://evil.example.com"},
    )
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "origin_not_allowed"
    assert len(stub.generation_requests()) == before  # nothing reached the engine


def test_a_rebinding_host_cannot_switch_an_alias(gateway: GatewayProcess) -> None:
    answer = httpx.put(
        f"{gateway.url}/yoyu/aliases/pwn",
        json={"target": "agent"},
        headers={"Host": "evil.example.com"},
    )
    assert answer.status_code == 421
    models = httpx.get(f"{gateway.base_url}/models").json()["data"]
    assert "pwn" not in {model["id"] for model in models}


def test_an_allowed_origin_gets_cors_and_its_preflight(gateway: GatewayProcess) -> None:
    preflight = httpx.options(
        f"{gateway.base_url}/chat/completions",
        headers={"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == PAGE_ORIGIN
    answer = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "agent", "messages": [QUESTION]},
        headers={"Origin": PAGE_ORIGIN},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE_ORIGIN


# -- errors a client can act on ---------------------------------------------------


def test_health_names_every_served_model_with_its_state_and_engine(
    gateway: GatewayProcess, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="tiny", messages=[QUESTION], max_tokens=2)
    health = httpx.get(f"{gateway.url}/health").json()
    states = {model["id"]: model for model in health["models"]}
    assert states["tiny"]["state"] == "ready" and states["tiny"]["engine"] == "llama-cpp-python"
    assert states["agent"]["engine"] == "openai-compatible"
    # Every backend is listed before its first check (this gateway checks hourly).
    backends = {backend["name"]: backend for backend in health["backends"]}
    assert set(backends) == {"local", "agentic"}
    assert backends["local"]["ok"] is None and backends["local"]["detail"] == "not checked yet"
    assert httpx.get(f"{gateway.url}/yoyu/version").json()["version"]


def test_a_route_refused_for_memory_everywhere_is_503_with_retry_after(tmp_path: Path) -> None:
    tiny = write_tiny_model(tmp_path / "tiny.gguf").path
    config = tmp_path / "yoyu.toml"
    config.write_text(
        f"""
[server]
memory_floor = 0
memory_budget = "1 MiB"

[backends.local]
kind = "llama.cpp"

[served.a]
backend = "local"
path = "{tiny}"
settings = {SETTINGS}

[served.b]
backend = "local"
path = "{tiny}"
settings = {SETTINGS}

[routes]
both = ["a", "b"]
""",
        encoding="utf-8",
    )
    with GatewayProcess(["--config", str(config)], log_path=tmp_path / "serve.log") as server:
        for name in ("a", "both"):
            started = time.monotonic()
            answer = httpx.post(
                f"{server.base_url}/chat/completions",
                json={"model": name, "messages": [QUESTION]},
                timeout=30,
            )
            assert answer.status_code == 503, (name, answer.text)
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.json()["error"]["type"] == "insufficient_memory"
            assert time.monotonic() - started < 5  # refused by the plan, nothing loaded
        assert server.engine_pids() == []
