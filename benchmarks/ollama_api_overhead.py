"""What Ollama's API costs over ``/v1``: the same requests to one ``yoyu serve``, both ways.

Two upstreams: the loopback OpenAI stub (``yoyu.testing.openai_stub``, answers in
well under a millisecond, so the gateway's own work shows) and the real Gemma 3
270M (greedy, a fixed number of tokens, so the answer is the same both ways).
Requests alternate between ``/v1/chat/completions`` and ``/api/chat`` on one
keep-alive ``httpx`` client each, one at a time; a stream counts when its last
byte arrives. Reported: p50 per API and mode, and ``/api``'s p50 over ``/v1``'s.

    PYTHONPATH=src python benchmarks/ollama_api_overhead.py [--stub-requests 400] \\
        [--gemma-requests 12] [--no-gemma]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub
from yoyu.testing.real_models import GEMMA3_270M, real_model_path

MESSAGES = [{"role": "user", "content": "Say hi."}]


def config_text(stub_url: str, gemma: Path | None) -> str:
    text = f"""
[server]
memory_floor = 0

[backends.stub]
kind = "openai"
base_url = "{stub_url}"
models = ["stub-model"]

[served.stub]
backend = "stub"
upstream = "stub-model"
"""
    if gemma is not None:
        text += f"""
[backends.local]
kind = "llama.cpp"

[served.gemma]
backend = "local"
path = "{gemma}"
settings = {{ n_ctx = 2048 }}
"""
    return text


def v1_call(client: httpx.Client, model: str, tokens: int, stream: bool) -> None:
    body = {"model": model, "messages": MESSAGES, "max_tokens": tokens, "temperature": 0}
    _send(client, "/v1/chat/completions", body | {"stream": stream})


def api_call(client: httpx.Client, model: str, tokens: int, stream: bool) -> None:
    options = {"num_predict": tokens, "temperature": 0}
    _send(client, "/api/chat", {"model": model, "messages": MESSAGES, "options": options,
                                "stream": stream})  # fmt: skip


def _send(client: httpx.Client, path: str, body: dict[str, object]) -> None:
    with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        for _ in response.iter_bytes():
            pass


def p50_ms(call: Callable[[], None], samples: list[float]) -> None:
    started = time.perf_counter()
    call()
    samples.append((time.perf_counter() - started) * 1e3)


def measure(url: str, model: str, tokens: int, stream: bool, requests: int) -> tuple[float, float]:
    """(p50 of /v1, p50 of /api) in ms, requests alternating, after two warm-up rounds."""
    v1: list[float] = []
    api: list[float] = []
    with httpx.Client(base_url=url, timeout=300) as a, httpx.Client(base_url=url, timeout=300) as b:
        for _ in range(2):
            v1_call(a, model, tokens, stream)
            api_call(b, model, tokens, stream)
        for _ in range(requests):
            p50_ms(lambda: v1_call(a, model, tokens, stream), v1)
            p50_ms(lambda: api_call(b, model, tokens, stream), api)
    return statistics.median(v1), statistics.median(api)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stub-requests", type=int, default=400)
    parser.add_argument("--gemma-requests", type=int, default=12)
    parser.add_argument("--no-gemma", action="store_true")
    args = parser.parse_args()
    gemma = None if args.no_gemma else real_model_path(GEMMA3_270M)
    rows = []
    with OpenAIStub(record=False) as stub, tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "yoyu.toml"
        config.write_text(config_text(stub.base_url, gemma), encoding="utf-8")
        with GatewayProcess(["--config", str(config)], log_path=Path(folder) / "serve.log") as gw:
            for stream in (False, True):
                stub_n, gemma_n = args.stub_requests, args.gemma_requests
                rows.append(("stub", stream, stub_n, *measure(gw.url, "stub", 8, stream, stub_n)))
                if gemma is not None:
                    measured = measure(gw.url, "gemma", 16, stream, gemma_n)
                    rows.append(("gemma", stream, gemma_n, *measured))
    print(f"{'upstream':<8} {'mode':<7} {'n':>5} {'/v1 p50 ms':>11} {'/api p50 ms':>12} "
          f"{'added ms':>9} {'ratio':>6}")  # fmt: skip
    for upstream, stream, n, v1, api in rows:
        mode = "stream" if stream else "whole"
        print(f"{upstream:<8} {mode:<7} {n:>5} {v1:>11.2f} {api:>12.2f} {api - v1:>9.2f} "
              f"{api / v1:>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
