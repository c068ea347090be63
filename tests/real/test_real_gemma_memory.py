"""The memory promise on a real model: Gemma 3 270M Q4_K_M (vocabulary 262,144, sliding
window) through the engines yoyu really starts: llama-cpp-python's server, and
llama-server as ``yoyu engine install`` builds it (CI builds it; skipped elsewhere
until built).

The plan's components equal the engine's printed buffers; the plan's total is at least
the engine's peak RSS (the kernel's high-water mark, not a sampled figure) and within
10 % of it, after a prompt that fills three quarters of the context and after a long
multi-turn chat. A context the machine cannot hold is refused by the plan, with the
figure, before any engine starts.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from yoyu.backends.llamacpp_flags import LlamaCppEngine
from yoyu.backends.llamacpp_server import LlamaCppServerBackend, python_engine
from yoyu.backends.protocol import ChatMessage, ChatRequest, ModelRef
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import RunSettings
from yoyu.machine.probe import probe_machine
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.monitor.procfs import ProcFs
from yoyu.plan.emit.llama_cpp import engine_load_settings
from yoyu.plan.settings import with_serving_slots
from yoyu.runner import ModelRun, RunConfig, SettlePolicy
from yoyu.units import MIB

pytestmark = pytest.mark.slow

CTX = 2048
FAST_SETTLE = SettlePolicy(tolerance_bytes=2 * MIB, window_s=0.3, cap_s=5.0)
WORDS = [
    "memory",
    "cache",
    "model",
    "layer",
    "token",
    "context",
    "buffer",
    "engine",
    "device",
    "host",
    "plan",
    "weight",
]


def words(count: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(count))


@pytest.fixture(params=["llama-cpp-python", "llama-server"])
def engine(request: pytest.FixtureRequest) -> LlamaCppEngine:
    if request.param == "llama-server":
        return LlamaCppEngine("llama-server", str(request.getfixturevalue("built_llama_server")))
    return python_engine()


def backend(tmp_path: Path, engine: LlamaCppEngine | None = None) -> LlamaCppServerBackend:
    return LlamaCppServerBackend(engine=engine or python_engine(), log_dir=tmp_path / "logs")


def peak_rss_bytes(pids: list[int]) -> int:
    """The kernel's high-water mark of each engine process, summed (VmHWM)."""
    procfs = ProcFs()
    statuses = [procfs.status(pid) for pid in pids]
    return sum(status.hwm_bytes for status in statuses if status is not None)


def test_plan_components_equal_the_engines_printed_buffers(
    real_gemma: Path, tmp_path: Path, engine: LlamaCppEngine
) -> None:
    spec = read_gguf_model(real_gemma)
    settings = RunSettings(n_ctx=4096, engine=engine.kind)
    estimate = estimate_memory(spec, probe_machine(), settings)
    cpu = estimate.devices[0]
    server = backend(tmp_path, engine)
    try:
        loaded = server.load(ModelRef("gemma", real_gemma), engine_load_settings(settings))
    finally:
        server.close()
    buffers = loaded.buffers
    assert buffers is not None
    half_hundredth_mib = MIB // 200  # llama.cpp prints MiB with two decimals
    assert abs(buffers.total("kv") - cpu.kv_bytes) <= half_hundredth_mib
    assert abs(buffers.total("compute") - cpu.compute_bytes) <= half_hundredth_mib
    assert abs(buffers.total("output") - cpu.output_bytes) <= half_hundredth_mib
    # CPU_Mapped (the file's tensor span) + CPU_REPACK (the x86 copy of Q4_K weights)
    assert abs(buffers.total("model") - cpu.weights_bytes - cpu.repack_bytes) <= MIB // 100
    # llama-cpp-python asks for the full-size sliding-window cache (4096 cells on every
    # layer); llama-server keeps the 512-token window on 15 of the 18 layers
    full, capped = 18 * 4096 * 256 * 2 * 2, (3 * 4096 + 15 * 1024) * 256 * 2 * 2
    assert cpu.kv_bytes == (full if engine.kind == "llama-cpp-python" else capped)


def test_llama_servers_serving_slots_are_planned_as_it_allocates_them(
    real_gemma: Path, tmp_path: Path, built_llama_server: Path
) -> None:
    """What a gateway's model gets on llama-server: 4 slots sharing one cache. Four
    concurrent prompts of ~700 tokens each stay under the plan, and its buffers are
    the plan's (the sliding window is kept per slot: 4 x 512 + the ubatch)."""
    spec = read_gguf_model(real_gemma)
    settings = with_serving_slots(RunSettings(n_ctx=CTX * 2, engine="llama-server"), {})
    assert (settings.n_parallel, settings.kv_unified) == (4, True)
    estimate = estimate_memory(spec, probe_machine(), settings)
    cpu = estimate.devices[0]
    server = backend(tmp_path, LlamaCppEngine("llama-server", str(built_llama_server)))
    try:
        loaded = server.load(ModelRef("gemma", real_gemma), engine_load_settings(settings))
        prompts = [ChatMessage("user", "Summarize: " + words(600, seed=seed)) for seed in range(4)]
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(lambda m: server.chat(ChatRequest("gemma", (m,), max_tokens=8)), prompts)
            )
        peak = peak_rss_bytes(server.pids())
    finally:
        server.close()
    assert loaded.buffers is not None
    assert abs(loaded.buffers.total("kv") - cpu.kv_bytes) <= MIB // 200
    assert abs(loaded.buffers.total("compute") - cpu.compute_bytes) <= MIB // 200
    assert abs(loaded.buffers.total("output") - cpu.output_bytes) <= MIB // 200
    assert all(a.usage is not None and a.usage.prompt_tokens > 600 for a in answers)
    assert_predicted_peak(estimate.total_bytes, peak)


def assert_predicted_peak(predicted: int, peak: int) -> None:
    assert predicted >= peak, f"predicted {predicted / MIB:.2f} MiB < peak {peak / MIB:.2f} MiB"
    assert predicted <= 1.10 * peak, f"predicted {predicted / MIB:.2f} MiB, peak {peak / MIB:.2f}"


def test_a_prompt_filling_three_quarters_of_the_context_stays_under_the_plan(
    real_gemma: Path, tmp_path: Path, engine: LlamaCppEngine
) -> None:
    run = ModelRun(
        RunConfig(str(real_gemma), RunSettings(n_ctx=CTX), settle=FAST_SETTLE),
        backend=backend(tmp_path, engine),
        seed=1,
    )
    with run:
        turn = run.ask([ChatMessage("user", "Summarize: " + words(1600, seed=1))], max_tokens=16)
        peak = peak_rss_bytes(run.backend.pids())
    assert turn.usage is not None and turn.usage.prompt_tokens >= 0.75 * CTX
    assert run.prediction is not None
    assert_predicted_peak(run.prediction.total_bytes, peak)
    # the engine's scores array would be 1 MiB per token: not there
    assert peak < run.prediction.total_bytes + turn.usage.prompt_tokens * MIB // 4


def test_a_long_chat_stays_under_the_plan(
    real_gemma: Path, tmp_path: Path, engine: LlamaCppEngine
) -> None:
    run = ModelRun(
        RunConfig(str(real_gemma), RunSettings(n_ctx=CTX), settle=FAST_SETTLE),
        backend=backend(tmp_path, engine),
        seed=1,
    )
    messages: list[ChatMessage] = []
    with run:
        for turn_index in range(12):
            messages.append(ChatMessage("user", "Go on about " + words(100, seed=turn_index)))
            turn = run.ask(messages, max_tokens=24, temperature=0.0)
            messages.append(ChatMessage("assistant", turn.text or "ok"))
        peak = peak_rss_bytes(run.backend.pids())
        engine_pids = run.backend.pids()
    assert turn.usage is not None and turn.usage.prompt_tokens >= 0.75 * CTX
    assert run.prediction is not None
    assert_predicted_peak(run.prediction.total_bytes, peak)
    assert not any(psutil.pid_exists(pid) for pid in engine_pids)


def test_the_engine_does_not_grow_with_each_request(real_gemma: Path, tmp_path: Path) -> None:
    """llama-cpp-python's stock server kept each request's sampler (3 MiB of candidates
    for this 262,144-token vocabulary) until the cyclic GC ran: 60 MiB per 20 requests."""
    engine = backend(tmp_path)
    try:
        engine.load(ModelRef("gemma", real_gemma), engine_load_settings(RunSettings(n_ctx=512)))
        procfs = ProcFs()

        def rss_after(requests: int) -> int:
            for index in range(requests):
                request = ChatRequest("gemma", (ChatMessage("user", f"Hi {index}"),), max_tokens=2)
                engine.chat(request)
            statuses = [procfs.status(pid) for pid in engine.pids()]
            return sum(status.rss_bytes for status in statuses if status is not None)

        settled = rss_after(5)
        later = rss_after(20)
    finally:
        engine.close()
    assert later - settled < 12 * MIB, f"grew {(later - settled) / MIB:.1f} MiB in 20 requests"
