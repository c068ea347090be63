"""yoyu's LoRA / QLoRA training plan beside a real PEFT step on an NVIDIA GPU.

The GPU twin of ``training_memory.py``: each setting runs in a fresh child on
CUDA, on a model with random weights and Llama 3.2 1B's real config (16 blocks,
hidden 2048, 128,256-token vocabulary, tied embeddings). Measured is PyTorch's
own count: the bytes allocated after the load (the weights alone) and the peak
allocated per phase (reset per phase), beside the plan's components on the GPU
(its ``device_bytes`` less the CUDA context, which PyTorch does not allocate).
The context (device memory in use once CUDA is up) and the caching allocator's
reserve above its peak are shown beside the plan's 457 MiB framework figure.
QLoRA rows need ``bitsandbytes``; they follow the recipe (NF4, double
quantization, bf16 compute, ``prepare_model_for_kbit_training``).

    PYTHONPATH=src python benchmarks/training_memory_cuda.py [--keep DIR] [--save JSON]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from yoyu.estimate.training import estimate_training
from yoyu.estimate.training_settings import TARGETS, TrainingSettings
from yoyu.models.hf_model import read_hf_model
from yoyu.testing.training_run import LLAMA32_1B_SHAPED, MeasuredStep, measure_step, write_model
from yoyu.units import MIB

ALL = TARGETS
SETTINGS = (
    TrainingSettings(rank=16, targets=("q", "v"), seq=1024, batch=4),
    TrainingSettings(rank=16, targets=ALL, seq=2048, batch=2, grad_checkpointing=True),
    TrainingSettings(rank=64, targets=ALL, seq=512, batch=4, optimizer="sgd"),
    TrainingSettings(rank=8, targets=("q", "v"), seq=4096, grad_checkpointing=True),
    TrainingSettings(method="qlora", rank=16, targets=ALL, seq=2048, batch=2,
                     grad_checkpointing=True),
    TrainingSettings(method="qlora", rank=64, targets=("q", "k", "v", "o"), seq=1024, batch=4),
)  # fmt: skip


def label(settings: TrainingSettings) -> str:
    targets = ",".join(settings.targets) if len(settings.targets) < 7 else "all"
    checkpoint = " ckpt" if settings.grad_checkpointing else ""
    return (
        f"{settings.method} r{settings.rank} {targets} s{settings.seq}x{settings.batch}"
        f"{checkpoint} {settings.optimizer}"
    )


def mib(n_bytes: int) -> str:
    return f"{n_bytes / MIB:9.1f}"


def row(settings: TrainingSettings, measured: MeasuredStep, spec_folder: Path) -> dict[str, Any]:
    """The plan's GPU components beside PyTorch's count, as one JSON-ready row."""
    predicted = estimate_training(read_hf_model(spec_folder), settings, "CUDA0")
    on_gpu = predicted.device_bytes - predicted.framework_bytes
    return {
        "setting": label(settings),
        "weights_predicted": predicted.base_weights_bytes,
        "weights_measured": measured.loaded_bytes,
        "predicted": on_gpu,
        "measured": measured.peak_bytes,
        "ratio": measured.peak_bytes / on_gpu,
        "phases": [measured.peak_forward_bytes, measured.peak_backward_bytes,
                   measured.peak_step_bytes],
        "reserved": measured.reserved_bytes,
        "context": measured.context_bytes,
        "activations": predicted.activation_bytes,
        "logits": predicted.logits_bytes,
        "step_s": measured.step_s,
        "versions": measured.versions,
    }  # fmt: skip


def print_row(found: dict[str, Any]) -> None:
    phases = "/".join(mib(value).strip() for value in found["phases"])
    weights = f"{mib(found['weights_predicted'])} {mib(found['weights_measured'])}"
    print(
        f"{found['setting']:40} {weights} {mib(found['predicted'])} {mib(found['measured'])} "
        f"{found['ratio']:6.3f} {mib(found['reserved'])} {mib(found['context'])}  {phases}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the model here and keep it")
    parser.add_argument("--save", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    print(
        f"{'setting':40} {'weights':>9} {'w meas':>9} {'pred MiB':>9} {'meas MiB':>9} "
        f"{'ratio':>6} {'reserved':>9} {'context':>9}  fwd/bwd/step peak allocated MiB"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_model((args.keep or Path(scratch)) / "llama3.2-1b-shaped", LLAMA32_1B_SHAPED)
        for settings in SETTINGS:
            try:
                measured = measure_step(folder, settings, device="cuda")
            except RuntimeError as error:
                print(f"{label(settings):40} failed: {str(error)[-300:]}", flush=True)
                continue
            rows.append(row(settings, measured, folder))
            print_row(rows[-1])
            if args.save:
                args.save.write_text(json.dumps(rows, indent=1))
    if rows:
        worst = max(abs(found["ratio"] - 1) for found in rows)
        print(f"\nworst |measured/predicted - 1| = {worst:.3f}; versions {rows[0]['versions']}")


if __name__ == "__main__":
    main()
