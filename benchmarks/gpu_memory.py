"""What llama.cpp holds on an NVIDIA GPU beside what yoyu predicts, and whether yoyu's
NVML probe reads the card as ``nvidia-smi`` does.

Needs an NVIDIA GPU and a CUDA ``llama-server`` (``yoyu engine install --cuda``, or
``--build-cuda DIR``: build one first through yoyu's own installer, timed). Every part is
written to ``--out`` (``gpu_memory.json`` and ``gpu_memory.md``) as soon as it is
measured, so a run cut short keeps what it had.

1. Probe: yoyu's ``GpuInfo`` (``yoyu.machine.nvidia``, NVML) and ``yoyu machine --json``
   beside ``nvidia-smi --query-gpu``: name, total / used / reserved / free memory, driver,
   memory clock. NVML's v1 memory query (the one yoyu calls) counts the driver's
   reservation as used; nvidia-smi prints it apart.
2. Memory: real shapes (``yoyu.testing.sparse_models``: the tensor tables of the real
   releases, the data a sparse hole, so every weight is zero) at several contexts, every
   layer on the GPU, half the layers, and MoE experts on the CPU. llama-server is started
   by yoyu's backend with the flags yoyu's emitter writes (``--fit off``, explicit
   ``-ngl -c -np -fa``). Per component: yoyu's prediction for the probed machine,
   llama.cpp's printed buffer, and NVML: the server process's used memory
   (``nvmlDeviceGetComputeRunningProcesses`` through ``yoyu.monitor.gpu``) after the
   load and at its highest during one 512-token request (ggml-cuda's memory pool and
   cuBLAS grow while computing), and the device's used memory before and after. What
   NVML sees beyond the printed CUDA buffers is the CUDA context, kernels, cuBLAS and
   the pool: beside it, yoyu's runtime overhead figure (``estimate.overhead``).
3. Speed: llama-server's own timings for a 512-token prompt and 128 generated tokens
   (median of three after a warm-up) on Llama 3.1 8B Q4_K_M, beside yoyu's prediction
   for the probed machine and for the ``server-h200-141g`` preset. The weights are zeros:
   decode reads the same bytes as with real weights, but a GPU computing on zeros draws
   less power and can run matrix products faster (prefill may read high).

    PYTHONPATH=src python benchmarks/gpu_memory.py --out DIR [--llama-server PATH]
        [--build-cuda ENGINES_DIR] [--deadline-s S] [--quick] [--cpu]
    PYTHONPATH=src python benchmarks/gpu_memory.py --out DIR --predict-only server-h200-141g

``--cpu`` runs small generated models on the CPU (no GPU, no NVML figures): the
script's own check where no GPU is. ``--deadline-s`` skips the cases that would not
finish in time (each is sized by its file) and says which.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from yoyu.backends import llamacpp_build
from yoyu.backends.llamacpp_flags import LlamaCppEngine
from yoyu.backends.llamacpp_log import ReportedBuffers
from yoyu.backends.llamacpp_server import LlamaCppServerBackend
from yoyu.backends.protocol import ModelRef
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.overhead import runtime_overhead_bytes
from yoyu.estimate.speed import predict_speed
from yoyu.estimate.types import ALL_LAYERS, MemoryEstimate, RunSettings
from yoyu.machine import load_machine
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.models.spec import ModelSpec
from yoyu.monitor.gpu import NvmlGpus
from yoyu.plan.emit.llama_cpp import engine_load_settings
from yoyu.testing.sparse_models import write_sparse_model
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import MIB

H200_PRESET = "server-h200-141g"
GPU = "CUDA0"
PROMPT_TOKENS, DECODE_TOKENS, SPEED_REPEATS = 512, 128, 3
LOAD_BYTES_PER_S = 2e9  # a pessimistic upload rate from a sparse file, to size a case
CASE_FIXED_S = 15.0  # start, CUDA init, one request, stop
REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Case:
    label: str
    model: str  # a sparse_models name, or "tiny:<arch>" in --cpu mode
    settings: RunSettings
    speed: bool = False
    quick: bool = False


def _s(**fields: Any) -> RunSettings:
    return RunSettings(engine="llama-server", **fields)


L8, G12, Q7, OSS, L70 = (
    "llama-3.1-8b-q4_k_m", "gemma-3-12b-q4_k_m", "deepseek-r1-distill-qwen-7b-q4_k_m",
    "gpt-oss-20b-mxfp4", "llama-3.1-70b-q4_k_m",
)  # fmt: skip
# In the order they are worth the device's minutes: the partial placements first (there
# ggml's op offload copies CPU weights into the GPU's compute buffer, which no RPC device
# does), then contexts and shapes; the 70B full offload (40 GiB to upload) last.
GPU_CASES = (
    Case("llama-3.1-8b ctx4096 all", L8, _s(n_ctx=4096, n_gpu_layers=ALL_LAYERS), True, True),
    Case("llama-3.1-8b ctx4096 ngl16", L8, _s(n_ctx=4096, n_gpu_layers=16), quick=True),
    Case("gpt-oss-20b ctx4096 all fa", OSS,
         _s(n_ctx=4096, n_gpu_layers=ALL_LAYERS, flash_attn=True), quick=True),
    Case("gpt-oss-20b ctx4096 all fa ncm12", OSS,
         _s(n_ctx=4096, n_gpu_layers=ALL_LAYERS, flash_attn=True, n_cpu_moe=12), quick=True),
    Case("llama-3.1-8b ctx32768 all", L8, _s(n_ctx=32768, n_gpu_layers=ALL_LAYERS), quick=True),
    Case("llama-3.1-8b ctx32768 all fa", L8,
         _s(n_ctx=32768, n_gpu_layers=ALL_LAYERS, flash_attn=True), quick=True),
    Case("gemma-3-12b ctx4096 all", G12, _s(n_ctx=4096, n_gpu_layers=ALL_LAYERS), quick=True),
    Case("llama-3.1-70b ctx32768 ngl40 fa", L70,
         _s(n_ctx=32768, n_gpu_layers=40, flash_attn=True)),
    Case("gemma-3-12b ctx32768 all fa", G12,
         _s(n_ctx=32768, n_gpu_layers=ALL_LAYERS, flash_attn=True)),
    Case("qwen2-7b ctx32768 all", Q7, _s(n_ctx=32768, n_gpu_layers=ALL_LAYERS)),
    Case("llama-3.1-70b ctx4096 all", L70, _s(n_ctx=4096, n_gpu_layers=ALL_LAYERS)),
)  # fmt: skip
CPU_CASES = (
    Case("tiny llama q4_0 ctx4096", "tiny:llama", _s(n_ctx=4096), speed=True, quick=True),
    Case("tiny moe q4_0 ctx2048", "tiny:moe", _s(n_ctx=2048), quick=True),
)
TINY = {
    "llama": {"n_layers": 4, "n_embd": 512, "n_head": 8, "n_head_kv": 2, "n_ff": 1024},
    "moe": {"n_layers": 4, "n_embd": 256, "n_head": 8, "n_head_kv": 2, "n_ff": 512,
            "n_experts": 8, "n_experts_used": 2},
}  # fmt: skip


# -- results ---------------------------------------------------------------------------


@dataclass
class Report:
    """Everything measured so far; written whole after each step."""

    out: Path
    started: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)
    probe: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("out", "started")}
        (self.out / "gpu_memory.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
        (self.out / "gpu_memory.md").write_text(markdown(self), encoding="utf-8")

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        print(f"\n== {name} (at {began - self.started:.0f} s)", flush=True)
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - began, 1)
            print(f"== {name}: {self.phases[name]:.1f} s", flush=True)
            self.write()


# -- 1. probe --------------------------------------------------------------------------

SMI_FIELDS = (
    "name", "memory.total", "memory.reserved", "memory.used", "memory.free",
    "driver_version", "clocks.max.memory", "compute_cap",
)  # fmt: skip


def nvidia_smi_rows(fields: tuple[str, ...] = SMI_FIELDS) -> list[dict[str, str]]:
    """``nvidia-smi --query-gpu`` as dicts (MiB and MHz without units); [] without it.
    A field an older driver does not know is dropped and the query asked again."""
    query = ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0 and len(fields) > 3:
        return nvidia_smi_rows(fields[:-1])
    return parse_smi_csv(done.stdout, fields) if done.returncode == 0 else []


def parse_smi_csv(text: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    return [dict(zip(fields, (cell.strip() for cell in row), strict=False)) for row in rows if row]


def probe_part(report: Report) -> Machine:
    machine = probe_machine()
    cli = subprocess.run(
        [sys.executable, "-m", "yoyu", "machine", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    cli_gpus = json.loads(cli.stdout).get("gpus", []) if cli.returncode == 0 else None
    smi = nvidia_smi_rows()
    report.probe = {
        "yoyu_probe_gpus": [gpu.to_dict() for gpu in machine.gpus],
        "yoyu_machine_json_gpus": cli_gpus,
        "yoyu_machine_json_failure": cli.stderr[-500:] if cli.returncode else None,
        "nvidia_smi": smi,
        "comparison": compare_probe(machine, smi),
        "cpu": dataclasses.asdict(machine.cpu),
        "memory_total_bytes": machine.memory.total_bytes,
    }
    for line in report.probe["comparison"]:
        print(line)
    return machine


def compare_probe(machine: Machine, smi: list[dict[str, str]]) -> list[str]:
    """One line per GPU and figure: yoyu's (NVML v1) value beside nvidia-smi's."""
    lines = []
    nvidia = [gpu for gpu in machine.gpus if gpu.vendor == "nvidia"]
    if len(nvidia) != len(smi):
        lines.append(f"GPU count: yoyu {len(nvidia)}, nvidia-smi {len(smi)}")
    for gpu, row in zip(nvidia, smi, strict=False):
        reserved = _mib(row.get("memory.reserved"))
        used = _mib(row.get("memory.used"))
        lines += [
            f"GPU {gpu.index} name: yoyu {gpu.name!r}, nvidia-smi {row.get('name')!r}",
            f"GPU {gpu.index} total MiB: yoyu {gpu.total_bytes / MIB:.0f}, "
            f"nvidia-smi {row.get('memory.total')}",
            f"GPU {gpu.index} used MiB: yoyu {gpu.used_bytes / MIB:.0f}, nvidia-smi used "
            f"{row.get('memory.used')} + reserved {row.get('memory.reserved', '?')} = "
            f"{(used or 0) + (reserved or 0):.0f}",
            f"GPU {gpu.index} free MiB: yoyu {gpu.free_bytes / MIB:.0f}, "
            f"nvidia-smi {row.get('memory.free')}",
            f"GPU {gpu.index} driver: yoyu {gpu.driver_version}, "
            f"nvidia-smi {row.get('driver_version')}; CUDA (NVML) {gpu.cuda_version}; "
            f"compute capability yoyu {gpu.compute_capability}, "
            f"nvidia-smi {row.get('compute_cap')}",
            f"GPU {gpu.index} memory clock MHz: yoyu {gpu.memory_clock_mhz}, nvidia-smi "
            f"{row.get('clocks.max.memory')}; bus {gpu.memory_bus_width_bits} bit -> "
            f"{(gpu.bandwidth_bytes_per_s or 0) / 1e12:.3f} TB/s",
        ]
    return lines


def _mib(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None  # "[N/A]"


# -- 2. build --------------------------------------------------------------------------


def build_part(report: Report, engines: Path, version: str) -> str:
    """The CUDA build through ``llamacpp_build.install`` (its source tree already in
    place under ``engines``: the installer then fetches nothing)."""
    options = llamacpp_build.BuildOptions(version, ("cuda",), rpc=False)
    shown = {"percent": -10}
    began = time.monotonic()

    def progress(step: str, percent: int | None) -> None:
        if percent is None or percent >= shown["percent"] + 10:
            shown["percent"] = percent if percent is not None else shown["percent"]
            print(f"  build {time.monotonic() - began:5.0f} s: {step} {percent or ''}", flush=True)

    build = llamacpp_build.install(options, engines, on_progress=progress, jobs=os.cpu_count())
    report.build = build.to_dict()
    return build.programs["llama-server"]


# -- 2. memory -------------------------------------------------------------------------


def model_file(name: str, folder: Path) -> Path:
    if name.startswith("tiny:"):
        arch = name.removeprefix("tiny:")
        path = folder / f"tiny-{arch}-q4_0.gguf"
        if not path.exists():
            write_tiny_model(path, arch, weight_type="Q4_0", vocab_size=32000, **TINY[arch])
        return path
    path = folder / f"{name}.gguf"
    return path if path.exists() else write_sparse_model(folder, name).paths[0]


@dataclass
class NvmlWatch:
    """The device's used memory and the server tree's own (NVML), with a sampler thread
    for the highest reading during a request."""

    gpus: NvmlGpus
    available: bool
    peak_process: int = 0
    peak_device: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def read(self, pids: list[int]) -> tuple[int | None, int | None]:
        if not self.available:
            return None, None
        samples = self.gpus.read(pids)
        if not samples:
            return None, None
        return samples[0].used_bytes, samples[0].process_used_bytes

    @contextlib.contextmanager
    def peak(self, pids: list[int]) -> Iterator[None]:
        self.peak_process = self.peak_device = 0
        self._stop.clear()
        thread = threading.Thread(target=self._sample, args=(pids,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def _sample(self, pids: list[int]) -> None:
        while not self._stop.is_set():
            device, process = self.read(pids)
            self.peak_device = max(self.peak_device, device or 0)
            self.peak_process = max(self.peak_process, process or 0)
            self._stop.wait(0.02)


def nvml_processes() -> list[dict[str, Any]]:
    """NVML's whole compute-process list (pid, used bytes): shows what the per-process
    figure was summed from, and whether NVML sees this namespace's pids."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            listed = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            return [{"pid": p.pid, "used_bytes": p.usedGpuMemory} for p in listed]
        finally:
            pynvml.nvmlShutdown()
    except Exception as error:  # no NVML, no GPU, a binding without the call
        return [{"error": str(error)[:200]}]


def completion(base_url: str, prompt: list[int], n_predict: int) -> dict[str, Any]:
    """One request to llama-server's own ``/completion`` with token ids (the sparse
    models' vocabularies are placeholders: text would not tokenize as it should)."""
    body = {
        "prompt": prompt, "n_predict": n_predict, "ignore_eos": True, "cache_prompt": False,
        "temperature": 0.0, "top_k": 1, "stream": False,
    }  # fmt: skip
    response = httpx.post(f"{base_url}/completion", json=body, timeout=REQUEST_TIMEOUT_S)
    response.raise_for_status()
    timings: dict[str, Any] = response.json().get("timings", {})
    return timings


def prompt_ids(spec: ModelSpec, count: int, seed: int) -> list[int]:
    """``count`` ordinary token ids (past the first 16, where the control tokens sit)."""
    span = spec.vocab_size - 32
    return [16 + (seed * 7919 + index * 31) % span for index in range(count)]


def measure_case(
    case: Case, machine: Machine, server: str, folder: Path, watch: NvmlWatch, timeout_s: float
) -> dict[str, Any]:
    """One load (given at most ``timeout_s``), one request, the speed runs when asked."""
    path = model_file(case.model, folder)
    spec = read_gguf_model(path)
    estimate = estimate_memory(spec, machine, case.settings)
    backend = LlamaCppServerBackend(
        engine=LlamaCppEngine("llama-server", server), log_dir=folder / "logs",
        start_timeout_s=timeout_s,
    )  # fmt: skip
    device_before, _ = watch.read([])
    try:
        began = time.monotonic()
        loaded = backend.load(ModelRef("m", path), engine_load_settings(case.settings))
        load_s = time.monotonic() - began
        pids = backend.pids()
        device_loaded, process_loaded = watch.read(pids)
        root = _root_url(loaded.base_url)
        with watch.peak(pids):
            completion(root, prompt_ids(spec, PROMPT_TOKENS, 1), 16)
        processes = nvml_processes()
        speed = speed_part(case, spec, estimate, machine, root) if case.speed else None
    finally:
        backend.close()
    if loaded.buffers is None:
        raise SystemExit(f"{case.label}: llama-server printed no buffer sizes")
    nvml = {
        "device_before": device_before, "device_loaded": device_loaded,
        "process_loaded": process_loaded, "process_peak": watch.peak_process or None,
        "device_peak": watch.peak_device or None, "processes": processes, "pids": pids,
    }  # fmt: skip
    return {
        "label": case.label, "model": case.model, "file_bytes": path.stat().st_size,
        "settings": case.settings.to_dict(), "load_s": round(load_s, 1),
        "rows": component_rows(estimate, loaded.buffers, nvml),
        "printed": loaded.buffers.by_kind, "nvml": nvml,
        "predicted": estimate.to_dict(), "speed": speed,
    }  # fmt: skip


def _root_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


HOST_DEVICES = ("CPU", "CPU_Mapped", "CPU_REPACK", "CUDA_Host")


def component_rows(
    estimate: MemoryEstimate, printed: ReportedBuffers, nvml: dict[str, Any]
) -> list[dict[str, Any]]:
    """Predicted / printed / NVML bytes per component and side (GPU, host)."""
    gpu = next((device for device in estimate.devices if device.name == GPU), None)
    cpu = estimate.device("CPU")
    rows = []
    for label, kind, attribute in (
        ("weights", "model", "weights_bytes"), ("KV cache", "kv", "kv_bytes"),
        ("compute", "compute", "compute_bytes"), ("output", "output", "output_bytes"),
    ):  # fmt: skip
        predicted_gpu = getattr(gpu, attribute) if gpu else 0
        predicted_cpu = getattr(cpu, attribute) + (cpu.repack_bytes if kind == "model" else 0)
        host = sum(printed.device(kind, name) for name in HOST_DEVICES)
        rows.append(_row(f"{label} {GPU}", predicted_gpu, printed.device(kind, GPU)))
        rows.append(_row(f"{label} host", predicted_cpu, host))
    buffers_gpu = sum(printed.device(kind, GPU) for kind in ("model", "kv", "compute", "output"))
    predicted_buffers = (gpu.total_bytes - gpu.overhead_bytes) if gpu else 0
    rows.append(_row(f"buffers {GPU}", predicted_buffers, buffers_gpu))
    for moment in ("loaded", "peak"):
        measured = nvml.get(f"process_{moment}")
        predicted_total = gpu.total_bytes if gpu else 0
        rows.append(_row(f"process on {GPU} (NVML, {moment})", predicted_total, None, measured))
        beyond = measured - buffers_gpu if measured else None
        overhead = runtime_overhead_bytes(GPU) if gpu else 0
        rows.append(_row(f"beyond buffers (NVML {moment} - printed)", overhead, None, beyond))
    before, after = nvml.get("device_before"), nvml.get("device_loaded")
    delta = after - before if after is not None and before is not None else None
    rows.append(_row("device used after - before (NVML)", gpu.total_bytes if gpu else 0,
                     None, delta))  # fmt: skip
    return rows


def _row(name: str, predicted: int, printed: int | None, nvml: int | None = None) -> dict[str, Any]:
    measured = printed if printed is not None else nvml
    ratio = predicted / measured if measured else None
    return {"component": name, "predicted": predicted, "printed": printed, "nvml": nvml,
            "ratio": round(ratio, 4) if ratio is not None else None}  # fmt: skip


# -- 3. speed --------------------------------------------------------------------------


def speed_part(
    case: Case, spec: ModelSpec, estimate: MemoryEstimate, machine: Machine, root: str
) -> dict[str, Any]:
    completion(root, prompt_ids(spec, PROMPT_TOKENS, 2), 16)  # warm-up
    runs = [
        completion(root, prompt_ids(spec, PROMPT_TOKENS, 10 + repeat), DECODE_TOKENS)
        for repeat in range(SPEED_REPEATS)
    ]
    filled = PROMPT_TOKENS + DECODE_TOKENS // 2
    probed = predict_speed(spec, estimate, machine, context_tokens=filled)
    preset = load_machine(H200_PRESET)
    preset_estimate = estimate_memory(spec, preset, case.settings)
    on_preset = predict_speed(spec, preset_estimate, preset, context_tokens=filled)
    return {
        "prefill_tps": statistics.median(run.get("prompt_per_second", 0.0) for run in runs),
        "decode_tps": statistics.median(run.get("predicted_per_second", 0.0) for run in runs),
        "runs": runs,
        "predicted_probed": dataclasses.asdict(probed),
        "predicted_h200_preset": dataclasses.asdict(on_preset),
    }


# -- the markdown ----------------------------------------------------------------------


def markdown(report: Report) -> str:
    lines = ["# GPU memory: yoyu's prediction, llama.cpp's buffers, NVML", ""]
    lines += [f"- phase {name}: {seconds:.1f} s" for name, seconds in report.phases.items()]
    if report.build:
        lines.append(f"- build: {report.build.get('key')} in {report.build.get('build_seconds')} s")
    lines += ["", "## Probe (yoyu NVML vs nvidia-smi)", ""]
    lines += [f"- {line}" for line in report.probe.get("comparison", [])]
    for case in report.cases:
        lines += ["", f"## {case['label']} (load {case['load_s']} s)", ""]
        if case.get("error"):
            lines.append(f"FAILED: {case['error']}")
            continue
        lines += ["| component | predicted MiB | llama.cpp printed MiB | NVML MiB | ratio |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        lines += [_markdown_row(row) for row in case["rows"]]
        if case.get("speed"):
            lines += _speed_lines(case["speed"])
    if report.skipped:
        lines += ["", "Skipped (deadline): " + ", ".join(report.skipped)]
    return "\n".join(lines) + "\n"


def _markdown_row(row: dict[str, Any]) -> str:
    cells = [_mib_text(row[key]) for key in ("predicted", "printed", "nvml")]
    ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
    return f"| {row['component']} | {' | '.join(cells)} | {ratio} |"


def _mib_text(value: int | None) -> str:
    return f"{value / MIB:.2f}" if value is not None else "-"


def _speed_lines(speed: dict[str, Any]) -> list[str]:
    probed, preset = speed["predicted_probed"], speed["predicted_h200_preset"]
    return [
        "",
        f"Speed (median of {SPEED_REPEATS}, {PROMPT_TOKENS}-token prompt, {DECODE_TOKENS} "
        "generated, zero weights):",
        "",
        "| | measured tok/s | yoyu, probed machine | yoyu, h200 preset |",
        "|---|---:|---:|---:|",
        f"| prefill | {speed['prefill_tps']:.1f} | {probed['prefill_tps']:.1f} | "
        f"{preset['prefill_tps']:.1f} |",
        f"| decode | {speed['decode_tps']:.1f} | {probed['decode_tps']:.1f} | "
        f"{preset['decode_tps']:.1f} |",
    ]


# -- main ------------------------------------------------------------------------------


def run_cases(
    report: Report, cases: tuple[Case, ...], machine: Machine, server: str, folder: Path,
    deadline: float, watch: NvmlWatch,
) -> None:  # fmt: skip
    for case in cases:
        path = model_file(case.model, folder)
        needed = CASE_FIXED_S + path.stat().st_size / LOAD_BYTES_PER_S
        if time.monotonic() + needed > deadline:
            print(f"skip {case.label}: needs about {needed:.0f} s, deadline near", flush=True)
            report.skipped.append(case.label)
            continue
        with report.phase(case.label):
            try:
                left = max(deadline - time.monotonic(), CASE_FIXED_S)
                result = measure_case(case, machine, server, folder, watch, left)
            except Exception as error:  # one failed case must not lose the others
                print(f"FAILED {case.label}: {error}", flush=True)
                report.cases.append({"label": case.label, "error": str(error)[:500],
                                     "load_s": None, "rows": []})  # fmt: skip
                continue
            report.cases.append(result)
            for row in result["rows"]:
                print("  " + _markdown_row(row), flush=True)
            if result["speed"]:
                print("\n".join(_speed_lines(result["speed"])), flush=True)


def print_predictions(cases: tuple[Case, ...], machine: Machine, folder: Path) -> None:
    """What the device run will check, per case: yoyu's figures alone (no engine started)."""
    print(
        f"| case | {GPU} weights | KV | compute | + runtime | {GPU} total | host weights "
        "| host compute | output |\n|---|" + "---:|" * 8
    )
    for case in cases:
        estimate = estimate_memory(
            read_gguf_model(model_file(case.model, folder)), machine, case.settings
        )
        gpu = next((d for d in estimate.devices if d.name == GPU), None)
        cpu = estimate.device("CPU")
        figures = [gpu.weights_bytes, gpu.kv_bytes, gpu.compute_bytes, gpu.overhead_bytes,
                   gpu.total_bytes] if gpu else [0] * 5  # fmt: skip
        figures += [cpu.weights_bytes + cpu.repack_bytes, cpu.compute_bytes, cpu.output_bytes]
        print(f"| {case.label} | " + " | ".join(_mib_text(value) for value in figures) + " |")


def prepare_models(cases: tuple[Case, ...], folder: Path) -> None:
    for name in dict.fromkeys(case.model for case in cases):
        model_file(name, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--llama-server")
    parser.add_argument("--build-cuda", type=Path, metavar="ENGINES_DIR")
    parser.add_argument("--engine-version", default="0.3.36")
    parser.add_argument("--models", type=Path, help="where the models go (default: a temp dir)")
    parser.add_argument("--deadline-s", type=float, default=1e9)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--predict-only", metavar="PRESET", help="print yoyu's figures only")
    args = parser.parse_args()
    report = Report(args.out)
    deadline = report.started + args.deadline_s
    folder = args.models or Path(tempfile.mkdtemp(prefix="gpu-memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    cases = CPU_CASES if args.cpu else GPU_CASES
    cases = tuple(case for case in cases if case.quick) if args.quick else cases
    if args.cpu:
        cases = tuple(dataclasses.replace(c, settings=dataclasses.replace(c.settings,
                      n_gpu_layers=0)) for c in cases)  # fmt: skip
    if args.predict_only:
        print_predictions(cases, load_machine(args.predict_only), folder)
        return
    with report.phase("probe"):
        machine = probe_part(report)
    server = args.llama_server
    with report.phase("build and sparse models"):
        server = _build_beside(report, args, lambda: prepare_models(cases, folder)) or server
    if server is None:
        server = llamacpp_build.found_program("llama-server")
    if server is None:
        raise SystemExit("no llama-server: pass --llama-server PATH or --build-cuda DIR")
    watch = NvmlWatch(NvmlGpus(), available=False)
    watch.available = watch.gpus.open()
    try:
        run_cases(report, cases, machine, server, folder, deadline, watch)
    finally:
        watch.gpus.close()
    report.write()
    print(f"\nwrote {args.out / 'gpu_memory.md'} and gpu_memory.json", flush=True)


def _build_beside(
    report: Report, args: argparse.Namespace, other: Callable[[], None]
) -> str | None:
    """The CUDA build (minutes) in a thread while ``other`` writes the models."""
    if args.build_cuda is None:
        other()
        return None
    result: dict[str, Any] = {}

    def build() -> None:
        try:
            result["server"] = build_part(report, args.build_cuda, args.engine_version)
        except Exception as error:  # reported below, with the log's path
            result["error"] = error

    thread = threading.Thread(target=build)
    thread.start()
    other()
    thread.join()
    if "error" in result:
        raise SystemExit(f"the CUDA build failed: {result['error']}")
    return str(result["server"])


if __name__ == "__main__":
    main()
