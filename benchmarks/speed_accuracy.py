"""yoyu's predicted decode (and prefill) speed against public measurements.

Every fact of ``src/yoyu/estimate/speed_facts.toml`` (llmfit community runs,
llama.cpp's Apple Silicon and CUDA scoreboards: hardware, model, quant, measured
tokens/s, source) is predicted on its machine preset with ``predict_speed``, and
the ratio predicted/measured printed. The goal is every ratio within 0.75-1.25.

    python benchmarks/speed_accuracy.py [--markdown] [--json] [--fit]

``--fit`` refits the GPU constants of ``yoyu.estimate.speed`` on the facts
marked "fit" and prints them beside the ones in use (how they were obtained).

Two peers in the same run: the rule of thumb most fit tools use, peak memory
bandwidth over the model's file size; and yoyu's GPU figures before they were
fitted to these facts (decode at 70 % of peak bandwidth on every GPU, no
per-layer cost, no sampling time). It is pure arithmetic: the whole run takes about a second and
needs no GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
from collections.abc import Iterable, Mapping

from yoyu.estimate import speed
from yoyu.estimate.speed import GpuBackendSpeed
from yoyu.estimate.speed_facts import (
    BACKENDS_BY_BUILD,
    GOAL,
    FactCheck,
    SpeedFact,
    check_fact,
    check_facts,
    fact_spec,
    in_fact_terms,
    summarize,
)
from yoyu.machine.presets import load_machine
from yoyu.models.spec import is_expert_tensor

_UNFITTED = GpuBackendSpeed("GPU, before the fit", 0.7, 0.0, 1.0)
UNFITTED_BACKENDS = {"nvidia": _UNFITTED, "apple": _UNFITTED, "amd": _UNFITTED}


def rule_of_thumb_tps(check: FactCheck) -> float:
    """Peak bandwidth / model size: the peer estimate."""
    machine = load_machine(check.fact.hardware)
    bandwidth = machine.gpus[0].bandwidth_bytes_per_s or 0
    spec = fact_spec(check.fact)
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


# -- --fit: how the constants were obtained -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class DecodeTerms:
    """One fact's decode time split into what the constants scale: seconds per token at
    100 % of peak bandwidth, the layers that pay the fixed cost, the prompt's prefill."""

    fact: SpeedFact
    group: str
    read_s: float
    layers: int
    moe_layers: int
    sampled_vocab: int  # the vocabulary when the engine samples, else 0
    prompt_s: float

    def predicted(self, efficiency: float, layer_s: float, moe: float, sample_s: float) -> float:
        fixed = (self.layers + (moe - 1) * self.moe_layers) * layer_s
        seconds = self.read_s / efficiency + fixed + self.sampled_vocab * sample_s
        return in_fact_terms(self.fact, seconds, self.prompt_s)

    def error(self, efficiency: float, layer_s: float, moe: float, sample_s: float) -> float:
        return math.log(self.predicted(efficiency, layer_s, moe, sample_s) / self.fact.decode_tps)


def _group(fact: SpeedFact) -> str:
    machine = load_machine(fact.hardware)
    vendor = "apple" if machine.apple else machine.gpus[0].vendor
    return f"{vendor}-2023" if fact.build == "2023" else vendor


def decode_terms(fact: SpeedFact) -> DecodeTerms:
    current = BACKENDS_BY_BUILD[fact.build]
    ideal = {v: dataclasses.replace(b, bandwidth_efficiency=1.0, layer_overhead_s=0.0)
             for v, b in current.items()}  # fmt: skip
    check = check_fact(fact, backends=ideal)
    spec = fact_spec(fact)
    moe = {t.layer for t in spec.tensors if is_expert_tensor(t.name)}
    sampled = spec.vocab_size if fact.engine != "llama-bench" else 0
    read_s = 1.0 / check.decode_tps - sampled * speed.SAMPLING_S_PER_VOCAB_ENTRY
    return DecodeTerms(fact, _group(fact), read_s, spec.n_layers, len(moe), sampled,
                       check.prompt_s)  # fmt: skip


Candidate = tuple[float, float, float, float]  # efficiency, per-layer s, MoE factor, sampling


def _best(terms: list[DecodeTerms], candidates: Iterable[Candidate]) -> tuple[float, Candidate]:
    """The candidate with the least sum of squared log ratios over ``terms``, and that sum."""
    scored = ((sum(t.error(*c) ** 2 for t in terms), c) for c in candidates)
    return min(scored, key=lambda pair: pair[0])


def _grid(efficiencies: Iterable[float], moe: float, sample_s: float) -> list[Candidate]:
    return [(e, us * 1e-6, moe, sample_s) for e in efficiencies for us in range(0, 301, 2)]


EFFICIENCIES = [x / 200 for x in range(100, 201)]  # 0.500, 0.505, ... 1.000


def _dense_fit_facts(terms: list[DecodeTerms], group: str) -> list[DecodeTerms]:
    return [t for t in terms if t.group == group and t.fact.split == "fit" and not t.moe_layers]


def _fit_groups(terms: list[DecodeTerms], sample_s: float) -> tuple[float, dict[str, Candidate]]:
    moe, loss, fitted = speed.MOE_LAYER_OVERHEAD_FACTOR, 0.0, {}
    for group in ("nvidia", "apple", "amd"):
        candidates = _grid(EFFICIENCIES, moe, sample_s)
        group_loss, fitted[group] = _best(_dense_fit_facts(terms, group), candidates)
        loss += group_loss
    return loss, fitted


def fit_constants(terms: list[DecodeTerms]) -> dict[str, Candidate]:
    """Per backend group on its dense "fit" facts, jointly with the sampling cost (which
    only llama-bench's rows, that do not sample, tell apart from the per-layer cost)."""
    fits = [_fit_groups(terms, tenths * 1e-10) for tenths in range(0, 31)]
    _, fitted = min(fits, key=lambda pair: pair[0])
    apple = fitted["apple"]
    chosen = [t for t in terms if t.group == "apple-2023" and t.fact.split == "fit"]
    fitted["apple-2023"] = _best(chosen, _grid([apple[0]], apple[2], apple[3]))[1]
    return fitted


def fit_moe_factor(terms: list[DecodeTerms], fitted: Mapping[str, Candidate]) -> float:
    chosen = [t for t in terms if t.fact.split == "fit" and t.moe_layers]

    def loss(moe: float) -> float:
        return sum(t.error(*fitted[t.group][:2], moe, fitted[t.group][3]) ** 2 for t in chosen)

    return min((f / 20 for f in range(20, 61)), key=loss)


def fit_prefill(checks: list[FactCheck]) -> dict[str, float]:
    """Prefill efficiency per backend: the one in use over the fit facts' mean ratio."""
    out: dict[str, float] = {}
    for group in ("nvidia", "apple-2023"):
        fitting = [c for c in checks if c.fact.split == "fit" and _group(c.fact) == group]
        ratios = [c.prefill_ratio for c in fitting if c.prefill_ratio]
        out[group] = _in_use(group).prefill_efficiency / statistics.geometric_mean(ratios)
    return out


def _in_use(group: str) -> GpuBackendSpeed:
    build = "2023" if group.endswith("2023") else "2026"
    return BACKENDS_BY_BUILD[build][group.split("-")[0]]


def print_fit(checks: list[FactCheck]) -> None:
    terms = [decode_terms(check.fact) for check in checks]
    fitted = fit_constants(terms)
    print('Decode constants fitted on the "fit" facts (least squares of log ratio):')
    for group, (efficiency, layer_s, _, _) in fitted.items():
        used = _in_use(group)
        print(f"  {group:11s} bandwidth {efficiency:.3f} (in use "
              f"{used.bandwidth_efficiency:.3f}), per layer {layer_s * 1e6:.0f} us "
              f"(in use {used.layer_overhead_s * 1e6:.0f} us)")  # fmt: skip
    sample_s = fitted["nvidia"][3]
    print(f"  sampling {sample_s * 1e9:.1f} ns per vocabulary entry "
          f"(in use {speed.SAMPLING_S_PER_VOCAB_ENTRY * 1e9:.1f})")  # fmt: skip
    moe = fit_moe_factor(terms, fitted)
    print(f"  MoE block factor {moe:.2f} (in use {speed.MOE_LAYER_OVERHEAD_FACTOR:.2f})")
    for group, efficiency in fit_prefill(checks).items():
        print(f"  prefill {group:11s} {efficiency:.2f} of FP32 peak "
              f"(in use {_in_use(group).prefill_efficiency:.2f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="the README's table")
    parser.add_argument("--json", action="store_true", help="one object per fact")
    parser.add_argument("--fit", action="store_true", help="refit the constants on the fit facts")
    args = parser.parse_args()
    checks = check_facts()
    if args.fit:
        print_fit(checks)
        return
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
        print_markdown(checks, peers, check_facts(backends=UNFITTED_BACKENDS, sampling=False))
    else:
        before = check_facts(backends=UNFITTED_BACKENDS, sampling=False)
        print_table(checks, peers, before)
        print_summary(checks, peers, before)


if __name__ == "__main__":
    main()
