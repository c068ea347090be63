"""Public speed measurements, and yoyu's speed model checked against them.

Decode speed on GPUs and Apple chips cannot be measured on the machine yoyu is
developed on; published measurements can. ``speed_facts.toml`` holds them (the
hardware as a machine preset, the model as a catalog entry, the measured
tokens/s, the source and its words), and
``check_facts`` predicts each one with ``predict_speed`` on its preset with
every layer on the GPU, as the measurements ran. ``benchmarks/speed_accuracy.py``
prints the table; a test keeps every ratio inside ``GOAL``.

A fact measured ``end-to-end`` (llmfit's llama-server runs: output tokens over
the request's wall time) is predicted the same way: the prompt's prefill plus
the decoded tokens. Facts measured on 2023 builds are predicted with that
generation's backend figures (``LLAMA_CPP_2023_BACKENDS``).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError, YoyuError
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.speed import (
    GPU_BACKENDS,
    LLAMA_CPP_2023_BACKENDS,
    GpuBackendSpeed,
    predict_speed,
)
from yoyu.estimate.types import ALL_LAYERS, RunSettings
from yoyu.machine.presets import load_machine
from yoyu.machine.types import Machine
from yoyu.models.catalog import CatalogEntry, catalog_spec, find_catalog_entry
from yoyu.models.spec import ModelSpec
from yoyu.toml import TOMLDecodeError, load_toml

FACTS_PATH = Path(__file__).with_name("speed_facts.toml")
GOAL = (0.75, 1.25)  # predicted / measured
ENGINES = ("llama-bench", "llama-server", "ollama")
MEASURES = ("decode", "end-to-end")
SPLITS = ("fit", "check")
DEFAULT_PROMPT_TOKENS = 40  # llmfit's prompts: 10-25 words plus the chat template
BACKENDS_BY_BUILD: Mapping[str, Mapping[str, GpuBackendSpeed]] = {
    "2023": LLAMA_CPP_2023_BACKENDS,
    "2025": GPU_BACKENDS,
    "2026": GPU_BACKENDS,
}
_REQUIRED = (
    "id", "hardware", "model", "quant", "engine", "build", "measure", "decode_tps",
    "source", "quote",
)  # fmt: skip


@dataclass(frozen=True)
class SpeedFact:
    """One published measurement: what ran where, how it was measured, what it gave."""

    id: str
    hardware: str
    model: str
    quant: str
    engine: str
    build: str
    measure: str
    prompt_tokens: int
    output_tokens: int
    decode_tps: float
    prefill_tps: float | None
    prefill_tokens: int
    split: str
    source: str
    quote: str
    via: str = ""
    note: str = ""


@dataclass(frozen=True)
class FactCheck:
    """yoyu's prediction for one fact, in the fact's own terms."""

    fact: SpeedFact
    predicted_tps: float  # in the fact's terms (end-to-end includes the prompt's prefill)
    predicted_prefill_tps: float | None
    bound: str
    decode_tps: float  # the pure decode rate behind ``predicted_tps``
    prompt_s: float  # the prompt's prefill inside an end-to-end figure, else 0

    @property
    def ratio(self) -> float:
        return self.predicted_tps / self.fact.decode_tps

    @property
    def prefill_ratio(self) -> float | None:
        if self.predicted_prefill_tps is None or not self.fact.prefill_tps:
            return None
        return self.predicted_prefill_tps / self.fact.prefill_tps

    @property
    def within_goal(self) -> bool:
        return GOAL[0] <= self.ratio <= GOAL[1]


@dataclass(frozen=True)
class AccuracySummary:
    count: int
    median_ratio: float
    worst_id: str
    worst_ratio: float
    share_within_goal: float


@dataclass(frozen=True)
class SpeedFacts:
    facts: tuple[SpeedFact, ...]


def load_speed_facts(path: Path = FACTS_PATH) -> SpeedFacts:
    """Every fact the file holds; a bad entry names itself. The models are the catalog's
    (``fact_entry``), so an architecture is written in one place only."""
    return _load(path)


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> SpeedFacts:
    try:
        document = load_toml(path)
    except (OSError, TOMLDecodeError) as error:
        raise ConfigError(f"{path}: the speed facts cannot be read ({error})") from None
    if "models" in document:
        raise ConfigError(
            f"{path}: [models] is not read here; describe the model in the catalog "
            "(src/yoyu/models/catalog_data/) and name it in the fact"
        )
    return SpeedFacts(tuple(_fact(body, path) for body in document.get("facts", [])))


def _fact(body: dict[str, Any], path: Path) -> SpeedFact:
    label = f"{path} fact {body.get('id', '?')}"
    missing = [key for key in _REQUIRED if key not in body]
    if missing:
        raise ConfigError(f"{label}: {missing[0]} is required")
    _require_choice(body, "engine", ENGINES, label)
    _require_choice(body, "measure", MEASURES, label)
    _require_choice(body, "split", SPLITS, label)
    _require_choice(body, "build", tuple(BACKENDS_BY_BUILD), label)
    return SpeedFact(
        id=str(body["id"]),
        hardware=str(body["hardware"]),
        model=str(body["model"]),
        quant=str(body["quant"]),
        engine=str(body["engine"]),
        build=str(body["build"]),
        measure=str(body["measure"]),
        prompt_tokens=int(body.get("prompt_tokens", DEFAULT_PROMPT_TOKENS)),
        output_tokens=int(body.get("output_tokens", 128)),
        decode_tps=float(body["decode_tps"]),
        prefill_tps=float(body["prefill_tps"]) if "prefill_tps" in body else None,
        prefill_tokens=int(body.get("prefill_tokens", 512)),
        split=str(body.get("split", "check")),
        source=str(body["source"]),
        quote=str(body["quote"]),
        via=str(body.get("via", "")),
        note=str(body.get("note", "")),
    )


def _require_choice(body: dict[str, Any], key: str, allowed: tuple[str, ...], label: str) -> None:
    if body.get(key, allowed[0]) not in allowed:
        raise ConfigError(f"{label}: {key} must be one of {', '.join(allowed)}")


def fact_entry(fact: SpeedFact) -> CatalogEntry:
    """The fact's model, as the catalog describes it."""
    entry = find_catalog_entry(fact.model)
    if entry is None:
        raise ConfigError(
            f"speed fact {fact.id}: model {fact.model!r} is not in the catalog; "
            "add it to src/yoyu/models/catalog_data/ or name a catalog model"
        )
    return entry


def fact_spec(fact: SpeedFact) -> ModelSpec:
    """The model as the fact ran it: the catalog's entry at the fact's quant (the catalog
    derives each quant's tensor types with llama.cpp's own rules)."""
    entry = fact_entry(fact)
    try:
        return catalog_spec(entry, fact.quant)
    except YoyuError as error:
        raise ConfigError(f"speed fact {fact.id}: unknown quant {fact.quant!r} ({error})") from None


def check_fact(
    fact: SpeedFact,
    machine: Machine | None = None,
    backends: Mapping[str, GpuBackendSpeed] | None = None,
    sampling: bool | None = None,
) -> FactCheck:
    """Predict one fact: every layer on the GPU, decode from the prompt's depth on, with
    the GPU figures of the fact's llama.cpp generation unless ``backends`` replaces them,
    and the sampler's time where the engine samples unless ``sampling`` says otherwise."""
    machine = machine or load_machine(fact.hardware)
    spec = fact_spec(fact)
    settings = RunSettings(n_ctx=4096, n_gpu_layers=ALL_LAYERS, engine="llama-server")
    estimate = estimate_memory(spec, machine, settings)
    backends = backends or BACKENDS_BY_BUILD[fact.build]
    depth = fact.prompt_tokens + fact.output_tokens // 2
    if sampling is None:
        sampling = fact.engine != "llama-bench"  # it times the forward pass alone
    decode = predict_speed(
        spec, estimate, machine, context_tokens=depth, backends=backends, sampling=sampling
    )
    prompt = predict_speed(
        spec, estimate, machine, context_tokens=fact.prefill_tokens, backends=backends
    )
    prompt_s = fact.prompt_tokens / decode.prefill_tps if fact.measure == "end-to-end" else 0.0
    predicted = in_fact_terms(fact, 1.0 / decode.decode_tps, prompt_s)
    prefill = prompt.prefill_tps if fact.prefill_tps else None
    return FactCheck(fact, predicted, prefill, decode.bound, decode.decode_tps, prompt_s)


def in_fact_terms(fact: SpeedFact, seconds_per_token: float, prompt_s: float) -> float:
    """Tokens/s as the fact measured them: decoded tokens over decode time, plus the
    prompt's prefill for an end-to-end figure."""
    return fact.output_tokens / (prompt_s + fact.output_tokens * seconds_per_token)


def check_facts(
    facts: SpeedFacts | None = None,
    backends: Mapping[str, GpuBackendSpeed] | None = None,
    sampling: bool | None = None,
) -> list[FactCheck]:
    """Every fact of the file, predicted (``check_fact``'s overrides apply to all)."""
    facts = facts or load_speed_facts()
    return [check_fact(fact, backends=backends, sampling=sampling) for fact in facts.facts]


def summarize(checks: list[FactCheck]) -> AccuracySummary:
    """Median ratio, the ratio farthest from 1 (in log terms) and the share inside ``GOAL``."""
    worst = max(checks, key=lambda check: abs(math.log(check.ratio)))
    return AccuracySummary(
        count=len(checks),
        median_ratio=statistics.median(check.ratio for check in checks),
        worst_id=worst.fact.id,
        worst_ratio=worst.ratio,
        share_within_goal=sum(check.within_goal for check in checks) / len(checks),
    )
