"""The catalog's derived figures against what each model's sources publish.

``catalog.toml`` carries two independent things per model: the architecture from
config.json, and the totals the model card and Ollama library page state. The
derivation from the first must land on the second; a wrong layer count, expert
count or bits-per-weight moves it well outside these tolerances.
"""

from __future__ import annotations

import pytest

from yoyu.models.catalog import (
    CatalogEntry,
    catalog_entries,
    catalog_model,
    catalog_spec,
    find_catalog_entry,
)

ENTRIES = {entry.name: entry for entry in catalog_entries()}
REQUIRED = [
    "deepseek-r1:8b",
    "deepseek-r1:32b",
    "deepseek-r1:70b",
    "gpt-oss:20b",
    "gpt-oss:120b",
    "llama3.1:8b",
    "llama3.1:70b",
    "qwen2.5:32b",
    "qwen2.5-coder:7b",
    "qwen3:8b",
    "qwen3:32b",
    "gemma2:27b",
    "gemma3:27b",
    "kimi-k2",
    "deepseek-v3",
]


def test_required_models_are_present() -> None:
    assert set(REQUIRED) <= set(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES.values(), ids=list(ENTRIES))
def test_derived_parameters_match_the_model_card(entry: CatalogEntry) -> None:
    spec = catalog_spec(entry)
    assert spec.params_total == pytest.approx(entry.published_params_total, rel=0.03)
    published_active = entry.published_params_active or entry.published_params_total
    derived_active = spec.params_active
    if entry.published_active_excludes_token_embd:
        derived_active -= spec.vocab_size * spec.n_embd
    assert derived_active == pytest.approx(published_active, rel=0.03)


@pytest.mark.parametrize(
    "entry",
    [entry for entry in ENTRIES.values() if entry.ollama_size_bytes],
    ids=[name for name, entry in ENTRIES.items() if entry.ollama_size_bytes],
)
def test_derived_bytes_match_the_ollama_download(entry: CatalogEntry) -> None:
    spec = catalog_spec(entry)
    assert spec.file_bytes == spec.tensor_bytes
    assert spec.tensor_bytes == pytest.approx(entry.ollama_size_bytes, rel=0.05)


@pytest.mark.parametrize("entry", ENTRIES.values(), ids=list(ENTRIES))
def test_every_entry_cites_its_config(entry: CatalogEntry) -> None:
    assert any(source.endswith("config.json") for source in entry.sources)


def test_byte_figures_add_up_per_layer() -> None:
    spec = catalog_spec(ENTRIES["llama3.1:8b"])
    assert len(spec.layer_bytes) == 32
    assert len(set(spec.layer_bytes)) == 1
    assert sum(spec.layer_bytes) + spec.nonrepeating_bytes == spec.tensor_bytes
    assert set(spec.type_bytes) == {"Q4_K", "Q6_K", "F32"}
    assert spec.format == "catalog"
    assert spec.quantization == "Q4_K_M"


def test_deepseek_v3_dense_layers_are_smaller_than_moe_layers() -> None:
    spec = catalog_spec(ENTRIES["deepseek-v3"])
    dense, moe = spec.layer_bytes[:3], spec.layer_bytes[3:]
    assert len(set(dense)) == 1 and len(set(moe)) == 1
    assert moe[0] > 10 * dense[0]
    assert spec.mla is not None
    assert (spec.mla.kv_lora_rank, spec.mla.rope_dim) == (512, 64)
    assert (spec.n_experts, spec.n_experts_used, spec.n_experts_shared) == (256, 8, 1)


def test_sliding_window_models() -> None:
    gemma3 = catalog_spec(ENTRIES["gemma3:27b"])
    assert gemma3.sliding_window == 1024
    assert len(gemma3.swa_layers) == 52
    gpt_oss = catalog_spec(ENTRIES["gpt-oss:20b"])
    assert gpt_oss.sliding_window == 128
    assert gpt_oss.swa_layers == tuple(range(0, 24, 2))
    assert gpt_oss.head_dim_k == 64
    assert set(gpt_oss.type_bytes) == {"MXFP4", "BF16", "F32"}


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("llama3.1:8b", "llama3.1:8b"),
        ("llama3.1", "llama3.1:8b"),
        ("LLAMA3.1:LATEST", "llama3.1:8b"),
        ("registry.ollama.ai/library/qwen3:32b", "qwen3:32b"),
        ("deepseek-r1:latest", "deepseek-r1:8b"),
        ("moonshotai/Kimi-K2-Instruct", "kimi-k2"),
        ("deepseek-v3:671b", "deepseek-v3"),
    ],
)
def test_lookup_by_name_alias_and_latest(ref: str, name: str) -> None:
    entry = find_catalog_entry(ref)
    assert entry is not None
    assert entry.name == name


def test_unknown_names_are_not_guessed() -> None:
    assert find_catalog_entry("llama3.1:9b") is None
    assert catalog_model("qwen3") is not None
    assert catalog_model("qwen4:8b") is None
