"""``yoyu serve`` as a real process, driven by the real ``openai`` client.

Behind it: the managed llama.cpp backend with tiny GGUF models the test
writes, a loopback stub playing a remote API (it records every request), and
a backend whose port nobody listens on. One gateway serves the whole module;
each test asks only for what it checks, so the order does not matter.
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Iterator

import httpx
import openai
import pytest
from e2e_gateway import metric, write_config

from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.vocab import EOS_ID, byte_spm_vocab
from yoyu.testing.waiting import wait_until

HI = [{"role": "user", "content": "Say hello."}]
SECRET = "the launch code is 0000"


def ascii_only_bias() -> dict[str, int]:
    """Keep the tiny model on ASCII tokens so its answer streams token by token."""
    tokens = byte_spm_vocab().tokens
    high = [i for i, t in enumerate(tokens) if t.startswith("<0x") and int(t[3:5], 16) > 0x7F]
    return {str(token_id): -100 for token_id in [*high, EOS_ID]}


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(StubBehaviour(models=("stub-model",))) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("gateway")
    config = write_config(folder, stub)
    with GatewayProcess(["--config", str(config), "-v"], log_path=folder / "serve.log") as server:
        yield server
    log = (folder / "serve.log").read_text(errors="replace")
    assert SECRET not in log and "Say hello" not in log  # prompts never reach the log


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0) as made:
        yield made


# -- answers ---------------------------------------------------------------


def test_chat_answers_whole_and_says_which_model_answered(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=HI, max_tokens=4)
    answer = raw.parse()
    assert raw.headers["x-yoyu-route"] == "tiny"
    assert answer.model == "tiny"
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert answer.choices[0].finish_reason in ("length", "stop")


def test_chat_streams_token_chunks_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=HI,
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"logit_bias": ascii_only_bias()},
    )
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) >= 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(texts)
    assert {c.model for c in chunks} == {"tiny"}


def test_plain_completions_whole_and_streamed(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="tiny", prompt="Once upon", max_tokens=3)
    assert whole.choices[0].text and whole.model == "tiny"
    streamed = client.completions.create(model="tiny", prompt="Once", max_tokens=3, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices)


def test_models_list_and_alias(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"tiny", "tiny-b", "cloud", "coder", "resilient"} <= ids
    raw = client.chat.completions.with_raw_response.create(model="coder", messages=HI, max_tokens=2)
    assert raw.headers["x-yoyu-route"] == "tiny"


def test_embeddings_from_an_openai_compatible_backend(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="cloud", input=["a", "abc"])
    assert [len(item.embedding) for item in result.data] == [3, 3]
    assert result.data[1].embedding[0] == 3.0  # the stub's vector starts with len(text)


# -- fallback, crashes, privacy --------------------------------------------


def test_a_down_backend_falls_back_to_the_next_route(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="resilient", messages=HI, max_tokens=2
    )
    assert raw.headers["x-yoyu-route"] == "tiny"
    assert (metric(gateway, "yoyu_fallbacks_total", **{"from": "dead", "to": "tiny"}) or 0) >= 1
    assert (metric(gateway, "yoyu_backend_errors_total", backend="down") or 0) >= 1
    # Cooling down: the next request goes to tiny first, without waiting on the dead one.
    again = client.chat.completions.with_raw_response.create(
        model="resilient", messages=HI, max_tokens=2
    )
    assert again.headers["x-yoyu-route"] == "tiny"


def test_private_requests_never_reach_a_remote_backend(
    client: openai.OpenAI, stub: OpenAIStub
) -> None:
    before = len(stub.generation_requests())
    private = [{"role": "user", "content": SECRET}]
    with pytest.raises(openai.PermissionDeniedError, match="must stay on this machine"):
        client.chat.completions.create(
            model="cloud", messages=private, extra_headers={"X-Yoyu-Privacy": "local"}
        )
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="cloud-secret", messages=private)  # tagged private
    assert len(stub.generation_requests()) == before
    assert not any(SECRET in str(r.body) for r in stub.requests)
    # The same model without the header does reach it: the stub was reachable all along.
    answer = client.chat.completions.create(model="cloud", messages=HI)
    assert answer.choices[0].message.content == "Hello from the stub."
    assert len(stub.generation_requests()) == before + 1


# -- admission ---------------------------------------------------------------


def test_a_tight_budget_unloads_the_idle_model_and_one_load_serves_concurrent_requests(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    client.chat.completions.create(model="tiny", messages=HI, max_tokens=1)
    assert metric(gateway, "yoyu_model_loaded_bytes", model="tiny") is not None
    unloads = metric(gateway, "yoyu_model_unloads_total") or 0

    client.chat.completions.create(model="tiny-b", messages=HI, max_tokens=1)

    assert metric(gateway, "yoyu_model_loaded_bytes", model="tiny-b") is not None
    assert metric(gateway, "yoyu_model_loaded_bytes", model="tiny") is None
    assert metric(gateway, "yoyu_model_unloads_total") == unloads + 1
    assert len(gateway.engine_pids()) == 1  # the budget holds one engine, really

    # tiny is unloaded now: four requests at once share one load of it.
    loads = metric(gateway, "yoyu_model_loads_total") or 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda _: client.chat.completions.create(model="tiny", messages=HI, max_tokens=1),
                range(4),
            )
        )
    assert len(answers) == 4
    assert metric(gateway, "yoyu_model_loads_total") == loads + 1


# -- the caller's mistakes ---------------------------------------------------


def test_bad_json_unknown_model_and_oversize_body_are_clear_4xx(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    json_type = {"Content-Type": "application/json"}
    bad = httpx.post(
        f"{gateway.base_url}/chat/completions", content=b'{"model": "tiny",', headers=json_type
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError, match="ask for one of"):
        client.chat.completions.create(model="no-such-model", messages=HI)
    huge = [{"role": "user", "content": "x" * 70_000}]
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="tiny", messages=huge)
    assert caught.value.status_code == 413
    assert "max_body_bytes" in caught.value.message
    missing = httpx.post(f"{gateway.base_url}/chat/completions", json={"model": "tiny"})
    assert missing.status_code == 400 and "messages" in missing.json()["error"]["message"]


def test_metrics_and_health_speak_their_formats(gateway: GatewayProcess) -> None:
    health = httpx.get(f"{gateway.url}/health").json()
    assert health["status"] == "ok"
    text = httpx.get(f"{gateway.url}/metrics").text
    assert "# TYPE yoyu_request_seconds histogram" in text
    assert "yoyu_memory_available_bytes" in text
    assert re.search(r'yoyu_requests_total\{endpoint="/v1/chat/completions"', text)


# -- the service's own endpoints ------------------------------------------


def test_a_client_that_leaves_mid_stream_frees_the_model(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=HI,
        max_tokens=200,
        stream=True,
        extra_body={"logit_bias": ascii_only_bias()},
    )
    next(chunk for chunk in stream if chunk.choices and chunk.choices[0].delta.content)
    stream.close()

    def tiny_idle() -> bool:
        loaded = httpx.get(f"{gateway.url}/yoyu/memory").json()["loaded"]
        return [m["in_flight"] for m in loaded if m["id"] == "tiny"] == [0]

    wait_until(tiny_idle, 20, "tiny to be free once its client left")
    assert client.chat.completions.create(model="tiny", messages=HI, max_tokens=1).choices


def test_listing_and_switching_an_alias_over_http(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    served = {m["id"]: m for m in httpx.get(f"{gateway.url}/yoyu/models").json()["served"]}
    assert served["tiny"]["managed"] and served["tiny"]["need_bytes"] > 0
    assert served["tiny"]["verdict"] is not None
    assert served["cloud"]["remote"] and not served["cloud"]["managed"]
    assert served["resilient"]["targets"] == ["dead", "tiny"]

    switched = httpx.put(f"{gateway.url}/yoyu/aliases/coder", json={"target": "cloud"})
    assert switched.json() == {"alias": "coder", "previous": "tiny", "target": "cloud"}
    try:
        raw = client.chat.completions.with_raw_response.create(model="coder", messages=HI)
        assert raw.headers["x-yoyu-route"] == "cloud"
    finally:
        httpx.put(f"{gateway.url}/yoyu/aliases/coder", json={"target": "tiny"})
    refused = httpx.put(f"{gateway.url}/yoyu/aliases/coder", json={"target": "ghost"})
    assert refused.status_code == 404
