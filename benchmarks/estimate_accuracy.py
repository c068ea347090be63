"""How close yoyu's memory estimate comes to what llama.cpp and its engine really hold.

Five parts, each a prediction beside a measurement taken in the same run:

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
4. llama.cpp's own estimator as a peer, when ``yoyu engine install`` built it:
   ``llama-fit-params --fit-print on`` (the code behind ``llama-server --fit``)
   for every configuration of part 1, and per device for the real Gemma over two
   rpc-servers (llama.cpp treats each as a GPU and prints its buffers), loaded by
   llama-server; then the placement each chooses for two small device budgets.
5. MoE experts of the first N blocks on the CPU (``--n-cpu-moe``) beside one or
   two rpc-servers, the same three ways: a generated Q4_0 MoE and, without
   ``--quick``, gpt-oss-20b's real tensor table.

    PYTHONPATH=src python benchmarks/estimate_accuracy.py [--quick] [--keep DIR]
        [--llama-server PATH] [--no-sparse] [--no-peer]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import random
import re
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.backends.llamacpp_build import found_program
from yoyu.backends.llamacpp_fit import (
    FittedArguments,
    estimate_with_llama_cpp,
    fit_params_program,
    fit_with_llama_cpp,
)
from yoyu.backends.llamacpp_log import ReportedBuffers
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
from yoyu.estimate.weights import RPC_VENDOR, rpc_device_name
from yoyu.machine.bandwidth import with_measured_bandwidth
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import GpuInfo, Machine
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.monitor.procfs import ProcFs
from yoyu.plan.emit.llama_cpp import engine_load_settings, llama_cpp_python_kwargs
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest
from yoyu.testing.gateway_process import free_port
from yoyu.testing.real_models import GEMMA3_270M, real_model_path
from yoyu.testing.sparse_models import write_sparse_model
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import GIB, MIB

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


# -- 4. llama.cpp's own estimate as a peer -----------------------------------------

PEER_PARTS = ("model", "context", "compute")  # llama.cpp's breakdown: weights, KV, compute
PEER_BUDGETS_MIB = (250, 450)  # two small devices: the placement each estimator picks
# (label, rpc-servers used, settings); every row runs on llama-server
DeviceSplit = tuple[str, int, dict[str, Any]]
DEVICE_SPLITS: tuple[DeviceSplit, ...] = (
    ("ctx4096 ngl10, one device", 2, {"n_ctx": 4096, "n_gpu_layers": 10}),
    ("ctx4096 all layers, even split", 2, {"n_ctx": 4096, "n_gpu_layers": -1}),
    ("ctx4096 all layers, split 1:3", 2, {"n_ctx": 4096, "n_gpu_layers": -1,
                                          "tensor_split": (1.0, 3.0)}),
    ("ctx2048 all layers, fa, np4 unified", 2, {"n_ctx": 2048, "n_gpu_layers": -1,
                                                 "flash_attn": True, "n_parallel": 4,
                                                 "kv_unified": True}),
    ("ctx8192 ngl12 fa, q8_0 KV", 2, {"n_ctx": 8192, "n_gpu_layers": 12, "flash_attn": True,
                                      "type_k": "q8_0", "type_v": "q8_0"}),
)  # fmt: skip
# MoE experts of the first N blocks on the CPU (llama-server --n-cpu-moe N)
MOE_SPLITS: tuple[DeviceSplit, ...] = (
    ("ncm2 all layers", 1, {"n_ctx": 1024, "n_gpu_layers": -1, "n_cpu_moe": 2}),
    ("ncm4 all layers", 1, {"n_ctx": 1024, "n_gpu_layers": -1, "n_cpu_moe": 4}),
    ("ncm1 ngl3", 1, {"n_ctx": 1024, "n_gpu_layers": 3, "n_cpu_moe": 1}),
    ("ncm3 fa, split 1:1", 2, {"n_ctx": 1024, "n_gpu_layers": -1, "n_cpu_moe": 3,
                               "flash_attn": True, "tensor_split": (1.0, 1.0)}),
    ("ncm1 ub256, split 1:1", 2, {"n_ctx": 1024, "n_gpu_layers": -1, "n_cpu_moe": 1,
                                  "n_ubatch": 256, "tensor_split": (1.0, 1.0)}),
)  # fmt: skip
GPT_OSS_SPLITS: tuple[DeviceSplit, ...] = (  # MXFP4 experts; repack off (an 8 GiB copy)
    ("ncm20", 1, {"n_ctx": 4096, "n_gpu_layers": -1, "n_cpu_moe": 20, "repack": False}),
    ("ncm20 fa", 1, {"n_ctx": 4096, "n_gpu_layers": -1, "n_cpu_moe": 20, "repack": False,
                     "flash_attn": True}),
)  # fmt: skip


@dataclass(frozen=True)
class PeerRow:
    """One device (or the whole model): yoyu's plan, llama-fit-params' and the printed bytes
    per part, and yoyu asked with the peer's assumption (every token's logits)."""

    label: str
    yoyu: dict[str, int]
    peer: dict[str, int]
    printed: dict[str, int]
    yoyu_all_logits: int  # yoyu's compute bytes with logits for a whole ubatch


def _parts(weights: int, kv: int, compute: int) -> dict[str, int]:
    return {"model": weights, "context": kv, "compute": compute}


def _all_logits(settings: RunSettings) -> RunSettings:
    """``settings`` as llama-fit-params sizes them: it cannot be told llama-server's
    n_outputs_max, so its compute holds the logits of every token of a ubatch. (yoyu
    reserves every token's row for ``logits_all``, a llama-cpp-python setting, or for
    embeddings, which change nothing else it compares here.)"""
    if settings.engine == "llama-server":
        return dataclasses.replace(settings, embeddings=True)
    return dataclasses.replace(settings, logits_all=True)


def peer_whole_model(
    config: Config, row: Row, machine: Machine, folder: Path, program: str
) -> PeerRow:
    """Part 1's configuration through llama-fit-params, beside part 1's figures."""
    path = config.model(folder)
    peer = estimate_with_llama_cpp(program, path, engine_load_settings(config.settings))
    spec = read_gguf_model(path)
    all_logits = estimate_memory(spec, machine, _all_logits(config.settings))
    untold = f" (not told: {' '.join(peer.unexpressed)})" if peer.unexpressed else ""
    peer_parts = (sum(getattr(d, f"{part}_bytes") for d in peer.devices) for part in PEER_PARTS)
    return PeerRow(
        label=config.label + untold,
        yoyu=_parts(row.predicted["weights"] + row.predicted["repack"], row.predicted["kv"],
                    row.predicted["compute"]),
        peer=_parts(*peer_parts),
        printed=_parts(row.measured["weights"] + row.measured["repack"], row.measured["kv"],
                       row.measured["compute"]),
        yoyu_all_logits=all_logits.total("compute_bytes"),
    )  # fmt: skip


def print_peer(title: str, rows: list[PeerRow]) -> None:
    print(f"\n{title}")
    print("MiB, yoyu / llama-fit-params / printed by llama.cpp; last column: yoyu's compute when "
          "asked for every token's logits, as the peer sizes it")  # fmt: skip
    print(f"{'':52s} " + " ".join(f"{part:>27s}" for part in PEER_PARTS) + f"{'all logits':>12s}")
    for row in rows:
        cells = [
            f"{row.yoyu[p] / MIB:8.2f}/{row.peer[p] / MIB:8.0f}/{row.printed[p] / MIB:8.2f}"
            for p in PEER_PARTS
        ]
        print(f"{row.label[:52]:52s} " + " ".join(f"{c:>27s}" for c in cells)
              + f"{row.yoyu_all_logits / MIB:12.2f}")  # fmt: skip
    for part in PEER_PARTS:
        yoyu_off = [abs(r.yoyu[part] - r.printed[part]) / MIB for r in rows]
        peer_off = [abs(r.peer[part] - r.printed[part]) / MIB for r in rows]
        print(
            f"  {part:8s} max |off| yoyu {max(yoyu_off):8.2f} MiB   "
            f"llama-fit-params {max(peer_off):8.2f} MiB (it prints whole MiB, rounded down)"
        )
    logits_off = [abs(r.yoyu_all_logits - r.peer["compute"]) / MIB for r in rows]
    print(
        f"  compute with every token's logits: yoyu vs llama-fit-params max |off| "
        f"{max(logits_off):.2f} MiB"
    )


def _rpc_machine(machine: Machine, endpoints: list[str]) -> Machine:
    """``machine`` with each rpc-server as a device offering 24 GiB: the shares then
    follow ``tensor_split`` (or split evenly), as llama.cpp splits them."""
    rpc = tuple(
        GpuInfo(vendor=RPC_VENDOR, index=index, name=endpoint, total_bytes=24 * GIB,
                free_bytes=24 * GIB, used_bytes=0)
        for index, endpoint in enumerate(endpoints)
    )  # fmt: skip
    return dataclasses.replace(machine, gpus=(*rpc, *machine.gpus))


@contextlib.contextmanager
def rpc_servers(program: str, count: int, logs: Path) -> Iterator[list[str]]:
    """``count`` rpc-servers on 127.0.0.1, stopped on the way out."""
    processes: list[subprocess.Popen[bytes]] = []
    endpoints = []
    try:
        for index in range(count):
            port = free_port()
            log = (logs / f"rpc-{index}.log").open("wb")
            processes.append(subprocess.Popen([program, "-p", str(port)], stdout=log, stderr=log))
            endpoints.append(f"127.0.0.1:{port}")
        for endpoint in endpoints:
            _wait_for_port(endpoint)
        yield endpoints
    finally:
        for process in processes:
            process.kill()
            process.wait()


def _wait_for_port(endpoint: str) -> None:
    host, port = endpoint.rsplit(":", 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"rpc-server at {endpoint} never listened")


def device_rows(
    machine: Machine,
    llama_server: str,
    program: str,
    endpoints: list[str],
    logs: Path,
    model: Path,
    splits: tuple[DeviceSplit, ...],
) -> list[PeerRow]:
    """``model`` split over the rpc-servers each way: per device, the three estimates."""
    spec = read_gguf_model(model)
    rows = []
    for label, devices, fields in splits:
        cluster = _rpc_machine(machine, endpoints[:devices])
        settings = RunSettings(engine="llama-server", **fields)
        load = engine_load_settings(settings) | {"rpc": endpoints[:devices]}
        estimate = estimate_memory(spec, cluster, settings)
        all_logits = estimate_memory(spec, cluster, _all_logits(settings))
        peer = estimate_with_llama_cpp(program, model, load)
        buffers = _printed_buffers(llama_server, model, load, logs)
        for device in estimate.devices:
            peer_device = peer.device(device.name)
            if peer_device is None:
                continue
            printed_model = buffers.device("model", device.name)
            if device.name == "CPU":
                printed_model += buffers.device("model", "CPU_Mapped") + buffers.device(
                    "model", "CPU_REPACK"
                )
            rows.append(PeerRow(
                label=f"{label}: {device.name}",
                yoyu=_parts(device.weights_bytes + device.repack_bytes, device.kv_bytes,
                            device.compute_bytes),
                peer=_parts(peer_device.model_bytes, peer_device.context_bytes,
                            peer_device.compute_bytes),
                printed=_parts(printed_model, buffers.device("kv", device.name),
                               buffers.device("compute", device.name)),
                yoyu_all_logits=all_logits.device(device.name).compute_bytes,
            ))  # fmt: skip
    return rows


def moe_rows(
    machine: Machine,
    llama_server: str,
    program: str,
    endpoints: list[str],
    folder: Path,
    quick: bool,
) -> list[PeerRow]:
    """Experts kept on the CPU beside one or two rpc-servers: a generated MoE (8 experts,
    2 used, Q4_0 so the CPU repacks them) and, unless ``quick``, gpt-oss-20b's tensor
    table (MXFP4 experts, biases; 2.8 GiB reach the rpc-server)."""
    logs = folder / "logs"
    generated = tiny("moe", "Q4_0", n_experts=8, n_experts_used=2)(folder)
    rows = device_rows(machine, llama_server, program, endpoints, logs, generated, MOE_SPLITS)
    if not quick:
        gpt_oss = sparse("gpt-oss-20b-mxfp4")(folder)
        rows += device_rows(
            machine, llama_server, program, endpoints, logs, gpt_oss, GPT_OSS_SPLITS
        )
    return rows


def _printed_buffers(
    llama_server: str, model: Path, load: dict[str, Any], logs: Path, extra: tuple[str, ...] = ()
) -> ReportedBuffers:
    backend = LlamaCppServerBackend(
        engine=LlamaCppEngine("llama-server", llama_server), log_dir=logs
    )
    try:
        loaded = backend.load(ModelRef("m", model), load | {"extra_argv": list(extra)})
    finally:
        backend.close()
    if loaded.buffers is None:
        raise SystemExit("llama-server printed no buffer sizes")
    return loaded.buffers


def print_placements(
    machine: Machine, llama_server: str, program: str, endpoints: list[str], logs: Path
) -> None:
    """Two devices with small budgets: where yoyu's plan, llama-fit-params and llama-server's
    own ``--fit`` put the real Gemma's layers, and what each device then holds."""
    model = real_model_path(GEMMA3_270M)
    spec = read_gguf_model(model)
    budgets = [budget * MIB for budget in PEER_BUDGETS_MIB]
    cluster = dataclasses.replace(machine, gpus=tuple(
        dataclasses.replace(gpu, total_bytes=budget, free_bytes=budget)
        for gpu, budget in zip(_rpc_machine(machine, endpoints).gpus, budgets, strict=False)
    ))  # fmt: skip
    base = RunSettings(engine="llama-server", n_ctx=2048)
    plan = make_plan(spec, cluster, PlanRequest(settings=base))
    # llama.cpp's margin is what stays free: the device's free memory less the budget.
    free_mib = _rpc_free_mib(program, endpoints)
    margins = [
        max(0, free - budget) for free, budget in zip(free_mib, PEER_BUDGETS_MIB, strict=True)
    ]
    # no -ngl: llama.cpp's fit only changes what the caller left unset
    load = {k: v for k, v in engine_load_settings(base).items() if k != "n_gpu_layers"}
    load["rpc"] = endpoints
    fitted = fit_with_llama_cpp(program, model, load, margins, min_ctx=2048)
    fit_argv = ("--fit", "on", "-fitt", ",".join(map(str, margins)), "-fitc", "2048")
    plan_load = engine_load_settings(plan.estimate.settings) | {"rpc": endpoints}
    named = " / ".join(f"{budget} MiB" for budget in PEER_BUDGETS_MIB)
    print(f"\nPlacement for device budgets {named} (real Gemma 3 270M, ctx 2048); "
          "what each device then held, printed by llama-server:")  # fmt: skip
    answers = [
        ("yoyu plan", _layers_text(plan.estimate), plan_load, ()),
        ("llama-fit-params", fitted.printed or "no fit", _fitted_load(load, fitted), ()),
        ("llama-server --fit on", "(its own choice)", load, fit_argv),
    ]
    for name, chosen, settings, extra in answers:
        buffers = _printed_buffers(llama_server, model, settings, logs, extra)
        held = [
            sum(buffers.device(kind, rpc_device_name(e)) for kind in ("model", "kv", "compute"))
            for e in endpoints
        ]
        over = any(h > b for h, b in zip(held, budgets, strict=True))
        print(f"  {name:22s} {chosen:40s} " + " / ".join(f"{h / MIB:7.2f}" for h in held)
              + " MiB" + ("  over a budget" if over else ""))  # fmt: skip


MOE_BUDGET_MIB = 4096  # one device too small for gpt-oss-20b: some experts must go


def print_moe_placement(
    machine: Machine, llama_server: str, program: str, endpoint: str, folder: Path
) -> None:
    """gpt-oss-20b on one device of ``MOE_BUDGET_MIB``: which experts yoyu's plan and
    llama-fit-params keep on the CPU, and what the device then held, printed by
    llama-server (repack off: the MXFP4 experts' CPU copy would take 8 GiB and 40 s)."""
    model = sparse("gpt-oss-20b-mxfp4")(folder)
    spec = read_gguf_model(model)
    budget = MOE_BUDGET_MIB * MIB
    device = dataclasses.replace(
        _rpc_machine(machine, [endpoint]).gpus[0], total_bytes=budget, free_bytes=budget
    )
    cluster = dataclasses.replace(machine, gpus=(device,))
    base = RunSettings(n_ctx=4096, engine="llama-server", flash_attn=True, repack=False)
    plan = make_plan(spec, cluster, PlanRequest(settings=base))
    [free_mib] = _rpc_free_mib(program, [endpoint])
    load = {k: v for k, v in engine_load_settings(base).items() if k != "n_gpu_layers"}
    load["rpc"] = [endpoint]
    fitted = fit_with_llama_cpp(
        program, model, load, [max(0, free_mib - MOE_BUDGET_MIB)], min_ctx=4096
    )
    overrides = ("-ot", ",".join(fitted.overrides)) if fitted.overrides else ()
    print(f"\nMoE placement for one {MOE_BUDGET_MIB} MiB device (gpt-oss-20b's tensor table, "
          "ctx 4096, fa): what the device then held, printed by llama-server")  # fmt: skip
    answers = [
        ("yoyu plan", f"--n-cpu-moe {plan.settings.n_cpu_moe}",
         engine_load_settings(plan.estimate.settings) | {"rpc": [endpoint]}, ()),
        ("llama-fit-params", f"-ngl {fitted.n_gpu_layers}, {len(fitted.overrides)} -ot patterns",
         _fitted_load(load, fitted), overrides),
    ]  # fmt: skip
    for name, chosen, settings, extra in answers:
        buffers = _printed_buffers(llama_server, model, settings, folder / "logs", extra)
        name_of = rpc_device_name(endpoint)
        held = sum(buffers.device(kind, name_of) for kind in ("model", "kv", "compute"))
        experts_on_cpu = buffers.device("model", "CPU_Mapped")
        print(f"  {name:18s} {chosen:34s} device {held / MIB:8.2f} MiB"
              f"{'  over the budget' if held > budget else ''}; CPU_Mapped "
              f"{experts_on_cpu / MIB:8.2f} MiB")  # fmt: skip


def _layers_text(estimate: MemoryEstimate) -> str:
    return (
        "layers "
        + " / ".join(f"{len(device.layers)}" for device in estimate.devices if device.name != "CPU")
        + f", ts {','.join(f'{s:g}' for s in estimate.settings.tensor_split)}"
    )


def _fitted_load(load: dict[str, Any], fitted: FittedArguments) -> dict[str, Any]:
    if not fitted.fits or fitted.n_gpu_layers is None:
        return load
    chosen = {**load, "n_gpu_layers": fitted.n_gpu_layers}
    if fitted.tensor_split:
        chosen["tensor_split"] = [float(share) for share in fitted.tensor_split]
    return chosen


def _rpc_free_mib(program: str, endpoints: list[str]) -> list[int]:
    """Each rpc-server's free memory as llama.cpp reads it (``--list-devices``)."""
    listed = subprocess.run(
        [program, "--rpc", ",".join(endpoints), "--list-devices"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return [int(free) for free in re.findall(r"(\d+) MiB free", listed.stdout + listed.stderr)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few configurations only")
    parser.add_argument("--keep", type=Path, help="write the models here instead of a temp dir")
    parser.add_argument("--llama-server", help="also measure this llama-server binary")
    parser.add_argument("--no-sparse", action="store_true", help="skip the 7B-12B real shapes")
    parser.add_argument("--no-peer", action="store_true", help="skip llama-fit-params (part 4)")
    args = parser.parse_args()
    machine = probe_machine()
    chosen = [
        c for c in configs(not args.no_sparse and not args.quick) if c.quick or not args.quick
    ]
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"{len(chosen)} configurations; machine: {machine.cpu.model}\n")
        rows = [component_row(config, machine, folder) for config in chosen]
        print_components(rows)
        peer = None if args.no_peer else fit_params_program()
        if peer is not None:
            pairs = zip(chosen, rows, strict=True)
            print_peer(
                "Whole model: yoyu, llama.cpp's own estimate (llama-fit-params --fit-print on), "
                "printed",
                [peer_whole_model(config, row, machine, folder, peer) for config, row in pairs],
            )
        llama_server = args.llama_server or found_program("llama-server")
        rpc_server = found_program("rpc-server")
        if peer is not None and llama_server and rpc_server:
            logs = folder / "logs"
            logs.mkdir(exist_ok=True)
            with rpc_servers(rpc_server, 2, logs) as endpoints:
                gemma = real_model_path(GEMMA3_270M)
                print_peer(
                    "Per device, the real Gemma over two rpc-servers (llama-server loads it):",
                    device_rows(machine, llama_server, peer, endpoints, logs, gemma,
                                DEVICE_SPLITS),
                )  # fmt: skip
                print_placements(machine, llama_server, peer, endpoints, logs)
                print_peer(
                    "Part 5. MoE experts on the CPU (--n-cpu-moe), per device: a generated "
                    "Q4_0 MoE" + ("" if args.quick else " and gpt-oss-20b's tensor table"),
                    moe_rows(machine, llama_server, peer, endpoints, folder, args.quick),
                )
                if not args.quick:
                    print_moe_placement(machine, llama_server, peer, endpoints[0], folder)
        elif not args.no_peer:
            print("\n(part 4 skipped: run `yoyu engine install` for llama-fit-params, "
                  "llama-server and rpc-server)")  # fmt: skip
        print_engine_peaks(machine, args.llama_server, args.quick)
        print_speed(machine, folder)


if __name__ == "__main__":
    main()
