"""The speed model against public measurements (``yoyu/estimate/speed_facts.toml``).

The facts are published tokens/s of real GPUs and Apple chips (llmfit community
runs, llama.cpp's Apple Silicon and CUDA scoreboards); these tests keep the
file honest (every fact sourced, its hardware a preset, its model an
architecture) and keep the speed model within the goal on all of them, so a
change to ``yoyu.estimate.speed`` that breaks the agreement fails here.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from types import ModuleType

import pytest

from yoyu.errors import ConfigError, MachineError
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.speed import (
    GPU_BACKENDS,
    LLAMA_CPP_2023_BACKENDS,
    MOE_LAYER_OVERHEAD_FACTOR,
    SAMPLING_S_PER_VOCAB_ENTRY,
    decode_work,
    predict_speed,
)
from yoyu.estimate.speed_facts import (
    FACTS_PATH,
    GOAL,
    check_facts,
    fact_entry,
    fact_spec,
    load_speed_facts,
    summarize,
)
from yoyu.estimate.types import ALL_LAYERS, RunSettings
from yoyu.machine import list_presets, load_machine
from yoyu.models.catalog import catalog_model
from yoyu.models.spec import TensorInfo
from yoyu.testing.benchmark_modules import load_benchmark
from yoyu.toml import load_toml

FACTS = load_speed_facts()
GPU_SETTINGS = RunSettings(n_ctx=4096, n_gpu_layers=ALL_LAYERS, engine="llama-server")


# --- the file ---------------------------------------------------------------------------


def test_there_are_enough_facts_on_enough_hardware() -> None:
    assert len(FACTS.facts) >= 30
    assert len({fact.hardware for fact in FACTS.facts}) >= 10
    assert len({fact.id for fact in FACTS.facts}) == len(FACTS.facts), "ids must be unique"
    assert {fact.split for fact in FACTS.facts} == {"fit", "check"}
    assert sum(fact.split == "check" for fact in FACTS.facts) >= 30


def test_every_fact_names_its_source_and_quotes_it() -> None:
    for fact in FACTS.facts:
        assert fact.source.startswith("https://github.com/"), fact.id
        assert fact.quote, fact.id
        number = f"{fact.decode_tps:.2f}".rstrip("0").rstrip(".")
        assert number in fact.quote, f"{fact.id}: the quote does not state {number}"


def test_every_fact_runs_on_a_built_in_preset_with_a_gpu_bandwidth() -> None:
    built_in = {ref.name for ref in list_presets() if ref.origin == "built-in"}
    for fact in FACTS.facts:
        assert fact.hardware in built_in, fact.id
        machine = load_machine(fact.hardware)
        assert machine.gpus and machine.gpus[0].bandwidth_bytes_per_s, fact.id


def test_every_fact_resolves_to_a_catalog_model_and_a_quant() -> None:
    for fact in FACTS.facts:
        arch = fact_entry(fact).architecture
        assert arch.n_layers > 0 and arch.n_embd > 0, fact.id
        assert fact_spec(fact).file_bytes > 0, fact.id  # refuses an unknown quant


def test_the_llama_2_7b_of_the_scoreboards_has_the_size_llama_bench_printed() -> None:
    """llama-bench printed "llama 7B Q4_0 | 3.56 GiB | 6.74 B" (and F16 12.55 GiB)."""
    fact = next(f for f in FACTS.facts if f.model == "llama2:7b" and f.quant == "Q4_0")
    spec = fact_spec(fact)
    assert spec.file_bytes / 1024**3 == pytest.approx(3.56, abs=0.01)
    assert spec.params_total / 1e9 == pytest.approx(6.74, abs=0.01)


# --- the goal ---------------------------------------------------------------------------


def test_every_decode_prediction_is_within_the_goal() -> None:
    checks = check_facts(FACTS)
    outside = [f"{c.fact.id} {c.ratio:.2f}" for c in checks if not c.within_goal]
    assert not outside, f"predicted/measured outside {GOAL}: {outside}"
    summary = summarize(checks)
    assert 0.9 <= summary.median_ratio <= 1.1
    assert summary.share_within_goal == 1.0


def test_the_facts_not_used_to_fit_are_as_close_as_those_used() -> None:
    checks = check_facts(FACTS)
    held_out = [c.ratio for c in checks if c.fact.split == "check"]
    assert 0.9 <= statistics.median(held_out) <= 1.1


def test_every_prefill_prediction_is_within_the_goal() -> None:
    checks = [c for c in check_facts(FACTS) if c.prefill_ratio is not None]
    assert len(checks) >= 10
    outside = [f"{c.fact.id} {c.prefill_ratio:.2f}" for c in checks if c.prefill_ratio]
    assert all(GOAL[0] <= (c.prefill_ratio or 0) <= GOAL[1] for c in checks), outside


# --- the speed model's parts --------------------------------------------------------------


def test_a_lookup_only_embedding_is_not_read_per_token() -> None:
    spec = catalog_model("llama3.1:8b")
    assert spec is not None
    machine = load_machine("linux-rtx5070-12g")
    work = decode_work(spec, estimate_memory(spec, machine, GPU_SETTINGS), machine)
    embedding = sum(t.n_bytes for t in spec.tensors if t.name.startswith("token_embd."))
    assert sum(w.bytes_read for w in work.values()) == pytest.approx(
        sum(t.n_bytes for t in spec.tensors) - embedding
    )


def test_a_bundled_vision_tower_is_not_read_per_token() -> None:
    spec = catalog_model("llama3.1:8b")
    assert spec is not None
    vision = TensorInfo("v.vision_tower.weight", "F16", (10**9,), 10**9, 2 * 10**9, None)
    with_vision = dataclasses.replace(spec, tensors=(*spec.tensors, vision))
    machine = load_machine("linux-rtx5070-12g")
    estimate = estimate_memory(with_vision, machine, GPU_SETTINGS)
    reads = [sum(w.bytes_read for w in decode_work(s, estimate, machine).values())
             for s in (spec, with_vision)]  # fmt: skip
    assert reads[0] == reads[1]


def test_the_2023_metal_build_is_slower_per_layer_than_today() -> None:
    fact = next(f for f in FACTS.facts if f.id == "llamacpp4167-m2max-llama2-7b-q4_0")
    spec, machine = fact_spec(fact), load_machine(fact.hardware)
    estimate = estimate_memory(spec, machine, GPU_SETTINGS)
    now = predict_speed(spec, estimate, machine, context_tokens=64, backends=GPU_BACKENDS)
    then = predict_speed(
        spec, estimate, machine, context_tokens=64, backends=LLAMA_CPP_2023_BACKENDS
    )
    assert then.decode_tps < now.decode_tps
    assert then.prefill_tps == pytest.approx(now.prefill_tps)


def test_an_apple_gpu_s_fp32_peak_follows_its_cores() -> None:
    """Apple: the 76-core M2 Ultra GPU "delivers up to 27.2 teraflops"."""
    gpu = load_machine("mac-studio-m2-ultra-192g").gpus[0]
    assert (gpu.fp32_flops or 0) / 1e12 == pytest.approx(27.2, abs=0.05)


def test_prefill_follows_the_gpu_s_compute() -> None:
    spec = catalog_model("llama3.1:8b")
    assert spec is not None
    speeds = {}
    for name in ("linux-rtx5070-12g", "linux-rtx5080-16g"):
        machine = load_machine(name)
        estimate = estimate_memory(spec, machine, GPU_SETTINGS)
        speeds[name] = predict_speed(spec, estimate, machine, context_tokens=512).prefill_tps
    flops = {name: load_machine(name).gpus[0].fp32_flops or 0 for name in speeds}
    assert speeds["linux-rtx5080-16g"] / speeds["linux-rtx5070-12g"] == pytest.approx(
        flops["linux-rtx5080-16g"] / flops["linux-rtx5070-12g"], rel=0.02
    )


# --- bad input ----------------------------------------------------------------------------

A_FACT = {
    "id": "x", "hardware": "linux-rtx5070-12g", "model": "llama3.1:8b", "quant": "Q4_0",
    "engine": "ollama", "build": "2026", "measure": "decode", "decode_tps": 1.0,
    "source": "https://github.com/o/r", "quote": "1.0",
}  # fmt: skip


def _facts_file(tmp_path: Path, **changes: object) -> Path:
    """A one-fact file: ``A_FACT`` with ``changes`` (None drops the key)."""
    fact = {key: value for key, value in {**A_FACT, **changes}.items() if value is not None}
    lines = [f"{key} = {value!r}".replace("'", '"') for key, value in fact.items()]
    path = tmp_path / "facts.toml"
    path.write_text("[[facts]]\n" + "\n".join(lines) + "\n")
    return path


def test_a_well_formed_fact_file_loads(tmp_path: Path) -> None:
    (fact,) = load_speed_facts(_facts_file(tmp_path)).facts
    assert (fact.model, fact.split, fact.prompt_tokens) == ("llama3.1:8b", "check", 40)


@pytest.mark.parametrize("key", ["model", "source", "quote"])
def test_a_fact_without_a_required_key_names_the_key(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=f"fact x: {key} is required"):
        load_speed_facts(_facts_file(tmp_path, **{key: None}))


def test_a_fact_with_an_unknown_measure_says_which_are_known(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="measure must be one of decode, end-to-end"):
        load_speed_facts(_facts_file(tmp_path, measure="wall"))


def test_a_fact_whose_model_is_not_in_the_catalog_says_where_to_add_it(tmp_path: Path) -> None:
    facts = load_speed_facts(_facts_file(tmp_path, model="no-such:1b"))
    with pytest.raises(ConfigError, match="'no-such:1b' is not in the catalog; add it to"):
        check_facts(facts)


def test_the_facts_file_describes_no_models_of_its_own(tmp_path: Path) -> None:
    """The catalog is the one place an architecture is written (issue 22): a [models]
    section beside the facts is refused rather than silently ignored."""
    assert set(load_toml(FACTS_PATH)) == {"facts"}
    path = _facts_file(tmp_path)
    path.write_text(path.read_text() + '[models."x:1b".config]\nhidden_size = 8\n')
    with pytest.raises(ConfigError, match=r"\[models\] is not read here; describe the model"):
        load_speed_facts(path)


def test_a_preset_gpu_with_a_bad_fp32_figure_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "rig.toml"
    path.write_text(
        '[cpu]\nmodel = "x"\ncores = 4\n[memory]\ntotal = "16 GiB"\n'
        '[[gpus]]\nname = "g"\ntotal = "8 GiB"\nfp32_tflops = "fast"\n'
    )
    with pytest.raises(MachineError, match="fp32_tflops: expected a positive number"):
        load_machine(str(path))


# --- the constants are the fit's ------------------------------------------------------------


def _speed_accuracy_benchmark() -> ModuleType:
    return load_benchmark("speed_accuracy")


def test_the_gpu_constants_in_use_are_what_the_fit_facts_give() -> None:
    """`benchmarks/speed_accuracy.py --fit` refits them on the "fit" facts: a constant
    changed by hand, or a fact changed without refitting, fails here."""
    benchmark = _speed_accuracy_benchmark()
    terms = [benchmark.decode_terms(fact) for fact in FACTS.facts]
    fitted = benchmark.fit_constants(terms)
    for group, (efficiency, layer_s, _, sample_s) in fitted.items():  # within a grid step
        used = benchmark._in_use(group)
        assert efficiency == pytest.approx(used.bandwidth_efficiency, abs=0.0051), group
        assert layer_s == pytest.approx(used.layer_overhead_s, abs=2.1e-6), group
        assert sample_s == pytest.approx(SAMPLING_S_PER_VOCAB_ENTRY, abs=0.101e-9)
    moe = benchmark.fit_moe_factor(terms, fitted)
    assert moe == pytest.approx(MOE_LAYER_OVERHEAD_FACTOR, abs=0.051)
