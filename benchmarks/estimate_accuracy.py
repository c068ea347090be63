"""How close yoyu's memory estimate comes to what llama.cpp and its engine really hold.

Three parts, each a prediction beside a measurement taken in the same run:

1. Components on generated shapes (five architectures, ctx / ubatch / KV type /
   flash attention / parallel sequences varied) and on real shapes: the real
   Gemma 3 270M file and full-size tensor tables of DeepSeek-R1-Distill-Qwen-7B,
   Llama 3.1 8B and Gemma 3 12B (Q4_K_M, data left as a sparse hole: llama.cpp
   loads them). Each loads in llama-cpp-python in a child process; yoyu's
   weights, CPU repack, KV, compute and output bytes are printed beside the
   sizes llama.cpp itself prints.
2. Total vs peak RSS through the engine yoyu starts (``yoyu.backends``), on
   the real Gemma: a prompt filling 75-90 % of the context at several context
   sizes and a 20-turn chat, the plan's total beside the kernel's high-water
   mark (VmHWM) of the engine's processes. llama-cpp-python's server always;
   ``llama-server`` too when ``--llama-server PATH`` is given.
3. Decode and prefill speed through llama-cpp-python's server on the real Gemma
   and a generated 1 GB F16 model, beside the prediction from the RAM
   bandwidth yoyu measures once (``yoyu.machine.bandwidth``).

    PYTHONPATH=src python benchmarks/estimate_accuracy.py [--quick] [--keep DIR]
        [--llama-server PATH] [--no-sparse]
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yoyu.backends.llamacpp_measure import measure_load
from yoyu.backends.llamacpp_server import LlamaCppEngine, LlamaCppServerBackend, python_engine
from yoyu.backends.protocol import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ModelRef,
    summarize_stream,
)
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.speed import predict_speed
from yoyu.estimate.types import MemoryEstimate, RunSettings
from yoyu.machine.bandwidth import with_measured_bandwidth
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.monitor.procfs import ProcFs
from yoyu.plan.emit.llama_cpp import engine_load_settings, llama_cpp_python_kwargs
from yoyu.testing.real_models import GEMMA3_270M, real_model_path
from yoyu.testing.sparse_models import write_sparse_model
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import MIB

BASE = {"n_layers": 4, "n_embd": 256, "n_head": 8, "n_head_kv": 2, "n_ff": 512, "vocab_size": 259}
SPARSE = ("deepseek-r1-distill-qwen-7b-q4_k_m", "llama-3.1-8b-q4_k_m", "gemma-3-12b-q4_k_m")
COMPONENTS = ("weights", "repack", "kv", "compute", "output")
WORDS = ("memory", "cache", "model", "layer", "token", "context", "buffer", "engine", "host")


@dataclass(frozen=True)
class Config:
    label: str
    model: Callable[[Path], Path]  # writes (or finds) the model file in a folder
    settings: RunSettings
    quick: bool = False


@dataclass(frozen=True)
class Row:
    label: str
    predicted: dict[str, int]
    measured: dict[str, int]
    flash_attn: bool = False


# -- 1. components -------------------------------------------------------------------


def tiny(arch: str, weight_type: str, **shape: int) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        name = f"{arch}_{weight_type}_{'_'.join(f'{k}{v}' for k, v in sorted(shape.items()))}"
        path = folder / f"{name}.gguf"
        if not path.exists():
            write_tiny_model(path, arch, weight_type=weight_type, **{**BASE, **shape})
        return path

    return write


def sparse(name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        return write_sparse_model(folder / "sparse", name).paths[0]

    return write


def real_gemma(folder: Path) -> Path:
    return real_model_path(GEMMA3_270M)


def configs(with_sparse: bool) -> list[Config]:
    # llama.cpp's buffers are the library's whichever program runs it; the llama-server
    # profile admits every setting swept here (parallel slots, either SWA cache size).
    s = functools.partial(RunSettings, engine="llama-server")
    rows = [
        Config("llama f32 ctx1000", tiny("llama", "F32"), s(n_ctx=1000), quick=True),
        Config("llama q8_0 ctx2048 ub256", tiny("llama", "Q8_0"), s(n_ctx=2048, n_ubatch=256)),
        Config("llama q4_0 fa kv q8_0", tiny("llama", "Q4_0"),
               s(n_ctx=1024, flash_attn=True, type_k="q8_0", type_v="q8_0"), quick=True),
        Config("llama f16 np2", tiny("llama", "F16"), s(n_ctx=2048, n_parallel=2)),
        Config("llama f16 np4 unified fa q4_0", tiny("llama", "F16"),
               s(n_ctx=4096, n_parallel=4, kv_unified=True, flash_attn=True, type_k="q4_0")),
        Config("qwen2 f16 ctx4096 fa", tiny("qwen2", "F16"), s(n_ctx=4096, flash_attn=True)),
        Config("qwen3 f16 ctx2048", tiny("qwen3", "F16"), s(n_ctx=2048), quick=True),
        Config("qwen3 q4_k ctx1024 ub128",
               tiny("qwen3", "Q4_K", n_embd=512, n_head=8, n_head_kv=4, n_ff=1024),
               s(n_ctx=1024, n_ubatch=128)),
        Config("gemma2 f16 swa ctx2048", tiny("gemma2", "F16", sliding_window=128),
               s(n_ctx=2048), quick=True),
        Config("gemma2 f16 swa ctx4096 fa", tiny("gemma2", "F16", sliding_window=256),
               s(n_ctx=4096, flash_attn=True)),
        Config("gemma2 f16 swa_full", tiny("gemma2", "F16", sliding_window=128),
               s(n_ctx=1024, swa_full=True)),
        Config("moe f16 ctx1024", tiny("moe", "F16", n_experts=8, n_experts_used=2),
               s(n_ctx=1024), quick=True),
        Config("moe q4_0 ctx2048 fa ub256", tiny("moe", "Q4_0", n_experts=4, n_experts_used=2),
               s(n_ctx=2048, flash_attn=True, n_ubatch=256)),
        Config("llama bigvocab fa", tiny("llama", "F16", vocab_size=32000),
               s(n_ctx=1024, flash_attn=True)),
        Config("llama no-mmap q4_0", tiny("llama", "Q4_0"), s(n_ctx=1024, use_mmap=False)),
        Config("REAL gemma3 270m ctx4096", real_gemma, RunSettings(n_ctx=4096), quick=True),
        Config("REAL gemma3 270m ctx16384 fa", real_gemma,
               RunSettings(n_ctx=16384, flash_attn=True)),
        Config("REAL gemma3 270m llama-server", real_gemma, s(n_ctx=8192), quick=True),
    ]  # fmt: skip
    if with_sparse:
        for name in SPARSE:
            rows.append(Config(f"SHAPE {name} ctx4096", sparse(name), s(n_ctx=4096)))
            rows.append(
                Config(f"SHAPE {name} ctx16384 fa", sparse(name), s(n_ctx=16384, flash_attn=True))
            )
    return rows


def predicted_components(estimate: MemoryEstimate) -> dict[str, int]:
    cpu = estimate.device("CPU")
    weights = estimate.mapped_bytes if estimate.settings.use_mmap else cpu.weights_bytes
    return {
        "weights": weights,
        "repack": cpu.repack_bytes,
        "kv": estimate.total("kv_bytes"),
        "compute": estimate.total("compute_bytes"),
        "output": estimate.total("output_bytes"),
    }


def component_row(config: Config, machine: Machine, folder: Path) -> Row:
    path = config.model(folder)
    estimate = estimate_memory(read_gguf_model(path), machine, config.settings)
    buffers = measure_load(path, llama_cpp_python_kwargs(config.settings)).buffers
    model = buffers.by_kind.get("model", {})
    measured = {
        "weights": model.get("CPU_Mapped", 0) + model.get("CPU", 0),
        "repack": model.get("CPU_REPACK", 0),
        "kv": buffers.total("kv"),
        "compute": buffers.total("compute"),
        "output": buffers.total("output"),
    }
    return Row(config.label, predicted_components(estimate), measured, config.settings.flash_attn)


def relative_error(predicted: int, measured: int) -> float:
    if measured == 0:
        return 0.0 if predicted < 0.01 * MIB else float("inf")
    return (predicted - measured) / measured


def print_components(rows: list[Row]) -> None:
    print(f"{'configuration':44s} " + " ".join(f"{c + ' pred/meas MiB':>26s}" for c in COMPONENTS))
    for row in rows:
        cells = [_cell(row.predicted[c], row.measured[c]) for c in COMPONENTS]
        print(f"{row.label:44s} " + " ".join(f"{cell:>26s}" for cell in cells))
    print()
    for label, subset in (
        ("all", rows),
        ("real shapes, no flash attention", [r for r in rows if _real(r) and not r.flash_attn]),
        ("real shapes, flash attention", [r for r in rows if _real(r) and r.flash_attn]),
    ):
        if not subset:
            continue
        print(f"{label} ({len(subset)} configurations):")
        for component in COMPONENTS:
            errors = [relative_error(r.predicted[component], r.measured[component]) for r in subset]
            off = [abs(r.predicted[component] - r.measured[component]) / MIB for r in subset]
            print(
                f"  {component:8s} median |error| {100 * statistics.median(map(abs, errors)):6.2f}%"
                f"  min {100 * min(errors):+6.2f}%  max {100 * max(errors):+6.2f}%"
                f"  max abs {max(off):7.3f} MiB"
            )


def _real(row: Row) -> bool:
    return row.label.startswith(("REAL", "SHAPE"))


def _cell(predicted: int, measured: int) -> str:
    error = 100 * relative_error(predicted, measured)
    return f"{predicted / MIB:9.2f}/{measured / MIB:8.2f} {error:+6.1f}%"


# -- 2. total vs peak RSS through the engine yoyu starts -----------------------------


def peak_rss_bytes(pids: list[int]) -> int:
    statuses = [ProcFs().status(pid) for pid in pids]
    return sum(status.hwm_bytes for status in statuses if status is not None)


def words(count: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(count))


def engine_peak(
    engine: LlamaCppEngine, model: Path, settings: RunSettings, machine: Machine, turns: int
) -> tuple[int, int, int]:
    """(predicted total, peak RSS, prompt tokens of the last request) for one scenario.

    One turn: a prompt of ~85 % of the context. Several: the chat grows to ~80 %.
    """
    predicted = estimate_memory(read_gguf_model(model), machine, settings).total_bytes
    backend = LlamaCppServerBackend(engine=engine)
    try:
        backend.load(ModelRef("m", model), engine_load_settings(settings))
        messages: list[ChatMessage] = []
        per_turn = (
            int(0.85 * settings.n_ctx) - 40
            if turns == 1
            else int(0.8 * settings.n_ctx) // turns - 24
        )
        prompt_tokens = 0
        for turn in range(turns):
            messages.append(ChatMessage("user", "Summarize: " + words(per_turn, turn)))
            answer = backend.chat(ChatRequest("m", tuple(messages), max_tokens=16, temperature=0))
            messages.append(ChatMessage("assistant", answer.text or "ok"))
            prompt_tokens = answer.usage.prompt_tokens or 0 if answer.usage else 0
        peak = peak_rss_bytes(backend.pids())
    finally:
        backend.close()
    return predicted, peak, prompt_tokens


def print_engine_peaks(machine: Machine, llama_server: str | None, quick: bool) -> None:
    model = real_model_path(GEMMA3_270M)
    engines = [python_engine()]
    if llama_server:
        engines.append(LlamaCppEngine("llama-server", llama_server))
    scenarios = [(2048, 1), (4096, 1), (4096, 20)] if quick else [
        (1024, 1), (2048, 1), (4096, 1), (8192, 1), (4096, 20), (8192, 20)
    ]  # fmt: skip
    print(f"\nTotal vs peak RSS, real Gemma 3 270M ({model.name}), engine as yoyu starts it:")
    print(f"{'engine':18s} {'ctx':>6s} {'turns':>5s} {'prompt':>7s} {'predicted MiB':>14s} "
          f"{'peak MiB':>10s} {'error':>8s}")  # fmt: skip
    errors = []
    for engine in engines:
        for n_ctx, turns in scenarios:
            settings = RunSettings(n_ctx=n_ctx, engine=engine.kind)
            predicted, peak, tokens = engine_peak(engine, model, settings, machine, turns)
            error = relative_error(predicted, peak)
            errors.append(error)
            print(f"{engine.kind:18s} {n_ctx:6d} {turns:5d} {tokens:7d} {predicted / MIB:14.2f} "
                  f"{peak / MIB:10.2f} {100 * error:+7.1f}%")  # fmt: skip
    print(f"total vs peak: min {100 * min(errors):+.1f}%, median "
          f"{100 * statistics.median(errors):+.1f}%, max {100 * max(errors):+.1f}% "
          "(goal: 0 to +5 %, never below)")  # fmt: skip


# -- 3. speed ---------------------------------------------------------------------


MID_F16 = {
    "n_layers": 9,
    "n_embd": 2048,
    "n_head": 16,
    "n_head_kv": 4,
    "n_ff": 5632,
    "vocab_size": 32000,
}  # fmt: skip  (1 GB of F16 weights)


def engine_speed(model: Path, prompt_words: int) -> tuple[int, float, float]:
    """(prompt tokens, prefill tok/s from the time to the first token, decode tok/s from the
    engine's own timings) of one warm request through llama-cpp-python's server."""
    backend = LlamaCppServerBackend(engine=python_engine())
    try:
        backend.load(ModelRef("m", model), engine_load_settings(RunSettings(n_ctx=2048)))
        warm = ChatRequest("m", (ChatMessage("user", words(20, 99)),), max_tokens=4)
        backend.chat(warm)  # the first request pays for page faults and lazy imports
        request = CompletionRequest("m", words(prompt_words, 7), max_tokens=64, temperature=0)
        chunks = list(backend.stream_complete(request))
    finally:
        backend.close()
    summary = summarize_stream(chunks)
    timings = next((c.engine_timings for c in reversed(chunks) if c.engine_timings), None)
    tokens = (summary.usage.prompt_tokens or 0) if summary.usage else 0
    prefill = tokens / summary.first_token_s if summary.first_token_s else 0.0
    decode = 0.0
    if timings is not None and timings.decode_ms:
        decode = timings.decode_tokens / timings.decode_ms * 1000
    return tokens, prefill, decode


def _versus(predicted: float, measured: float) -> str:
    error = (predicted - measured) / measured if measured else float("inf")
    return f"predicted {predicted:6.1f} measured {measured:6.1f} tok/s ({100 * error:+.0f}%)"


def print_speed(machine: Machine, folder: Path) -> None:
    machine = with_measured_bandwidth(machine)
    bandwidth = (machine.memory.bandwidth_bytes_per_s or 0) / 1e9
    print(f"\nSpeed through llama-cpp-python's server, RAM copy bandwidth {bandwidth:.1f} GB/s:")
    mid = folder / "speed_mid_f16.gguf"
    if not mid.exists():
        write_tiny_model(mid, "llama", weight_type="F16", **MID_F16)
    cases = [("real Gemma 3 270M", real_model_path(GEMMA3_270M), 400), ("1 GB F16", mid, 90)]
    for label, path, prompt_words in cases:
        spec = read_gguf_model(path)
        tokens, prefill, decode = engine_speed(path, prompt_words)
        estimate = estimate_memory(spec, machine, RunSettings(n_ctx=2048))
        predicted = predict_speed(spec, estimate, machine, context_tokens=tokens)
        print(f"  {label:18s} decode {_versus(predicted.decode_tps, decode)}; "
              f"prefill ({tokens} tokens) {_versus(predicted.prefill_tps, prefill)}")  # fmt: skip
        print(f"  {'':18s} [{predicted.bound}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few configurations only")
    parser.add_argument("--keep", type=Path, help="write the models here instead of a temp dir")
    parser.add_argument("--llama-server", help="also measure this llama-server binary")
    parser.add_argument("--no-sparse", action="store_true", help="skip the 7B-12B real shapes")
    args = parser.parse_args()
    machine = probe_machine()
    chosen = [
        c for c in configs(not args.no_sparse and not args.quick) if c.quick or not args.quick
    ]
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"{len(chosen)} configurations; machine: {machine.cpu.model}\n")
        print_components([component_row(config, machine, folder) for config in chosen])
        print_engine_peaks(machine, args.llama_server, args.quick)
        print_speed(machine, folder)


if __name__ == "__main__":
    main()
