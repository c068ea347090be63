"""yoyu's predicted decode (and prefill) speed against public measurements.

Every fact of ``src/yoyu/estimate/speed_facts.toml`` (llmfit community runs,
llama.cpp's Apple Silicon and CUDA scoreboards: hardware, model, quant, measured
tokens/s, source) is predicted on its machine preset with ``predict_speed``, and
the ratio predicted/measured printed. The goal is every ratio within 0.75-1.25.

    python benchmarks/speed_accuracy.py [--markdown] [--json]

Two peers in the same run: the rule of thumb most fit tools use, peak memory
bandwidth over the model's file size; and yoyu's GPU figures before they were
fitted to these facts (decode at 70 % of peak bandwidth on every GPU, no
per-layer cost). It is pure arithmetic: the whole run takes about a second and
needs no GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics

from yoyu.estimate.speed import GpuBackendSpeed
from yoyu.estimate.speed_facts import (
    GOAL,
    FactCheck,
    check_facts,
    fact_spec,
    load_speed_facts,
    summarize,
)
from yoyu.machine.presets import load_machine

_UNFITTED = GpuBackendSpeed("GPU, before the fit", 0.7, 0.0, 1.0)
UNFITTED_BACKENDS = {"nvidia": _UNFITTED, "apple": _UNFITTED, "amd": _UNFITTED}


def rule_of_thumb_tps(check: FactCheck) -> float:
    """Peak bandwidth / model size: the peer estimate."""
    machine = load_machine(check.fact.hardware)
    bandwidth = machine.gpus[0].bandwidth_bytes_per_s or 0
    spec = fact_spec(check.fact, load_speed_facts())
    return bandwidth / spec.file_bytes


def _share_within(ratios: list[float]) -> float:
    return sum(GOAL[0] <= ratio <= GOAL[1] for ratio in ratios) / len(ratios)


def _describe(label: str, ratios: list[float]) -> str:
    worst = max(ratios, key=lambda ratio: abs(math.log(ratio)))
    return (
        f"{label:28s} n={len(ratios):2d}  median {statistics.median(ratios):.2f}  "
        f"worst {worst:.2f}  within {GOAL[0]}-{GOAL[1]}: {100 * _share_within(ratios):.0f} %"
    )


def print_table(checks: list[FactCheck], peers: list[float], before: list[FactCheck]) -> None:
    print(f"{'fact':44s} {'split':5s} {'measured':>8s} {'yoyu':>8s} {'ratio':>5s} "
          f"{'peer':>5s} {'before':>6s} {'prefill':>7s}")  # fmt: skip
    for check, peer, old in zip(checks, peers, before, strict=True):
        prefill = f"{check.prefill_ratio:7.2f}" if check.prefill_ratio else ""
        print(f"{check.fact.id:44s} {check.fact.split:5s} {check.fact.decode_tps:8.2f} "
              f"{check.predicted_tps:8.2f} {check.ratio:5.2f} "
              f"{peer / check.fact.decode_tps:5.2f} {old.ratio:6.2f} {prefill}")  # fmt: skip


def print_summary(checks: list[FactCheck], peers: list[float], before: list[FactCheck]) -> None:
    print("\nDecode, predicted / measured:")
    print(_describe("yoyu, all facts", [check.ratio for check in checks]))
    for split in ("fit", "check"):
        ratios = [check.ratio for check in checks if check.fact.split == split]
        print(_describe(f"yoyu, {split} split", ratios))
    peer_ratios = [peer / check.fact.decode_tps for check, peer in zip(checks, peers, strict=True)]
    print(_describe("peer (bandwidth / size)", peer_ratios))
    print(_describe("yoyu before the fit", [check.ratio for check in before]))
    prefill = [check.prefill_ratio for check in checks if check.prefill_ratio]
    print(_describe("yoyu prefill (pp512)", prefill))
    summary = summarize(checks)
    print(f"farthest from 1: {summary.worst_id} ({summary.worst_ratio:.2f})")


def _origin(fact_id: str) -> str:
    source = fact_id.split("-")[0]
    return source if source == "llmfit" else f"llama.cpp #{source.removeprefix('llamacpp')}"


def print_markdown(checks: list[FactCheck], peers: list[float], before: list[FactCheck]) -> None:
    print("| hardware | model | quant | source | measured tok/s | yoyu | ratio | peer | before "
          "| prefill ratio |")  # fmt: skip
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for check, peer, old in zip(checks, peers, before, strict=True):
        fact = check.fact
        prefill = f"{check.prefill_ratio:.2f}" if check.prefill_ratio else ""
        split = " (fit)" if fact.split == "fit" else ""
        print(f"| {fact.hardware} | {fact.model} | {fact.quant} | {_origin(fact.id)}, "
              f"{fact.engine} {fact.build} | {fact.decode_tps:.2f} | {check.predicted_tps:.2f} | "
              f"**{check.ratio:.2f}**{split} | {peer / fact.decode_tps:.2f} | {old.ratio:.2f} | "
              f"{prefill} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="the README's table")
    parser.add_argument("--json", action="store_true", help="one object per fact")
    args = parser.parse_args()
    checks = check_facts()
    peers = [rule_of_thumb_tps(check) for check in checks]
    if args.json:
        rows = [
            {**dataclasses.asdict(check.fact), "predicted_tps": check.predicted_tps,
             "ratio": check.ratio, "prefill_ratio": check.prefill_ratio,
             "peer_tps": peer, "bound": check.bound}
            for check, peer in zip(checks, peers, strict=True)
        ]  # fmt: skip
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print_markdown(checks, peers, check_facts(backends=UNFITTED_BACKENDS))
    else:
        before = check_facts(backends=UNFITTED_BACKENDS)
        print_table(checks, peers, before)
        print_summary(checks, peers, before)


if __name__ == "__main__":
    main()
