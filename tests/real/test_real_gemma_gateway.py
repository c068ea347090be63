"""Work nobody waits for, on the real Gemma behind a real ``yoyu serve``.

A client that gives up on a whole answer stops the engine (its CPU falls to
nothing within a second and the next request is not kept waiting); a prompt no
context can hold is refused before any engine sees it; an engine killed in the
middle of a stream ends it with an error event and the next request loads it
again; a shutdown in the middle
of a stream ends it with an error event, stops the engines and prints no
traceback.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.waiting import wait_until

pytestmark = pytest.mark.slow

# Gemma's end-of-sequence and end-of-turn tokens, kept out so that it talks for long.
ENDLESS = {"logit_bias": {"1": -100, "106": -100}, "temperature": 0.8}


@pytest.fixture(params=["llama-cpp-python", "llama-server"])
def gateway(
    real_gemma: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[GatewayProcess]:
    """``yoyu serve`` with each engine: llama-cpp-python's server, and llama-server as
    ``yoyu engine install`` built it (CI builds it; skipped elsewhere until built)."""
    server_binary = ""
    if request.param == "llama-server":
        server_binary = f'server_binary = "{request.getfixturevalue("built_llama_server")}"'
    config = tmp_path / "yoyu.toml"
    config.write_text(
        f"""
[server]
memory_floor = 0

[backends.local]
kind = "llama.cpp"
{server_binary}

[served.gemma]
backend = "local"
path = "{real_gemma}"
settings = {{ n_ctx = 2048 }}
""",
        encoding="utf-8",
    )
    with GatewayProcess(["--config", str(config)], log_path=tmp_path / "serve.log") as server:
        yield server


def engine_cpu_seconds(gateway: GatewayProcess) -> float:
    total = 0.0
    for pid in gateway.engine_pids():
        process = psutil.Process(pid)
        for member in [process, *process.children(recursive=True)]:
            times = member.cpu_times()
            total += times.user + times.system
    return total


def engine_idle(gateway: GatewayProcess, window_s: float = 0.25) -> bool:
    """The engine used (almost) no CPU over the next ``window_s``: a measurement, not a pause."""
    before = engine_cpu_seconds(gateway)
    time.sleep(window_s)
    return engine_cpu_seconds(gateway) - before < 0.05


def test_a_client_that_gives_up_on_a_whole_answer_stops_the_engine(
    gateway: GatewayProcess,
) -> None:
    url = f"{gateway.base_url}/completions"
    httpx.post(url, json={"model": "gemma", "prompt": "Hi", "max_tokens": 2}, timeout=60)
    # 1500 tokens take this engine ~15 s, in a context that holds them all.
    long_story = {"model": "gemma", "prompt": "Once upon a time", "max_tokens": 1500, **ENDLESS}
    before = engine_cpu_seconds(gateway)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=long_story, timeout=httpx.Timeout(60, read=2.0))
    assert engine_cpu_seconds(gateway) - before > 1.0  # it was generating for those 2 s
    wait_until(lambda: engine_idle(gateway), 2.0, "the engine to stop once its client left")
    started = time.monotonic()
    short = httpx.post(url, json={"model": "gemma", "prompt": "Hi", "max_tokens": 2}, timeout=60)
    assert short.status_code == 200
    assert time.monotonic() - started < 5  # not queued behind 1500 tokens for nobody
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'status="499"' in metrics  # counted as the client's leaving, not as a failure


def test_a_prompt_no_context_can_hold_is_refused_at_once(gateway: GatewayProcess) -> None:
    huge = "lorem ipsum " * 400_000  # 4.8 MB under the 8 MiB body limit; 2048-token context
    started = time.monotonic()
    refused = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "gemma", "messages": [{"role": "user", "content": huge}]},
        timeout=60,
    )
    assert refused.status_code == 400
    assert time.monotonic() - started < 3
    error = refused.json()["error"]
    assert error["param"] == "messages" and "whose context holds 2048" in error["message"]
    assert gateway.engine_pids() == []  # no engine was even started for it
    ok = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "gemma", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        timeout=60,
    )
    assert ok.status_code == 200
    engines = gateway.engine_pids()
    gateway.stop()
    assert not any(psutil.pid_exists(pid) for pid in engines)


def test_a_shutdown_mid_stream_ends_it_with_an_error_event(gateway: GatewayProcess) -> None:
    body = {"model": "gemma", "prompt": "Once upon a time", "max_tokens": 1500, "stream": True}
    events: list[str] = []
    assert gateway.process is not None
    with httpx.stream(
        "POST", f"{gateway.base_url}/completions", json={**body, **ENDLESS}, timeout=60
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
            if len(events) == 5:
                gateway.process.send_signal(signal.SIGTERM)
    engines = gateway.engine_pids()
    assert gateway.process.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    last = json.loads(events[-1])
    assert "shutting down" in last["error"]["message"]
    assert last["error"]["code"] == "shutting_down"  # the server's doing, not the client's 499
    log = gateway.log_text()
    assert "Traceback" not in log and "CancelledError" not in log
    _gone, alive = psutil.wait_procs([psutil.Process(p) for p in engines if psutil.pid_exists(p)])
    assert alive == []


def test_an_engine_killed_mid_stream_gives_an_error_event_and_the_gateway_lives(
    gateway: GatewayProcess,
) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
    stream = client.completions.create(
        model="gemma", prompt="Once upon a time", max_tokens=1500, stream=True, extra_body=ENDLESS
    )
    (engine,) = gateway.engine_pids()
    with pytest.raises(openai.APIError) as caught:
        for received, _chunk in enumerate(stream):
            if received == 0:  # ~15 s of story left: the kill always lands mid-stream
                psutil.Process(engine).kill()
    assert "died while answering with signal SIGKILL" in str(caught.value)
    assert httpx.get(f"{gateway.url}/health").status_code == 200
    again = client.completions.create(model="gemma", prompt="Hi", max_tokens=2)  # loads it anew
    assert again.choices[0].text is not None
    assert gateway.engine_pids() != [engine]


def test_an_agents_second_turn_reaches_the_real_gemma(gateway: GatewayProcess) -> None:
    """What agents send after a tool ran: a developer turn, the assistant's tool call and the
    tool's result (a 502 with the engine's validation errors before the gateway kept them)."""
    client = openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
    tools = [{"type": "function", "function": {"name": "mul", "parameters": {"type": "object"}}}]
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "mul", "arguments": '{"a":6,"b":7}'},
    }
    answer = client.chat.completions.create(
        model="gemma",
        messages=[
            {"role": "developer", "content": "Answer with the tool's result."},
            {"role": "user", "content": "What is 6 times 7?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        tools=tools,  # type: ignore[arg-type]
        max_tokens=8,
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and answer.usage.prompt_tokens > 20  # every turn arrived
