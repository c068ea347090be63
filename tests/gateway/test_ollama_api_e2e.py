"""``yoyu serve``'s Ollama API as a real process, driven by the real ``ollama`` client.

Behind it, as in ``test_serve_e2e``: the managed llama.cpp backend with tiny
GGUF models the test writes (a budget that holds one of them), a loopback
stub playing a remote API that replays tool calls and records every request,
and a backend nobody listens on. Each test asks only for what it checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import ollama
import psutil
import pytest
from e2e_gateway import metric, write_config

from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.waiting import wait_until

pytestmark = pytest.mark.slow

HI = [{"role": "user", "content": "Say hello."}]
SECRET = "the launch code is 0000"
MUL = {
    "type": "function",
    "function": {
        "name": "mul",
        "description": "Multiply two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(StubBehaviour(models=("stub-model",))) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("ollama-api")
    embedding = "{ n_ctx = 256, n_batch = 64, n_ubatch = 64, seed = 1, embedding = true }"
    huge = '[served.huge]\nbackend = "local"\npath = "{tiny_b}"\nmemory = "512 GiB"\n'
    config = write_config(folder, stub, tiny_b_settings=embedding, extra_served=huge)
    log_path = folder / "serve.log"
    with GatewayProcess(["--config", str(config), "-v"], log_path=log_path) as server:
        yield server
    log = log_path.read_text(errors="replace")
    assert SECRET not in log and "Say hello" not in log  # prompts never reach the log


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=gateway.url, timeout=120) as made:
        yield made


def running(client: ollama.Client) -> set[str]:
    return {model.model or "" for model in client.ps().models}


# -- listing -------------------------------------------------------------------


def test_tags_list_every_name_with_the_files_details(client: ollama.Client) -> None:
    models = {model.model: model for model in client.list().models}
    assert {"tiny", "tiny-b", "cloud", "coder", "resilient"} <= set(models)
    tiny = models["tiny"]
    assert tiny.details is not None and tiny.details.format == "gguf"
    assert tiny.details.family == "llama" and tiny.details.quantization_level
    assert tiny.size is not None and tiny.size > 0 and len(tiny.digest or "") == 64
    assert models["coder"].digest == tiny.digest  # an alias lists its model's file
    assert models["cloud"].size == 0  # remote: no file here


def test_show_reads_the_header_and_says_how_yoyu_serves_it(
    client: ollama.Client, gateway: GatewayProcess
) -> None:
    shown = client.show("tiny")
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.block_count"] > 0
    assert shown.capabilities and "completion" in shown.capabilities
    assert shown.parameters and "n_ctx" in shown.parameters
    raw = httpx.post(f"{gateway.url}/api/show", json={"model": "resilient"}).json()
    assert raw["yoyu"]["route"] == ["dead", "tiny"] and raw["yoyu"]["served"] == "dead"
    with pytest.raises(ollama.ResponseError) as caught:
        client.show("ghost")
    assert caught.value.status_code == 404
    assert caught.value.error.startswith("model 'ghost' not found")


def test_version_answers_ollamas_shape(gateway: GatewayProcess) -> None:
    body = httpx.get(f"{gateway.url}/api/version").json()
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"]) and body["yoyu"]


# -- generation ------------------------------------------------------------------


def test_chat_whole_has_ollamas_fields(client: ollama.Client, gateway: GatewayProcess) -> None:
    answer = client.chat(model="tiny", messages=HI, stream=False, options={"num_predict": 5})
    assert answer.done and answer.done_reason in ("stop", "length")
    assert answer.model == "tiny" and answer.message.role == "assistant"
    assert answer.eval_count is not None and 0 < answer.eval_count <= 5
    assert answer.prompt_eval_count and answer.total_duration and answer.eval_duration
    assert answer.total_duration >= answer.eval_duration
    assert RFC3339_NANO.match(answer.created_at or "")
    raw = httpx.post(f"{gateway.url}/api/chat", json={"model": "coder", "messages": HI,
                     "stream": False, "options": {"num_predict": 1}})  # fmt: skip
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.headers["x-yoyu-route"] == "tiny" and raw.json()["model"] == "coder"


def test_chat_streams_ndjson_pieces_then_a_done_line(
    client: ollama.Client, gateway: GatewayProcess
) -> None:
    parts = list(client.chat(model="tiny:latest", messages=HI, stream=True,
                             options={"num_predict": 8, "temperature": 0}))  # fmt: skip
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    assert len(parts) >= 2 and all(part.model == "tiny:latest" for part in parts)
    done = parts[-1]
    assert done.done_reason in ("stop", "length") and done.message.content == ""
    assert done.eval_count is not None and done.eval_count >= len(parts) - 1
    whole = client.chat(model="tiny", messages=HI, options={"num_predict": 8, "temperature": 0})
    streamed = "".join(part.message.content or "" for part in parts)
    assert streamed == whole.message.content  # the same greedy answer, however it came
    with httpx.stream(
        "POST",
        f"{gateway.url}/api/chat",
        json={"model": "tiny", "messages": HI, "options": {"num_predict": 2}},
    ) as r:
        assert r.headers["content-type"] == "application/x-ndjson"  # streamed by default
        assert json.loads(list(r.iter_lines())[-1])["done"] is True  # fmt: skip


def test_generate_whole_streamed_and_raw(client: ollama.Client) -> None:
    options = {"num_predict": 6, "temperature": 0}
    whole = client.generate(model="tiny", prompt="Once upon", options=options)
    assert whole.done and whole.response and whole.eval_count
    parts = list(client.generate(model="tiny", prompt="Once upon", options=options, stream=True))
    assert "".join(part.response or "" for part in parts) == whole.response
    assert parts[-1].done and parts[-1].done_reason in ("stop", "length")
    raw = client.generate(model="tiny", prompt="Once upon", raw=True, options=options)
    assert raw.done and raw.eval_count


def test_tool_calls_round_trip_with_arguments_as_objects(
    client: ollama.Client, stub: OpenAIStub
) -> None:
    asked = [{"role": "user", "content": "What is 6 times 7?"}]
    answer = client.chat(model="cloud", messages=asked, tools=[MUL])
    calls = answer.message.tool_calls or []
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("mul", {"a": 6, "b": 7})
    ]
    streamed = [
        call
        for part in client.chat(model="cloud", messages=asked, tools=[MUL], stream=True)
        for call in part.message.tool_calls or []
    ]
    assert [dict(c.function.arguments) for c in streamed] == [{"a": 6, "b": 7}]
    # The client runs the tool and sends the result back, tied to its call by name (the
    # ollama client keeps no call ids: the gateway gives the call one and the result it).
    result = {"role": "tool", "tool_name": "mul", "content": "42"}
    final = client.chat(model="cloud", messages=[*asked, answer.message, result], tools=[MUL])
    sent = stub.generation_requests()[-1].body or {}
    call_id = sent["messages"][1]["tool_calls"][0]["id"]
    assert final.message.content == f"The tool {call_id} said 42."
    assert sent["messages"][2]["tool_call_id"] == call_id
    arguments = sent["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"a": 6, "b": 7}  # a JSON string again, as OpenAI's
    assert sent["tools"][0]["function"]["name"] == "mul"


def test_options_and_format_reach_the_engine_as_openai_fields(
    client: ollama.Client, stub: OpenAIStub
) -> None:
    options = {"num_predict": 9, "temperature": 0.3, "stop": ["\n"], "num_ctx": 99}
    client.chat(model="cloud", messages=HI, format="json", options=options)
    sent = stub.generation_requests()[-1].body or {}
    assert (sent["max_tokens"], sent["temperature"], sent["stop"]) == (9, 0.3, ["\n"])
    assert sent["response_format"] == {"type": "json_object"}
    assert "num_ctx" not in sent and "options" not in sent


def test_an_upstream_that_dies_mid_stream_ends_it_with_an_error_line(
    client: ollama.Client, stub: OpenAIStub
) -> None:
    stub.behaviour.die_after_chunks = 2
    received: list[str] = []
    try:
        with pytest.raises(ollama.ResponseError) as caught:
            for part in client.chat(model="cloud", messages=HI, stream=True):
                received.append(part.message.content or "")
    finally:
        stub.behaviour.die_after_chunks = None
    assert received == ["tok0 ", "tok1 "]  # what came before the cut, then the error line
    assert "dropped the connection mid-answer" in caught.value.error


# -- embeddings ------------------------------------------------------------------


def test_embed_scales_vectors_and_the_legacy_route_does_not(
    client: ollama.Client, gateway: GatewayProcess
) -> None:
    result = client.embed(model="cloud", input=["a", "abc"])
    assert [len(vector) for vector in result.embeddings] == [3, 3]
    assert all(abs(sum(v * v for v in vector) - 1) < 1e-9 for vector in result.embeddings)
    cut = client.embed(model="cloud", input="abc", dimensions=2)
    assert len(cut.embeddings[0]) == 2
    legacy = client.embeddings(model="cloud", prompt="abc")
    assert list(legacy.embedding) == [3.0, 1.0, 0.5]  # the stub's vector as it gave it


def test_embed_on_a_local_engine(client: ollama.Client) -> None:
    result = client.embed(model="tiny-b", input=["hello", "world"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) > 8
    assert result.embeddings[0] != result.embeddings[1]


# -- keep_alive ----------------------------------------------------------------


def test_keep_alive_zero_unloads_and_the_engine_process_ends(
    client: ollama.Client, gateway: GatewayProcess
) -> None:
    loaded = client.generate(model="tiny", prompt="")  # an empty prompt loads
    assert loaded.done_reason == "load" and "tiny" in running(client)
    engines = gateway.engine_pids()
    assert engines
    unloaded = client.generate(model="tiny", prompt="", keep_alive=0)
    assert unloaded.done and unloaded.done_reason == "unload"
    assert "tiny" not in running(client)
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in engines), 20, "the engine to end")
    again = client.chat(model="tiny", messages=[], keep_alive="5m")  # no messages: a load
    assert again.done_reason == "load" and "tiny" in running(client)


def test_keep_alive_with_a_prompt_unloads_once_the_answer_is_given(client: ollama.Client) -> None:
    answer = client.generate(model="tiny", prompt="Hi", keep_alive=0, options={"num_predict": 2})
    assert answer.done and answer.response is not None
    wait_until(lambda: "tiny" not in running(client), 10, "tiny to be unloaded after its answer")


def test_keep_alive_sets_when_the_model_expires(client: ollama.Client) -> None:
    client.chat(model="tiny", messages=HI, keep_alive=-1, options={"num_predict": 1})
    forever = next(m for m in client.ps().models if m.model == "tiny")
    assert forever.expires_at is not None
    assert forever.expires_at > datetime.now(timezone.utc) + timedelta(days=3650)
    client.chat(model="tiny", messages=HI, keep_alive="3s", options={"num_predict": 1})
    soon = next(m for m in client.ps().models if m.model == "tiny")
    assert soon.expires_at is not None
    assert soon.expires_at < datetime.now(timezone.utc) + timedelta(seconds=4)
    wait_until(lambda: "tiny" not in running(client), 15, "tiny's 3 s keep_alive to run out")


# -- routing, privacy, admission ---------------------------------------------------


def test_a_down_backend_falls_back_as_on_v1(client: ollama.Client, gateway: GatewayProcess) -> None:
    answer = client.chat(model="resilient", messages=HI, options={"num_predict": 2})
    assert answer.done and answer.model == "resilient"
    assert (metric(gateway, "yoyu_fallbacks_total", **{"from": "dead", "to": "tiny"}) or 0) >= 1


def test_private_requests_never_reach_a_remote_backend(
    client: ollama.Client, gateway: GatewayProcess, stub: OpenAIStub
) -> None:
    before = len(stub.generation_requests())
    secret = [{"role": "user", "content": SECRET}]
    with ollama.Client(host=gateway.url, headers={"X-Yoyu-Privacy": "local"}) as private:
        for call in (
            lambda: private.chat(model="cloud", messages=secret),
            lambda: list(private.generate(model="cloud", prompt=SECRET, stream=True)),
            lambda: private.embed(model="cloud", input=SECRET),
            lambda: client.chat(model="cloud-secret", messages=secret),  # tagged private
        ):
            with pytest.raises(ollama.ResponseError, match="must stay on this machine") as caught:
                call()
            assert caught.value.status_code == 403
    assert len(stub.generation_requests()) == before
    assert not any(SECRET in str(request.body) for request in stub.requests)


def test_admission_holds_the_budget_on_the_ollama_api(client: ollama.Client) -> None:
    client.chat(model="tiny", messages=HI, options={"num_predict": 1})
    client.chat(model="tiny-b", messages=[])  # loads tiny-b: the budget holds one
    assert running(client) == {"tiny-b"}
    with pytest.raises(ollama.ResponseError, match="not loading huge") as caught:
        client.chat(model="huge", messages=HI)
    assert caught.value.status_code == 503


# -- the caller's mistakes -----------------------------------------------------------


def test_errors_come_back_in_ollamas_shape(client: ollama.Client, gateway: GatewayProcess) -> None:
    with pytest.raises(ollama.ResponseError) as unknown:
        client.chat(model="ghost", messages=HI)
    assert unknown.value.status_code == 404
    assert unknown.value.error.startswith("model 'ghost' not found")
    with pytest.raises(ollama.ResponseError, match="num_predict") as typed:
        client.generate(model="tiny", prompt="x", options={"num_predict": "many"})
    assert typed.value.status_code == 400
    bad = httpx.post(f"{gateway.url}/api/chat", content=b'{"model": ',
                     headers={"Content-Type": "application/json"})  # fmt: skip
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    page = httpx.post(f"{gateway.url}/api/generate", content=b'{"model": "tiny"}',
                      headers={"Content-Type": "text/plain"})  # fmt: skip
    assert page.status_code == 415 and isinstance(page.json()["error"], str)
    origin = httpx.get(f"{gateway.url}/api/tags", headers={"Origin": "http://evil.example"})
    assert origin.status_code == 403 and "evil.example" in origin.json()["error"]
    huge = httpx.post(f"{gateway.url}/api/generate", json={"model": "tiny", "prompt": "x" * 70_000})
    assert huge.status_code == 413 and "max_body_bytes" in huge.json()["error"]


def test_an_api_key_guards_the_ollama_api_as_it_guards_v1(
    stub: OpenAIStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ollama client sends ``OLLAMA_API_KEY`` as a bearer token: the gateway's key."""
    config = tmp_path / "yoyu.toml"
    config.write_text(
        f'[backends.cloud]\nkind = "openai"\nbase_url = "{stub.base_url}"\n'
        'models = ["stub-model"]\n[served.cloud]\nbackend = "cloud"\nupstream = "stub-model"\n',
        encoding="utf-8",
    )
    args = ["--config", str(config), "--api-key-env", "YOYU_TEST_KEY"]
    with GatewayProcess(args, env={"YOYU_TEST_KEY": "s3cret"}) as gateway:
        with (
            ollama.Client(host=gateway.url) as anonymous,
            pytest.raises(ollama.ResponseError) as refused,
        ):
            anonymous.list()
        assert refused.value.status_code == 401
        assert refused.value.error == "missing or wrong API key"
        monkeypatch.setenv("OLLAMA_API_KEY", "s3cret")
        with ollama.Client(host=gateway.url) as keyed:
            assert keyed.chat(model="cloud", messages=HI).message.content == "Hello from the stub."
