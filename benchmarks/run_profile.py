"""Predicted vs measured for whole runs: the plan's figures beside a real managed run.

For the tiny test model and one mid-size generated llama model (~1 GB of F16
weights; ~250 MB with ``--quick``), runs ``yoyu.runner.ModelRun`` with the
managed llama.cpp backend (one prompt, 32 tokens) and prints, per component,
the plan's prediction, the measured figure and their ratio: weights, KV cache
and compute buffers against llama.cpp's own log lines, the predicted total
against the peak RSS of the engine's process tree, and the predicted decode
speed against the engine's timings (prefill against the time to the first token).

    PYTHONPATH=src python benchmarks/run_profile.py [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from yoyu.backends.protocol import ChatMessage
from yoyu.estimate.types import RunSettings
from yoyu.runner import ModelRun, RunConfig, SettlePolicy
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import MIB

SETTINGS = RunSettings(n_ctx=2048, n_batch=512, n_ubatch=512, swa_full=True)
PROMPT = [ChatMessage("user", "Write a few words about the sea.")]
MID_SHAPE = {"n_embd": 2048, "n_head": 16, "n_head_kv": 4, "n_ff": 5632, "vocab_size": 32000}


def models(folder: Path, quick: bool) -> list[tuple[str, Path]]:
    tiny = write_tiny_model(folder / "tiny.gguf")
    layers = 2 if quick else 9
    started = time.perf_counter()
    mid = write_tiny_model(folder / "mid.gguf", n_layers=layers, **MID_SHAPE)
    print(f"wrote mid-size model: {mid.file_bytes / MIB:.0f} MiB in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    return [("tiny", tiny.path), (f"mid {mid.file_bytes / MIB:.0f} MiB", mid.path)]


def measure(path: Path) -> dict[str, Any]:
    config = RunConfig(str(path), SETTINGS, settle=SettlePolicy(window_s=1.0, cap_s=20.0))
    with ModelRun(config, mode="benchmark", seed=1) as run:
        run.ask(PROMPT, max_tokens=32, temperature=0.0)
    return run.report()


def rows(report: dict[str, Any]) -> list[tuple[str, float | None, float | None, str]]:
    predicted, buffers = report["predicted"], report["engine_buffers"] or {}
    peak = report["phases"]["peak"]
    return [
        ("weights MiB", predicted["weights_bytes"] / MIB, _mib(buffers.get("model")), "engine log"),
        ("KV cache MiB", predicted["kv_bytes"] / MIB, _mib(buffers.get("kv")), "engine log"),
        ("compute MiB", predicted["compute_bytes"] / MIB, _mib(buffers.get("compute")), "engine"),
        ("total MiB", predicted["total_bytes"] / MIB, peak["process_rss_bytes"] / MIB, "peak RSS"),
        ("  anon MiB", None, _mib(peak["process_anon_bytes"]), "peak RssAnon"),
        ("decode tok/s", predicted["decode_tps"], report["speed"]["decode_tps"], "engine timings"),
        ("prefill tok/s", predicted["prefill_tps"], report["speed"]["prefill_tps"], "first token"),
    ]  # fmt: skip


def _mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


def print_table(label: str, report: dict[str, Any]) -> None:
    print(f"\n{label} (ctx {SETTINGS.n_ctx}, load {report['load_s']:.2f} s, "
          f"settled {report['stabilize_s']:.2f} s after the answer)")  # fmt: skip
    print(f"  {'':14} {'predicted':>12} {'measured':>12} {'meas/pred':>10}  measured by")
    for name, predicted, measured, source in rows(report):
        ratio = f"{measured / predicted:10.2f}" if predicted and measured is not None else " " * 10
        print(f"  {name:14} {_cell(predicted)} {_cell(measured)} {ratio}  {source}")


def _cell(value: float | None) -> str:
    return f"{'-':>12}" if value is None else f"{value:12.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~250 MB mid-size model")
    parser.add_argument("--keep", type=Path, help="write the models here instead of a temp dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        os.environ.setdefault("YOYU_HOME", str(Path(temporary) / "home"))  # a private run store
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        for label, path in models(folder, args.quick):
            print_table(label, measure(path))


if __name__ == "__main__":
    main()
