"""Answers per second through ``yoyu serve`` on the real Gemma 3 270M: llama-server
with its serving slots against llama-cpp-python's server, in one run.

One gateway serves the same file twice: ``gemma-server`` on llama-server
(what a served model gets there: 4 slots sharing one cache of the whole
context) and ``gemma-python`` on llama-cpp-python's server (one sequence at a
time). C clients each send R chat requests back to back (a ~120-token prompt
that differs per request, greedy, ``max_tokens`` tokens), through the real
``openai`` client; generated tokens per second over the wall time of the
whole load, requests per second and the median latency are printed for each
engine and the ratio of llama-server's tokens/s to llama-cpp-python's.

    PYTHONPATH=src python benchmarks/engine_throughput.py [--quick] \\
        [--concurrency 1 4 16] [--requests-per-client 4] [--max-tokens 32]

Needs ``yoyu engine install`` (or a llama-server on PATH). Goal (issue 13):
at 4 and 16 clients llama-server beats llama-cpp-python.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from openai import OpenAI

from yoyu.backends.llamacpp_flags import choose_engine
from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.real_models import GEMMA3_270M, real_model_path

ENGINES = {"gemma-server": "llama-server", "gemma-python": "llama-cpp-python"}
WORDS = ("memory", "cache", "model", "layer", "token", "context", "buffer", "engine", "plan")


@dataclass(frozen=True)
class Load:
    model: str
    concurrency: int
    requests: int
    errors: int
    completion_tokens: int
    wall_s: float
    p50_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s

    @property
    def requests_per_s(self) -> float:
        return (self.requests - self.errors) / self.wall_s


def gateway_config(folder: Path, model: Path, server_binary: str) -> Path:
    path = folder / "yoyu.toml"
    path.write_text(
        f"""
[backends.python]
kind = "llama.cpp"
engine = "llama-cpp-python"

[backends.server]
kind = "llama.cpp"
server_binary = "{server_binary}"

[served.gemma-python]
backend = "python"
path = "{model}"
settings = {{ n_ctx = 4096 }}

[served.gemma-server]
backend = "server"
path = "{model}"
settings = {{ n_ctx = 4096 }}
""",
        encoding="utf-8",
    )
    return path


def prompt(seed: int) -> str:
    rng = random.Random(seed)
    return "Write a short note about " + " ".join(rng.choice(WORDS) for _ in range(100))


def one_client(
    client: OpenAI, model: str, first_seed: int, requests: int, max_tokens: int
) -> list[tuple[float, int] | None]:
    """(latency, completion tokens) per request; ``None`` for a failed one."""
    outcomes: list[tuple[float, int] | None] = []
    for seed in range(first_seed, first_seed + requests):
        started = time.perf_counter()
        try:
            answer = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt(seed)}],
                max_tokens=max_tokens,
                temperature=0.0,
            )
        except Exception:  # a benchmark counts failures, whatever they are
            outcomes.append(None)
            continue
        tokens = answer.usage.completion_tokens if answer.usage else 0
        outcomes.append((time.perf_counter() - started, tokens))
    return outcomes


def measure(base_url: str, model: str, concurrency: int, args: argparse.Namespace) -> Load:
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    one_client(client, model, 10_000, 1, args.max_tokens)  # loads the model, warms it
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [
            pool.submit(
                one_client, client, model, i * 1000, args.requests_per_client, args.max_tokens
            )
            for i in range(concurrency)
        ]
        outcomes = [outcome for future in futures for outcome in future.result()]
    wall_s = time.perf_counter() - started
    done = [outcome for outcome in outcomes if outcome is not None]
    return Load(
        model=model,
        concurrency=concurrency,
        requests=len(outcomes),
        errors=len(outcomes) - len(done),
        completion_tokens=sum(tokens for _, tokens in done),
        wall_s=wall_s,
        p50_s=statistics.median(latency for latency, _ in done) if done else float("nan"),
    )


def table(loads: list[Load]) -> str:
    lines = [
        f"{'engine':<18} {'clients':>7} {'requests':>8} {'errors':>6} {'tok/s':>8} "
        f"{'req/s':>6} {'p50 s':>6}"
    ]
    for load in loads:
        lines.append(
            f"{ENGINES[load.model]:<18} {load.concurrency:>7} {load.requests:>8} "
            f"{load.errors:>6} {load.tokens_per_s:>8.1f} {load.requests_per_s:>6.2f} "
            f"{load.p50_s:>6.2f}"
        )
    by_key = {(load.model, load.concurrency): load for load in loads}
    for concurrency in sorted({load.concurrency for load in loads}):
        server = by_key[("gemma-server", concurrency)]
        python = by_key[("gemma-python", concurrency)]
        ratio = server.tokens_per_s / python.tokens_per_s
        lines.append(f"{concurrency:>3} clients: llama-server / llama-cpp-python = {ratio:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 requests per client")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    if args.quick:
        args.requests_per_client = 2
    server = choose_engine("llama-server")  # a one-line ConfigError when none is built
    folder = Path(tempfile.mkdtemp(prefix="yoyu-engine-bench-"))
    config = gateway_config(folder, real_model_path(GEMMA3_270M), server.executable)
    loads: list[Load] = []
    with GatewayProcess(["--config", str(config)], log_path=folder / "serve.log") as gateway:
        for concurrency in args.concurrency:
            for model in ENGINES:  # alternated, so neither engine gets a warmer machine
                loads.append(measure(gateway.base_url, model, concurrency, args))
    print(table(loads))


if __name__ == "__main__":
    main()
