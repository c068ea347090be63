"""Privacy and secrets under load: 1,000 mixed requests through `yoyu serve` (a key
required, a remote API that records every request and fails some, a local model, a route
that falls back from the remote one to the local one), whole and streamed, private and not.

Nothing marked private reaches the remote API; what is not private does (so the remote
was reachable all along); and the gateway's info log holds no prompt, no answer and no key.
"""

from __future__ import annotations

import collections
import concurrent.futures
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.tiny_models import write_tiny_model

pytestmark = pytest.mark.slow

REQUESTS = 1000
CLIENTS = 8
GATEWAY_KEY = "yoyu-test-key-5b0c9e"
CLOUD_KEY = "cloud-test-key-77f1a2"
LOAD_SETTINGS = "{ n_ctx = 256, n_batch = 64, n_ubatch = 64, seed = 1 }"


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(StubBehaviour(models=("stub-model",), reply="stub reply 4c1d")) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub
) -> Iterator[tuple[GatewayProcess, Path]]:
    folder = tmp_path_factory.mktemp("privacy")
    tiny = write_tiny_model(folder / "tiny.gguf").path
    config = folder / "yoyu.toml"
    config.write_text(
        f"""
[server]
memory_floor = 0
cooldown_s = 0
health_interval_s = 3600

[backends.local]
kind = "llama.cpp"

[backends.cloud]
kind = "openai"
base_url = "{stub.base_url}"
models = ["stub-model"]
remote = true
api_key_env = "CLOUD_TEST_KEY"

[served.tiny]
backend = "local"
path = "{tiny}"
settings = {LOAD_SETTINGS}

[served.cloud]
backend = "cloud"
upstream = "stub-model"

[served.cloud-secret]
backend = "cloud"
upstream = "stub-model"
private = true

[routes]
cloud-first = ["cloud", "tiny"]
""",
        encoding="utf-8",
    )
    log = folder / "serve.log"
    env = {"YOYU_API_KEY": GATEWAY_KEY, "CLOUD_TEST_KEY": CLOUD_KEY}
    with GatewayProcess(["--config", str(config), "-v"], env=env, log_path=log) as server:
        yield server, log


def test_a_thousand_mixed_requests_leak_nothing_private(
    gateway: tuple[GatewayProcess, Path], stub: OpenAIStub
) -> None:
    server, log = gateway
    plan = [_request(index, random.Random(index)) for index in range(REQUESTS)]
    client = openai.OpenAI(base_url=server.base_url, api_key=GATEWAY_KEY, max_retries=0)
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(lambda request: _send(client, stub, request), plan))

    # measured here: 424 answered by the local model, 286 by the remote, 267 refused (private,
    # for the remote alone), 23 clean 502s (the remote failing, no route to fall back on)
    assert set(collections.Counter(outcomes)) <= {"tiny", "cloud", "refused", "error 502"}
    private = [outcome for request, outcome in zip(plan, outcomes, strict=True) if request.private]
    assert len(private) > REQUESTS // 4
    recorded = " ".join(str(request.body) for request in stub.requests)
    assert "PRIVATE-" not in recorded  # not one private prompt reached the remote API
    assert all(outcome in ("tiny", "refused") for outcome in private)
    reached = [request for request in stub.requests if request.body]
    assert len(reached) > REQUESTS // 4  # the rest did reach it: it was reachable all along
    sent_keys = {
        value for r in reached for k, value in r.headers.items() if k.lower() == "authorization"
    }
    assert sent_keys == {f"Bearer {CLOUD_KEY}"}  # the remote's key, and only to the remote
    text = log.read_text(errors="replace")
    for secret in (GATEWAY_KEY, CLOUD_KEY, "PRIVATE-", "PUBLIC-", "stub reply 4c1d"):
        assert secret not in text, f"{secret!r} is in the gateway's info log"
    assert "POST /v1/chat/completions" in text or "chat" in text  # it did log requests


@dataclass(frozen=True)
class Planned:
    index: int
    model: str
    stream: bool
    private: bool  # by the header, or by asking the private model


def _request(index: int, dice: random.Random) -> Planned:
    private = dice.random() < 0.5
    model = dice.choice(["cloud-first", "tiny", "cloud"] + (["cloud-secret"] if private else []))
    return Planned(index, model, dice.random() < 0.5, private)


def _send(client: openai.OpenAI, stub: OpenAIStub, request: Planned) -> str:
    """Send one request; the route that answered, or "refused" for a clean 403."""
    marker = f"{'PRIVATE' if request.private else 'PUBLIC'}-{request.index}"
    header = request.private and request.model != "cloud-secret"
    headers = {"X-Yoyu-Privacy": "local"} if header else {}
    stub.behaviour.fail_status = 500 if request.index % 7 == 0 else None  # the remote fails some
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": f"{marker} say hi"}]
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=request.model, messages=messages, max_tokens=2, stream=request.stream,
            extra_headers=headers,
        )  # fmt: skip
        route = raw.headers.get("x-yoyu-route", "")
        if request.stream:
            for _ in raw.parse():  # type: ignore[union-attr]
                pass
        return route
    except openai.PermissionDeniedError:
        return "refused"
    except openai.APIStatusError as error:
        return f"error {error.status_code}"
