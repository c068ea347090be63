"""How close yoyu's memory estimate comes to what llama.cpp really allocates.

Writes tiny GGUF models of several architectures, shapes and weight types
(``yoyu.testing.tiny_models``), loads each in llama-cpp-python in a child
process under several ctx / ubatch / KV type / flash-attention / parallel
settings (``yoyu.backends.llamacpp_measure``), and prints, per component,
yoyu's prediction beside llama.cpp's own printed buffer sizes, with median
and max relative error; then the total beside the child's peak RSS, and the
predicted decode speed beside the measured one (RAM bandwidth measured here
with a numpy copy loop).

    PYTHONPATH=src python benchmarks/estimate_accuracy.py [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yoyu.backends.llamacpp_measure import LoadMeasurement, measure_load
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.speed import predict_speed
from yoyu.estimate.types import MemoryEstimate, RunSettings
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.plan.emit.llama_cpp import llama_cpp_python_kwargs
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import MIB

# llama-cpp-python's own default is swa_full=True; the sweep states it each time.
BASE = {"n_layers": 4, "n_embd": 256, "n_head": 8, "n_head_kv": 2, "n_ff": 512, "vocab_size": 259}


@dataclass(frozen=True)
class Config:
    label: str
    arch: str
    weight_type: str
    settings: RunSettings
    shape: dict[str, int] = field(default_factory=dict)
    quick: bool = False


def configs() -> list[Config]:
    s = RunSettings
    return [
        Config("llama f32 ctx1000", "llama", "F32", s(n_ctx=1000), quick=True),
        Config("llama q8_0 ctx2048 ub256", "llama", "Q8_0", s(n_ctx=2048, n_ubatch=256)),
        Config("llama q4_0 fa kv q8_0", "llama", "Q4_0",
               s(n_ctx=1024, flash_attn=True, type_k="q8_0", type_v="q8_0"), quick=True),
        Config("llama f16 np2", "llama", "F16", s(n_ctx=2048, n_parallel=2)),
        Config("llama f16 np4 unified fa q4_0", "llama", "F16",
               s(n_ctx=4096, n_parallel=4, kv_unified=True, flash_attn=True, type_k="q4_0")),
        Config("qwen2 f16 ctx4096 fa", "qwen2", "F16", s(n_ctx=4096, flash_attn=True)),
        Config("qwen3 f16 ctx2048", "qwen3", "F16", s(n_ctx=2048), quick=True),
        Config("qwen3 q4_k ctx1024 ub128", "qwen3", "Q4_K", s(n_ctx=1024, n_ubatch=128),
               {"n_embd": 512, "n_head": 8, "n_head_kv": 4, "n_ff": 1024}),
        Config("gemma2 f16 swa ctx2048", "gemma2", "F16", s(n_ctx=2048), {"sliding_window": 128},
               quick=True),
        Config("gemma2 f16 swa ctx4096 fa", "gemma2", "F16", s(n_ctx=4096, flash_attn=True),
               {"sliding_window": 256}),
        Config("gemma2 f16 swa_full", "gemma2", "F16", s(n_ctx=1024, swa_full=True),
               {"sliding_window": 128}),
        Config("moe f16 ctx1024", "moe", "F16", s(n_ctx=1024),
               {"n_experts": 8, "n_experts_used": 2}, quick=True),
        Config("moe q4_0 ctx2048 fa ub256", "moe", "Q4_0",
               s(n_ctx=2048, flash_attn=True, n_ubatch=256), {"n_experts": 4, "n_experts_used": 2}),
        Config("llama bigvocab fa", "llama", "F16", s(n_ctx=1024, flash_attn=True),
               {"vocab_size": 32000}),
        Config("llama no-mmap q4_0", "llama", "Q4_0", s(n_ctx=1024, use_mmap=False)),
    ]  # fmt: skip


@dataclass(frozen=True)
class Row:
    config: Config
    predicted: dict[str, int]
    measured: dict[str, int]


def predicted_components(estimate: MemoryEstimate) -> dict[str, int]:
    cpu = estimate.device("CPU")
    weights = estimate.mapped_bytes if estimate.settings.use_mmap else cpu.weights_bytes
    return {
        "weights": weights,
        "repack": cpu.repack_bytes,
        "kv": estimate.total("kv_bytes"),
        "compute": estimate.total("compute_bytes"),
        "output": estimate.total("output_bytes"),
        "total": estimate.total_bytes,
    }


def measured_components(measurement: LoadMeasurement) -> dict[str, int]:
    model = measurement.buffers.by_kind.get("model", {})
    return {
        "weights": model.get("CPU_Mapped", 0) + model.get("CPU", 0),
        "repack": model.get("CPU_REPACK", 0),
        "kv": measurement.buffers.total("kv"),
        "compute": measurement.buffers.total("compute"),
        "output": measurement.buffers.total("output"),
        "total": measurement.peak_rss_bytes,
    }


def run_config(config: Config, machine: Machine, folder: Path) -> Row:
    path = folder / f"{config.label.replace(' ', '_')}.gguf"
    write_tiny_model(path, config.arch, weight_type=config.weight_type, **{**BASE, **config.shape})
    spec = read_gguf_model(path)
    estimate = estimate_memory(spec, machine, config.settings)
    # filling the context touches the whole compute buffer, so peak RSS holds all of it
    measurement = measure_load(path, llama_cpp_python_kwargs(config.settings), generate_tokens=4)
    return Row(config, predicted_components(estimate), measured_components(measurement))


def relative_error(predicted: int, measured: int) -> float:
    if measured == 0:
        return 0.0 if predicted < 0.01 * MIB else float("inf")
    return (predicted - measured) / measured


def print_rows(rows: list[Row]) -> None:
    components = ("weights", "repack", "kv", "compute", "output", "total")
    print(f"{'configuration':32s} " + " ".join(f"{c + ' pred/meas MiB':>26s}" for c in components))
    for row in rows:
        cells = [_cell(row.predicted[c], row.measured[c]) for c in components]
        print(f"{row.config.label:32s} " + " ".join(f"{cell:>26s}" for cell in cells))
    print()
    for component in components:
        errors = [abs(relative_error(r.predicted[component], r.measured[component])) for r in rows]
        mib_off = [abs(r.predicted[component] - r.measured[component]) / MIB for r in rows]
        label = "total vs peak RSS" if component == "total" else component
        print(
            f"{label:18s} median error {100 * statistics.median(errors):6.2f}%  "
            f"max {100 * max(errors):6.2f}%  max abs {max(mib_off):7.3f} MiB"
        )


def _cell(predicted: int, measured: int) -> str:
    error = 100 * relative_error(predicted, measured)
    return f"{predicted / MIB:9.2f}/{measured / MIB:8.2f} {error:+6.1f}%"


def ram_bandwidth_bytes_per_s(size_bytes: int = 512 * MIB, repeats: int = 8) -> int:
    """Copy bandwidth (read + write bytes per second), best of ``repeats``."""
    source = np.ones(size_bytes // 8, dtype=np.float64)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - started)
    return int(2 * size_bytes / best)


def decode_speed(machine: Machine, folder: Path, quick: bool) -> None:
    bandwidth = ram_bandwidth_bytes_per_s()
    machine = dataclasses.replace(
        machine, memory=dataclasses.replace(machine.memory, bandwidth_bytes_per_s=bandwidth)
    )
    print(f"\nRAM copy bandwidth measured: {bandwidth / 1e9:.1f} GB/s")
    shapes: list[tuple[str, str, dict[str, Any]]] = [
        (
            "llama",
            "Q8_0",
            {"n_layers": 4, "n_embd": 2048, "n_head": 16, "n_head_kv": 4, "n_ff": 5632},
        ),
    ]
    if not quick:
        shapes.append(
            (
                "llama",
                "F16",
                {"n_layers": 4, "n_embd": 1536, "n_head": 12, "n_head_kv": 4, "n_ff": 4096},
            )
        )
        shapes.append(
            (
                "moe",
                "Q8_0",
                {
                    "n_layers": 4,
                    "n_embd": 1024,
                    "n_head": 8,
                    "n_head_kv": 2,
                    "n_ff": 2048,
                    "n_experts": 8,
                    "n_experts_used": 2,
                },
            )
        )
    for arch, weight_type, shape in shapes:
        path = folder / f"decode_{arch}_{weight_type}.gguf"
        write_tiny_model(path, arch, weight_type=weight_type, **{**BASE, **shape})
        spec = read_gguf_model(path)
        settings = RunSettings(n_ctx=512)
        estimate = estimate_memory(spec, machine, settings)
        predicted = predict_speed(spec, estimate, machine, context_tokens=estimate.n_ctx)
        measured = measure_load(path, llama_cpp_python_kwargs(settings), generate_tokens=32)
        decode = measured.decode_tps or 0.0
        error = (predicted.decode_tps - decode) / decode if decode else float("inf")
        print(
            f"decode {arch} {weight_type} ({spec.file_bytes / MIB:.0f} MiB): predicted "
            f"{predicted.decode_tps:7.1f} tok/s, measured {decode:7.1f} tok/s, "
            f"error {100 * error:+.1f}% "
            f"[{predicted.bound}]; prefill predicted {predicted.prefill_tps:.0f}, "
            f"measured {measured.prefill_tps or 0:.0f} tok/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few configurations only")
    parser.add_argument("--keep", type=Path, help="write the models here instead of a temp dir")
    args = parser.parse_args()
    machine = probe_machine()
    chosen = [c for c in configs() if c.quick or not args.quick]
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        archs = sorted({c.arch for c in chosen})
        print(
            f"{len(chosen)} configurations, architectures: {', '.join(archs)}; "
            f"machine: {machine.cpu.model}\n"
        )
        print_rows([run_config(config, machine, folder) for config in chosen])
        decode_speed(machine, folder, args.quick)


if __name__ == "__main__":
    main()
