"""What a gateway adds: the same fast upstream called directly, through ``yoyu serve``,
and through LiteLLM's proxy, in one run.

The upstream is ``yoyu.testing.openai_stub`` (a minimal OpenAI-compatible
server on loopback) in its own process. Each target gets the same closed-loop
load: C clients, each with one keep-alive connection, sending the next
request as soon as the last answer is complete (a stream counts when its
last byte arrives). The load generator is a few lines of asyncio over raw
sockets, so it costs far less per request than the gateways it measures.

Added latency is the target's percentile minus the direct call's percentile
at the same concurrency and mode (the subtraction method of BerriAI's
ai-gateway-bench and onthebench.ai). LiteLLM runs from a separate venv
(``--litellm PATH/bin/litellm``); without one its rows are skipped.

    PYTHONPATH=src python benchmarks/gateway_overhead.py [--quick] \\
        [--litellm /tmp/litellm-venv/bin/litellm] [--concurrency 1 16 64 128] \\
        [--before ../yoyu-old/src]

Each gateway's own CPU time per request (its process tree's user + system
time around the cell, over the requests answered) is printed beside the
latencies: on a shared or noisy machine it moves far less than latency does.
``--before`` serves another yoyu tree (its ``src`` folder) beside this one
against the same stub, measured in the same cells, for an A/B of a change.

Goals (issue 15): added p50 under 1 ms at one client, p99 under 30 ms at 64 clients,
and at least 5x LiteLLM's requests/s at 16 and 128 clients, whole and streamed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from yoyu.testing.gateway_process import free_port

MODEL = "bench"
UPSTREAM_MODEL = "stub-model"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}


@dataclass(frozen=True)
class Result:
    target: str
    mode: str
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rps: float
    cpu_ms: float | None = None  # the target's own CPU time per request


# -- a minimal keep-alive HTTP/1.1 client -----------------------------------


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes, headers: str) -> int:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{headers}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.writer.write(request)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            while (size := int((await self.reader.readline()).strip() or b"0", 16)) > 0:
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        else:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def _client(
    port: int, path: str, body: bytes, headers: str, stop_at: float, out: list[float]
) -> int:
    connection, errors = await Connection.open(port), 0
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            status = await connection.post(path, body, headers)
            if status != 200:
                errors += 1
                continue
            out.append(time.perf_counter() - started)
    finally:
        connection.close()
    return errors


async def _load(
    port: int, path: str, body: bytes, headers: str, concurrency: int, seconds: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds
    errors = await asyncio.gather(
        *(_client(port, path, body, headers, stop_at, latencies) for _ in range(concurrency))
    )
    return latencies, sum(errors), time.perf_counter() - started


def measure(
    target: str,
    port: int,
    path: str,
    mode: str,
    concurrency: int,
    seconds: float,
    key: str,
    pid: int | None = None,
) -> Result:
    body = json.dumps({**BODY, "stream": mode == "stream"}).encode()
    headers = f"Authorization: Bearer {key}\r\n"
    asyncio.run(_load(port, path, body, headers, concurrency, min(1.0, seconds)))  # warm up
    cpu_before = _cpu_seconds(pid)
    latencies, errors, elapsed = asyncio.run(_load(port, path, body, headers, concurrency, seconds))
    cpu_ms = None
    if pid is not None and latencies:
        cpu_ms = (_cpu_seconds(pid) - cpu_before) / len(latencies) * 1e3
    ordered = sorted(latencies) or [float("nan")]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Result(
        target, mode, concurrency, len(latencies), errors,
        statistics.median(ordered) * 1e3, p99 * 1e3, len(latencies) / elapsed, cpu_ms,
    )  # fmt: skip


def _cpu_seconds(pid: int | None) -> float:
    """User + system time of a process and its children (LiteLLM's workers)."""
    if pid is None:
        return 0.0
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


# -- the three targets -------------------------------------------------------


@contextmanager
def process(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    with log.open("wb") as handle:
        child = subprocess.Popen(
            command, stdout=handle, stderr=handle, env={**os.environ, **(env or {})}
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"{command[0]} exited: {log.read_text()[-2000:]}")
            try:
                httpx.get(ready_url, timeout=1, headers={"Authorization": "Bearer bench-key"})
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{command[0]} never answered {ready_url}")
        yield child
    finally:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()


def yoyu_config(folder: Path, stub_port: int) -> Path:
    path = folder / "yoyu.toml"
    path.write_text(
        f"""
[backends.stub]
kind = "openai"
base_url = "http://127.0.0.1:{stub_port}/v1"
models = ["{UPSTREAM_MODEL}"]

[served.{MODEL}]
backend = "stub"
upstream = "{UPSTREAM_MODEL}"
max_concurrent = 256  # the relay's cost is measured, not a line (LiteLLM keeps none)
""",
        encoding="utf-8",
    )
    return path


def litellm_config(folder: Path, stub_port: int) -> Path:
    path = folder / "litellm.yaml"
    path.write_text(
        f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{UPSTREAM_MODEL}
      api_base: http://127.0.0.1:{stub_port}/v1
      api_key: unused
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: bench-key
""",
        encoding="utf-8",
    )
    return path


Target = tuple[str, int, str, int | None]  # name, port, path, pid


def run(args: argparse.Namespace) -> list[Result]:
    folder = Path(tempfile.mkdtemp(prefix="yoyu-gateway-bench-"))
    stub_port, litellm_port = free_port(), free_port()
    results: list[Result] = []
    stub_cmd = [sys.executable, "-m", "yoyu.testing.openai_stub", "--port", str(stub_port)]
    with process(stub_cmd, f"http://127.0.0.1:{stub_port}/v1/models", folder / "stub.log"):
        targets: list[Target] = [("direct", stub_port, "/v1/chat/completions", None)]
        trees = [("yoyu", None)] + ([("before", args.before)] if args.before else [])
        with contextlib.ExitStack() as gateways:  # this tree and the one before, side by side
            for name, source in trees:
                port = free_port()
                child = gateways.enter_context(yoyu_process(folder, name, source, stub_port, port))
                targets.append((name, port, "/v1/chat/completions", child.pid))
            results += _measure_all(targets, args)
        if args.litellm:
            litellm_cmd = [args.litellm, "--config", str(litellm_config(folder, stub_port)),
                           "--port", str(litellm_port), "--num_workers", "1"]  # fmt: skip
            with process(
                litellm_cmd,
                f"http://127.0.0.1:{litellm_port}/health/liveliness",
                folder / "litellm.log",
                env={"LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "true"},
            ) as litellm:
                target = ("litellm", litellm_port, "/v1/chat/completions", litellm.pid)
                results += _measure_all([target], args)
    return results


@contextmanager
def yoyu_process(folder: Path, name: str, source: str | None, stub_port: int, port: int):  # type: ignore[no-untyped-def]
    """``yoyu serve`` of this tree, or of the tree whose ``src`` folder is ``source``."""
    env = {"YOYU_HOME": str(folder / f"home-{name}")}
    if source is not None:
        env["PYTHONPATH"] = str(Path(source).resolve())
    command = [sys.executable, "-m", "yoyu", "serve", "--config",
               str(yoyu_config(folder, stub_port)), "--port", str(port)]  # fmt: skip
    with process(command, f"http://127.0.0.1:{port}/health", folder / f"{name}.log", env) as child:
        yield child


def _measure_all(targets: list[Target], args: argparse.Namespace) -> list[Result]:
    results = []
    for mode in ("whole", "stream"):
        for concurrency in args.concurrency:
            for name, port, path, pid in targets:
                result = measure(
                    name, port, path, mode, concurrency, args.seconds, "bench-key", pid
                )
                cpu = f"{result.cpu_ms:6.3f} ms/req" if result.cpu_ms is not None else ""
                print(
                    f"  {name:8} {mode:6} c={concurrency:<4} {result.requests:6} req "
                    f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                    f"{result.rps:8.0f} req/s  errors {result.errors}  {cpu}",
                    flush=True,
                )
                results.append(result)
    return results


def table(results: list[Result]) -> str:
    direct = {(r.mode, r.concurrency): r for r in results if r.target == "direct"}
    litellm = {(r.mode, r.concurrency): r for r in results if r.target == "litellm"}
    before = {(r.mode, r.concurrency): r for r in results if r.target == "before"}
    lines = [
        "| target | mode | clients | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s "
        "| CPU ms/req | vs direct | vs LiteLLM | vs before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r.mode, r.concurrency, r.target)):
        base = direct[(r.mode, r.concurrency)]
        peer = litellm.get((r.mode, r.concurrency))
        old = before.get((r.mode, r.concurrency))
        vs_peer = f"{r.rps / peer.rps:.1f}x" if peer and r.target == "yoyu" else ""
        vs_old = f"{r.rps / old.rps:.2f}x" if old and r.target == "yoyu" else ""
        cpu = f"{r.cpu_ms:.3f}" if r.cpu_ms is not None else ""
        lines.append(
            f"| {r.target} | {r.mode} | {r.concurrency} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.p50_ms - base.p50_ms:+.2f} | {r.p99_ms - base.p99_ms:+.2f} | {r.rps:.0f} "
            f"| {cpu} | {r.rps / base.rps:.2f} | {vs_peer} | {vs_old} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per cell instead of 8 s")
    parser.add_argument("--litellm", help="path of the litellm executable (its own venv)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 128])
    parser.add_argument("--before", help="another yoyu tree's src folder, served beside this one")
    args = parser.parse_args()
    args.seconds = 2.0 if args.quick else 8.0
    print(f"cpu cores: {os.cpu_count()}; {args.seconds:.0f} s per cell", flush=True)
    print(table(run(args)))


if __name__ == "__main__":
    main()
