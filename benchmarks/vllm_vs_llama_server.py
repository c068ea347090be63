"""llama-server and vLLM on the same small model shape, side by side in one run.

Both engines are started by yoyu's managed backend with the settings its plan
gives them, on this machine's CPU: llama-server (from ``yoyu engine install``)
on a GGUF, vLLM (from ``yoyu engine install vllm``) on a Hugging Face folder of
the same architecture and dimensions (Llama, hidden 1024, 8 layers, 4 KV heads,
16-bit weights, random; the two files are written separately, so the answers
differ, the work per token does not). At 1, 8 and 32 concurrent clients, each
client streams ``REQUESTS_PER_CLIENT`` completions of ``MAX_TOKENS`` tokens
through the real ``openai`` client: tokens per second over the whole run,
median time to the first token, and the peak resident memory of each engine's
process tree (VmHWM). The last column is vLLM's figure over llama-server's.

    PYTHONPATH=src python benchmarks/vllm_vs_llama_server.py
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from openai import OpenAI

import yoyu.testing
from yoyu.backends.llamacpp_server import LlamaCppServerBackend
from yoyu.backends.protocol import ModelRef
from yoyu.backends.vllm_engine import vllm_engine
from yoyu.estimate.types import RunSettings
from yoyu.plan.emit.llama_cpp import engine_load_settings
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import MIB

CLIENTS = (1, 8, 32)
REQUESTS_PER_CLIENT = 2
MAX_TOKENS = 64
SLOTS = 32
SHAPE = {"n_layers": 8, "n_embd": 1024, "n_head": 16, "n_head_kv": 4, "n_ff": 2048,
         "vocab_size": 512}  # fmt: skip
PROMPT = "The quick brown fox jumps over the lazy dog. Name three colours of the rainbow:"


@dataclass(frozen=True)
class Round:
    clients: int
    tokens_per_s: float
    median_ttft_s: float


def write_models(folder: Path, python: str) -> tuple[Path, Path]:
    gguf = folder / "llama-1024x8.gguf"
    write_tiny_model(gguf, "llama", weight_type="F16", **SHAPE)
    hf = folder / "llama-1024x8"
    writer = Path(yoyu.testing.__file__).parent / "write_hf_llama.py"
    subprocess.run([python, str(writer), str(hf), "1024", "8", "4"], check=True)
    return gguf, hf


def measure(base_url: str, model: str, clients: int) -> Round:
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    first_token_s: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def one_client() -> None:
        for _ in range(REQUESTS_PER_CLIENT):
            started = time.monotonic()
            first = None
            count = 0
            stream = client.completions.create(
                model=model, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0.0, stream=True,
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            for chunk in stream:
                if chunk.choices and chunk.choices[0].text:
                    first = first if first is not None else time.monotonic() - started
                    count += 1
            with lock:
                tokens[0] += count
                if first is not None:
                    first_token_s.append(first)

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    return Round(clients, tokens[0] / wall, statistics.median(first_token_s or [0.0]))


def peak_tree_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(found.group(1)) * 1024 if found else 0
    return total


def run_engine(engine: str, model: Path, logs: Path) -> tuple[list[Round], int]:
    settings = RunSettings(
        n_ctx=4096, n_parallel=SLOTS, engine=engine, kv_unified=engine == "llama-server",
        kv_cache_bytes=512 * MIB if engine == "vllm" else None,
    )  # fmt: skip
    backend = LlamaCppServerBackend(engine=engine, log_dir=logs)
    try:
        loaded = backend.load(ModelRef("bench", model), engine_load_settings(settings))
        measure(loaded.base_url, "bench", 1)  # warm-up
        rounds = [measure(loaded.base_url, "bench", clients) for clients in CLIENTS]
        return rounds, peak_tree_bytes(backend.pids())
    finally:
        backend.close()


def main() -> None:
    python = vllm_engine().executable
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        gguf, hf = write_models(folder, python)
        server, server_peak = run_engine("llama-server", gguf, folder / "logs")
        vllm, vllm_peak = run_engine("vllm", hf, folder / "logs")
    print(f"{SHAPE}, 16-bit, {MAX_TOKENS} tokens per answer, {REQUESTS_PER_CLIENT} per client")
    print(f"{'clients':>8} {'llama-server tok/s':>19} {'vLLM tok/s':>11} {'ratio':>6} "
          f"{'TTFT llama-server':>18} {'TTFT vLLM':>10}")  # fmt: skip
    for ours, theirs in zip(server, vllm, strict=True):
        print(f"{ours.clients:>8} {ours.tokens_per_s:>19.1f} {theirs.tokens_per_s:>11.1f} "
              f"{theirs.tokens_per_s / ours.tokens_per_s:>6.2f} {ours.median_ttft_s:>17.3f}s "
              f"{theirs.median_ttft_s:>9.3f}s")  # fmt: skip
    print(
        f"peak memory of the process tree: llama-server {server_peak / MIB:.1f} MiB, "
        f"vLLM {vllm_peak / MIB:.1f} MiB ({vllm_peak / server_peak:.2f}x)"
    )


if __name__ == "__main__":
    main()
