"""A real ``yoyu serve`` in front of two OpenAI-compatible upstreams on loopback: a model's
slots fill, the next requests wait in its line, one more is refused with 429 and
Retry-After (or goes to the route's next member), and /metrics shows the line.

The busy upstream holds every generation until the test lets it go, so the line is
filled by state, not by timing.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from yoyu.backends.vllm_metrics import metric_samples
from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.waiting import wait_until

pytestmark = pytest.mark.slow
HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def hold() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a stub thread waiting


@pytest.fixture
def gateway(tmp_path: Path, hold: threading.Event) -> Iterator[tuple[GatewayProcess, OpenAIStub]]:
    with (
        OpenAIStub(StubBehaviour(hold=hold)) as busy,
        OpenAIStub(StubBehaviour(reply="From the spare.")) as spare,
    ):
        config = tmp_path / "yoyu.toml"
        config.write_text(
            f"""
[server]
port = 0
health_interval_s = 3600
max_queue = 1

[backends.busy]
kind = "openai"
base_url = "{busy.base_url}"
models = ["stub-model"]
remote = false

[backends.spare]
kind = "openai"
base_url = "{spare.base_url}"
models = ["stub-model"]
remote = false

[served.slow]
backend = "busy"
upstream = "stub-model"
max_concurrent = 1

[served.spare]
backend = "spare"
upstream = "stub-model"

[routes]
slow-then-spare = ["slow", "spare"]
""",
            encoding="utf-8",
        )
        with GatewayProcess(["--config", str(config)], log_path=tmp_path / "serve.log") as server:
            yield server, busy


def samples(gateway: GatewayProcess) -> dict[tuple[str, str | None], float]:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return {
        (name, labels.get("model")): value
        for name, labels, value in metric_samples(text)
        if not labels.get("le")
    }


def test_a_full_line_answers_429_with_retry_after_and_the_route_falls_back(
    gateway: tuple[GatewayProcess, OpenAIStub], hold: threading.Event
) -> None:
    server, busy = gateway
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=30)
    with ThreadPoolExecutor(2) as pool:
        answers: list[Future[object]] = []
        for expected_waiting in (0, 1):  # one answering (held upstream), one in line
            answers.append(pool.submit(client.chat.completions.create, model="slow", messages=HI))
            wait_until(
                lambda n=expected_waiting: samples(server).get(("yoyu_queue_waiting", "slow"))
                == n and len(busy.generation_requests()) == 1,
                10, f"{expected_waiting} in slow's line",
            )  # fmt: skip
        refused = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "slow", "messages": HI},
            timeout=10,
        )
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "queue_full"
        assert int(refused.headers["Retry-After"]) >= 1
        fallback = client.chat.completions.with_raw_response.create(
            model="slow-then-spare", messages=HI
        )
        assert fallback.headers["X-Yoyu-Route"] == "spare"
        assert fallback.parse().choices[0].message.content == "From the spare."
        assert len(busy.generation_requests()) == 1  # the line never reached the engine
        hold.set()
        for answer in answers:
            assert answer.result(timeout=30) is not None
    figures = samples(server)
    assert figures[("yoyu_queue_rejected_total", "slow")] == 2  # the 429 and the fallback
    assert figures[("yoyu_queue_wait_seconds_count", "slow")] == 2
    assert figures[("yoyu_queue_wait_seconds_sum", "slow")] > 0  # the second one waited
    assert figures[("yoyu_queue_waiting", "slow")] == 0
    assert figures[("yoyu_queue_running", "slow")] == 0
    assert figures[("yoyu_fallbacks_total", None)] == 1


def test_a_streaming_client_waits_in_line_and_frees_its_slot_when_done(
    gateway: tuple[GatewayProcess, OpenAIStub], hold: threading.Event
) -> None:
    server, busy = gateway
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=30)

    def stream_text() -> str:
        chunks = client.chat.completions.create(model="slow", messages=HI, stream=True)
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(stream_text)
        wait_until(lambda: len(busy.generation_requests()) == 1, 10, "the first stream upstream")
        second = pool.submit(stream_text)
        wait_until(
            lambda: samples(server).get(("yoyu_queue_waiting", "slow")) == 1, 10, "one in line"
        )
        hold.set()
        assert first.result(timeout=30) and second.result(timeout=30)
    wait_until(lambda: samples(server).get(("yoyu_queue_running", "slow")) == 0, 10, "slots freed")


def test_a_streaming_client_that_leaves_while_in_line_never_reaches_the_engine(
    gateway: tuple[GatewayProcess, OpenAIStub], hold: threading.Event
) -> None:
    server, busy = gateway
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=30)
    with ThreadPoolExecutor(1) as pool:
        answering = pool.submit(client.chat.completions.create, model="slow", messages=HI)
        try:
            wait_until(lambda: len(busy.generation_requests()) == 1, 10, "one request upstream")
            body = json.dumps({"model": "slow", "messages": HI, "stream": True}).encode()
            port = int(server.base_url.split(":")[2].split("/")[0])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as leaving:
                leaving.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\n\r\n" + body
                )  # fmt: skip
                wait_until(
                    lambda: samples(server).get(("yoyu_queue_waiting", "slow")) == 1, 10, "in line"
                )
            # the client hung up while its stream waited in line
            wait_until(
                lambda: samples(server).get(("yoyu_queue_waiting", "slow")) == 0, 10, "line left"
            )
        finally:
            hold.set()
        assert answering.result(timeout=30) is not None
    assert len(busy.generation_requests()) == 1  # the stream that left never went upstream
    assert samples(server)[("yoyu_queue_running", "slow")] == 0
