"""yoyu's LoRA training plan beside a real PEFT + PyTorch step on this CPU.

For each setting (rank, targets, seq, batch, checkpointing, optimizer) a fresh
child process loads a small Hugging Face model with random weights and a real
architecture config (written here by a first child: a Llama-3-shaped body with
Llama 3's 128,256-token vocabulary, and a Qwen2-shaped one with tied
embeddings and Qwen's 151,936 tokens), wraps it in LoRA and runs two optimizer
steps. Measured: the kernel's peak RSS (VmHWM, reset per phase) less the RSS of
the same process after ``import torch``; predicted: yoyu's per-component total
for the CPU less the same baseline (``TORCH_PROCESS_BYTES``). Phase peaks show
where the peak falls (forward, backward, optimizer step).

Needs torch and peft importable by this interpreter (or in ``YOYU_TORCH_PATH``):
``pip install torch==2.13.0 peft`` (the CPU wheel). QLoRA rows (``Q``) run
with ``--bitsandbytes DIR``, a folder bitsandbytes was installed into: its CPU
backend (0.50) quantizes to NF4 and runs the 4-bit matmuls here; only those rows
see it, since peft imports bitsandbytes whenever it can.

    PYTHONPATH=src python benchmarks/training_memory.py [--keep DIR] [--quick]
        [--bitsandbytes DIR] [--only lora|qlora]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from yoyu.estimate.training import TORCH_PROCESS_BYTES, TrainingMemory, estimate_training
from yoyu.estimate.training_settings import TARGETS, TrainingSettings
from yoyu.models.hf_model import read_hf_model
from yoyu.testing.training_run import (
    LLAMA3_SHAPED,
    QWEN2_SHAPED,
    MeasuredStep,
    measure_step,
    torch_available,
    write_model,
)
from yoyu.units import MIB

GOAL = 0.10
LLAMA_SETTINGS = (
    TrainingSettings(rank=16, targets=("q", "v"), seq=256, batch=2),
    TrainingSettings(rank=16, targets=("q", "k", "v", "o"), seq=512, batch=1),
    TrainingSettings(rank=64, targets=("q", "k", "v", "o", "gate", "up", "down"), seq=256, batch=2),
    TrainingSettings(rank=16, targets=("q", "v"), seq=1024, batch=2, optimizer="sgd"),
    TrainingSettings(
        rank=16,
        targets=("q", "k", "v", "o", "gate", "up", "down"),
        seq=1024,
        batch=1,
        grad_checkpointing=True,
    ),
    TrainingSettings(rank=8, targets=("q", "v"), seq=128, batch=4, grad_checkpointing=True),
)
# Held out: run after the two heap constants (``cpu_allocator_slack``) were fitted on the rows above
HELD_OUT = (
    ("llama3-shaped", TrainingSettings(rank=16, targets=("gate", "up", "down"), seq=768,
                                       grad_checkpointing=True)),
    ("qwen2-shaped", TrainingSettings(rank=8, targets=("q", "v"), seq=256, batch=4,
                                      optimizer="sgd")),
)  # fmt: skip
# QLoRA on the CPU: bitsandbytes (0.50 and later) has a CPU backend; given --bitsandbytes DIR
QLORA_SETTINGS = (
    ("llama3-shaped", TrainingSettings(method="qlora", rank=16, targets=("q", "v"), seq=256,
                                       batch=2, grad_checkpointing=True)),
    ("llama3-shaped", TrainingSettings(method="qlora", rank=16, targets=TARGETS, seq=512,
                                       grad_checkpointing=True)),
    ("llama3-shaped", TrainingSettings(method="qlora", rank=16, targets=("q", "v"), seq=512)),
    ("qwen2-shaped", TrainingSettings(method="qlora", rank=16, targets=("q", "k", "v", "o"),
                                      seq=512, grad_checkpointing=True)),
)  # fmt: skip
QWEN_SETTINGS = (
    TrainingSettings(rank=16, targets=("q", "k", "v", "o"), seq=512, batch=1),
    TrainingSettings(
        rank=32,
        targets=("q", "k", "v", "o", "gate", "up", "down"),
        seq=512,
        batch=2,
        grad_checkpointing=True,
    ),
)


@dataclass(frozen=True)
class Row:
    model: str
    settings: TrainingSettings
    predicted: TrainingMemory
    measured: MeasuredStep
    held_out: bool = False

    @property
    def predicted_forward_bytes(self) -> int:
        """Forward ends with 16-bit logits, their fp32 copy and the log-softmax: 10 of the
        12 bytes per logit backward peaks at."""
        return self.predicted_bytes - self.predicted.logits_bytes // 6

    @property
    def predicted_bytes(self) -> int:
        return self.predicted.total_bytes - TORCH_PROCESS_BYTES

    @property
    def ratio(self) -> float:
        return self.measured.measured_bytes / self.predicted_bytes


def run(folder: Path, quick: bool, bitsandbytes: Path | None, only: str | None) -> list[Row]:
    configs = {"llama3-shaped": LLAMA3_SHAPED, "qwen2-shaped": QWEN2_SHAPED}
    specs = {name: read_hf_model(write_model(folder / name, c)) for name, c in configs.items()}
    runs = [("llama3-shaped", settings, False) for settings in LLAMA_SETTINGS]
    runs += [("qwen2-shaped", settings, False) for settings in QWEN_SETTINGS]
    runs += [(name, settings, True) for name, settings in HELD_OUT]
    runs += [(name, settings, False) for name, settings in QLORA_SETTINGS if bitsandbytes]
    runs = [run for run in runs if only is None or run[1].method == only]
    rows = []
    for name, settings, held_out in runs[::4] if quick else runs:
        extra = bitsandbytes if settings.method == "qlora" else None
        measured = measure_step(folder / name, settings, extra_path=extra)
        predicted = estimate_training(specs[name], settings, "CPU")
        rows.append(Row(name, settings, predicted, measured, held_out))
        print_row(rows[-1])
    return rows


def label(settings: TrainingSettings) -> str:
    method = "Q " if settings.method == "qlora" else ""
    targets = ",".join(settings.targets) if len(settings.targets) < 7 else "all"
    checkpoint = " ckpt" if settings.grad_checkpointing else ""
    sizes = f"s{settings.seq}x{settings.batch}{checkpoint}"
    return f"{method}r{settings.rank} {targets} {sizes} {settings.optimizer}"


def mib(n_bytes: int) -> str:
    return f"{n_bytes / MIB:8.1f}"


def print_header() -> None:
    print(
        f"{'model':14} {'setting':32} {'weights':>8} {'act':>8} {'logits':>8} {'frame':>8} "
        f"{'pred MiB':>9} {'meas MiB':>9} {'ratio':>6} {'fwd ratio':>9}  "
        f"{'fwd/bwd/step peak - base MiB':>30}"
    )


def print_row(row: Row) -> None:
    p, m = row.predicted, row.measured
    phases = "/".join(
        mib(peak - m.baseline_bytes).strip()
        for peak in (m.peak_forward_bytes, m.peak_backward_bytes, m.peak_step_bytes)
    )
    framework = p.framework_bytes - TORCH_PROCESS_BYTES
    forward = (m.peak_forward_bytes - m.baseline_bytes) / row.predicted_forward_bytes
    name = row.model + ("*" if row.held_out else "")
    print(
        f"{name:14} {label(row.settings):32} {mib(p.base_weights_bytes)} "
        f"{mib(p.activation_bytes)} {mib(p.logits_bytes)} {mib(framework)} "
        f"{mib(row.predicted_bytes):>9} {mib(m.measured_bytes):>9} {row.ratio:6.3f} "
        f"{forward:9.3f}  {phases:>30}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the models here and keep them")
    parser.add_argument("--quick", action="store_true", help="every fourth setting")
    parser.add_argument("--only", choices=("lora", "qlora"), help="only the LoRA or QLoRA rows")
    parser.add_argument(
        "--bitsandbytes", type=Path,
        help="a folder with bitsandbytes (pip install --target DIR bitsandbytes): QLoRA rows",
    )  # fmt: skip
    args = parser.parse_args()
    missing = torch_available()
    if missing:
        raise SystemExit(f"{missing}; pip install torch==2.13.0 peft (the CPU wheel)")
    print_header()
    with tempfile.TemporaryDirectory() as scratch:
        rows = run(args.keep or Path(scratch), args.quick, args.bitsandbytes, args.only)
    worst = max(abs(row.ratio - 1) for row in rows)
    print(f"\nworst |measured/predicted - 1| = {worst:.3f} (goal {GOAL:.2f}); * held out")
    first = rows[0].measured
    print(f"versions: {first.versions}; step time ~{first.step_s:.1f} s (noisy: shared machine)")


if __name__ == "__main__":
    main()
