"""The catalog's derived figures against what each model's sources publish.

``catalog_data/*.toml`` carries two independent things per model: the architecture
from config.json, and the totals the model card and the download page state. The
derivation from the first (the converted tensor table, typed by llama.cpp's quant
rules) must land on the second; a wrong layer count, expert count, tied embedding
or quant rule moves it well outside these tolerances.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

import yoyu.models.catalog as catalog_module
from yoyu.errors import ConfigError
from yoyu.models.catalog import (
    BASES,
    USES,
    CatalogEntry,
    PublishedFiles,
    PublishedSize,
    catalog_entries,
    catalog_model,
    catalog_spec,
    catalog_suggestions,
    find_catalog_entry,
    load_catalog,
    match_catalog,
    relatives_of,
)
from yoyu.models.catalog_tables import quant_context
from yoyu.models.gguf_layout import gguf_layout_parts
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.models.quant_mix import FILE_TYPES, assign_part_types, assign_types

ENTRIES = {entry.name: entry for entry in catalog_entries()}
PUBLISHED = [
    (entry, page, quant, size)
    for entry in ENTRIES.values()
    for page in entry.published
    for quant, size in page.files.items()
]
SIZE_TOLERANCE = 0.02
# The names a new user types first (issue 22).
FIRST_NAMES = [
    "llama3.2:3b", "qwen3:30b-a3b", "qwen2.5:7b", "gemma3:4b", "phi4", "mistral",
    "deepseek-r1:7b", "deepseek-r1:14b", "gpt-oss:20b",
]  # fmt: skip


def test_the_catalog_covers_the_popular_library() -> None:
    assert len(ENTRIES) >= 200
    families = {entry.family for entry in ENTRIES.values()}
    for family in ("llama3.1", "llama3.2", "llama3.3", "qwen2.5", "qwen2.5-coder", "qwen3",
                   "qwen3-coder", "deepseek-r1", "deepseek-v3", "gemma2", "gemma3", "phi3",
                   "phi4", "phi4-mini", "mistral", "mistral-nemo", "mistral-small", "mixtral",
                   "gpt-oss", "granite3.3", "smollm2", "command-r-plus", "kimi-k2",
                   "codellama", "starcoder2", "nomic-embed-text", "bge-m3",
                   "mxbai-embed-large", "llava", "llama3.2-vision", "qwen2.5vl",
                   "minicpm-v"):  # fmt: skip
        assert family in families, family
    assert sum(len(entry.files) for entry in ENTRIES.values()) >= 250


@pytest.mark.parametrize(
    ("entry", "page", "quant", "published"),
    PUBLISHED,
    ids=[f"{entry.name}-{quant}-{page.host}" for entry, page, quant, _ in PUBLISHED],
)
def test_derived_bytes_match_the_published_size(
    entry: CatalogEntry, page: PublishedFiles, quant: str, published: PublishedSize
) -> None:
    """Within 2 %, or within the page's own rounding where that is coarser ("19GB" is
    18.5 to 19.5 GB); every page's figure, where two pages size the same quant."""
    derived = catalog_spec(entry, quant).file_bytes
    tolerance = max(SIZE_TOLERANCE * published.bytes, published.rounding_bytes)
    assert abs(derived - published.bytes) <= tolerance, (
        f"{entry.name} {quant}: derived {derived / 1e9:.3f} GB, "
        f"{page.host} publishes {published.text}"
    )


@pytest.mark.parametrize("entry", ENTRIES.values(), ids=list(ENTRIES))
def test_derived_parameters_match_the_model_card(entry: CatalogEntry) -> None:
    spec = catalog_spec(entry)
    assert spec.params_total == pytest.approx(entry.published_params_total, rel=0.03)
    if spec.is_moe and entry.published_params_active is None:
        return  # the card states no active count to check
    published_active = entry.published_params_active or entry.published_params_total
    derived_active = spec.params_active
    if entry.published_active_excludes_token_embd:
        derived_active -= spec.vocab_size * spec.n_embd
    assert derived_active == pytest.approx(published_active, rel=0.03)


@pytest.mark.parametrize("entry", ENTRIES.values(), ids=list(ENTRIES))
def test_every_entry_says_where_its_figures_come_from(entry: CatalogEntry) -> None:
    assert entry.sources[0].startswith("https://huggingface.co/")
    assert entry.sources[0].endswith("/config.json")
    for page in entry.published:
        assert page.source.startswith("https://"), page
        assert page.source in entry.sources
        assert page.basis in BASES, page
        assert not page.via or page.via.startswith("https://"), page
    assert entry.basis
    assert set(entry.uses) <= set(USES)


_A_MODEL = """
basis = "recalled"

[models."m:1b"]
hf = "o/m"
params = 1
files = { Q4_K_M = "1.0GB", Q8_0 = "1.8GB" }
[models."m:1b".config]
model_type = "llama"
hidden_size = 2048
intermediate_size = 8192
num_hidden_layers = 16
num_attention_heads = 32
num_key_value_heads = 8
vocab_size = 32000
max_position_embeddings = 4096
"""


def test_a_second_page_adds_its_quants_and_the_first_page_wins_a_shared_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "m.toml").write_text(
        _A_MODEL
        + '[[models."m:1b".published]]\nsource = "https://huggingface.co/b/m-GGUF"\n'
        + 'via = "https://mirror.example/b/m-GGUF"\nbasis = "copied"\n'
        + 'files = { Q8_0 = "1.79GB", F16 = "3.2GB" }\n'
    )
    (entry,) = load_catalog(tmp_path)
    assert list(entry.files) == ["Q4_K_M", "Q8_0", "F16"]
    assert entry.files["Q8_0"].text == "1.8GB"
    assert entry.quants == ("Q4_K_M", "Q8_0", "F16")
    ollama, page = entry.published
    assert (ollama.source, ollama.basis) == ("https://ollama.com/library/m/tags", "recalled")
    assert (page.host, page.basis, page.via) == (
        "huggingface.co", "copied", "https://mirror.example/b/m-GGUF",
    )  # fmt: skip
    assert page.files["Q8_0"].text == "1.79GB"
    assert entry.sources[1:] == (ollama.source, page.source)


def test_a_family_read_through_a_copy_says_so_for_its_ollama_figures_only(
    tmp_path: Path,
) -> None:
    """``files_basis``/``files_via`` at the top of a file describe how the Ollama pages
    were read; an entry whose sizes come from another page keeps its own basis."""
    other = _A_MODEL.replace("m:1b", "m:2b").replace('basis = "recalled"\n', "")
    other = other.replace("params = 1\n", 'params = 1\nfiles_source = "https://h.example/m"\n')
    head = 'files_basis = "copied"\nfiles_via = "https://copy.example/ollama"\n'
    (tmp_path / "m.toml").write_text(head + _A_MODEL + other)
    by_name = {entry.name: entry.published[0] for entry in load_catalog(tmp_path)}
    assert (by_name["m:1b"].basis, by_name["m:1b"].via) == (
        "copied", "https://copy.example/ollama",
    )  # fmt: skip
    assert (by_name["m:2b"].source, by_name["m:2b"].basis, by_name["m:2b"].via) == (
        "https://h.example/m", "recalled", "",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ('source = "huggingface.co/b/m"\nbasis = "copied"',
         "needs its https source, not 'huggingface.co/b/m'"),
        ('source = "https://h.example/b/m"\nbasis = "guessed"', "basis 'guessed'; choose"),
        ('source = "https://h.example/b/m"\nbasis = "copied"\nfiles = { Q9 = "1GB" }',
         "unknown quant 'Q9'"),
    ],
)  # fmt: skip
def test_a_bad_published_page_names_what_is_wrong(tmp_path: Path, page: str, message: str) -> None:
    (tmp_path / "m.toml").write_text(_A_MODEL + f'[[models."m:1b".published]]\n{page}\n')
    with pytest.raises(ConfigError, match=message):
        load_catalog(tmp_path)


def test_published_sizes_carry_their_rounding() -> None:
    assert PublishedSize.parse("4.9GB") == PublishedSize("4.9GB", 4_900_000_000, 50_000_000)
    assert PublishedSize.parse("398MB").rounding_bytes == 500_000
    assert PublishedSize.parse("5.03GB").rounding_bytes == 5_000_000
    assert PublishedSize.parse("4920739168B") == PublishedSize("4920739168B", 4_920_739_168, 0)
    with pytest.raises(ValueError, match="not a size"):
        PublishedSize.parse("4.9 gigs")


def test_q4_k_m_gives_more_bits_to_attn_v_and_ffn_down_in_a_third_of_the_layers() -> None:
    spec = catalog_spec(ENTRIES["llama3.1:8b"])
    types = {tensor.name: tensor.type_name for tensor in spec.tensors}
    assert types["token_embd.weight"] == "Q4_K"
    assert types["output.weight"] == "Q6_K"
    assert types["blk.0.attn_v.weight"] == "Q6_K"  # first eighth
    assert types["blk.5.attn_v.weight"] == "Q4_K"
    assert types["blk.6.ffn_down.weight"] == "Q6_K"  # (6 - 4) % 3 == 2
    assert types["blk.31.ffn_down.weight"] == "Q6_K"  # last eighth
    assert types["blk.10.ffn_gate.weight"] == "Q4_K"
    assert types["blk.10.attn_norm.weight"] == "F32"


def test_rows_that_do_not_fill_k_blocks_fall_back() -> None:
    """Qwen2.5-0.5B's 896-wide rows cannot hold 256-weight blocks: Q5_0 and Q8_0 instead."""
    spec = catalog_spec(ENTRIES["qwen2.5:0.5b"])
    types = {tensor.name: tensor.type_name for tensor in spec.tensors}
    assert types["blk.3.attn_q.weight"] == "Q5_0"
    assert types["token_embd.weight"] == "Q8_0"  # tied: quantized as the output
    assert types["blk.3.ffn_down.weight"] in ("Q4_K", "Q6_K")  # 4864 = 19 * 256


def test_mixtral_keeps_attention_values_and_keys_in_q8_0() -> None:
    spec = catalog_spec(ENTRIES["mixtral:8x7b"])
    types = {tensor.name: tensor.type_name for tensor in spec.tensors}
    assert types["blk.7.attn_v.weight"] == types["blk.7.attn_k.weight"] == "Q8_0"
    assert types["blk.7.ffn_up_exps.weight"] == "Q4_0"
    assert types["blk.7.ffn_gate_inp.weight"] == "F32"


def test_each_quant_is_its_own_spec() -> None:
    entry = ENTRIES["qwen2.5:7b"]
    sizes = [catalog_spec(entry, quant).file_bytes for quant in ("Q4_K_M", "Q5_K_M", "Q8_0", "F16")]
    assert sizes == sorted(sizes)
    assert catalog_spec(entry, "Q8_0").name == "qwen2.5:7b-q8_0"
    assert catalog_spec(entry).name == "qwen2.5:7b"


def test_deepseek_v3_dense_layers_are_smaller_than_moe_layers() -> None:
    spec = catalog_spec(ENTRIES["deepseek-v3:671b"])
    dense, moe = spec.layer_bytes[:3], spec.layer_bytes[3:]
    assert len(set(dense)) == 1
    assert min(moe) > 10 * dense[0]
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
    assert set(gpt_oss.type_bytes) == {"MXFP4", "BF16", "F32"}
    command_r7b = catalog_spec(ENTRIES["command-r7b:7b"])
    assert command_r7b.swa_layers == tuple(i for i in range(32) if (i + 1) % 4)


@pytest.mark.parametrize(
    ("ref", "name", "quant"),
    [
        ("llama3.1:8b", "llama3.1:8b", "Q4_K_M"),
        ("llama3.1", "llama3.1:8b", "Q4_K_M"),
        ("LLAMA3.1:LATEST", "llama3.1:8b", "Q4_K_M"),
        ("registry.ollama.ai/library/qwen3:32b", "qwen3:32b", "Q4_K_M"),
        ("deepseek-r1:latest", "deepseek-r1:8b", "Q4_K_M"),
        ("moonshotai/Kimi-K2-Instruct", "kimi-k2:1t", "Q4_K_M"),
        ("deepseek-v3", "deepseek-v3:671b", "Q4_K_M"),
        ("qwen3:30b", "qwen3:30b-a3b", "Q4_K_M"),
        ("llama3.1:8b-instruct-q8_0", "llama3.1:8b", "Q8_0"),
        ("qwen2.5:7b-instruct-fp16", "qwen2.5:7b", "F16"),
        ("qwen3:30b-a3b-instruct-2507-q4_K_M", "qwen3:30b-a3b", "Q4_K_M"),
        ("deepseek-r1:7b-qwen-distill-q8_0", "deepseek-r1:7b", "Q8_0"),
        ("llama3.2:1b", "llama3.2:1b", "Q8_0"),
        ("hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q5_K_M", "qwen2.5:7b", "Q5_K_M"),
        ("Qwen2.5-Coder-7B-Instruct", "qwen2.5-coder:7b", "Q4_K_M"),
    ],
)
def test_lookup_by_tag_alias_flavour_and_quant(ref: str, name: str, quant: str) -> None:
    match = match_catalog(ref)
    assert match is not None
    assert (match.entry.name, match.quant) == (name, quant)


@pytest.mark.parametrize("ref", FIRST_NAMES)
def test_the_first_names_users_type_answer(ref: str) -> None:
    spec = catalog_model(ref)
    assert spec is not None
    assert spec.format == "catalog"


def test_every_family_answers_to_its_untagged_name() -> None:
    families = {entry.family for entry in ENTRIES.values()}
    missing = sorted(family for family in families if find_catalog_entry(family) is None)
    assert missing == []


def test_unknown_names_are_not_guessed() -> None:
    assert find_catalog_entry("llama3.1:9b") is None
    assert catalog_model("qwen4:8b") is None
    assert find_catalog_entry("llama3.1:8b-instruct-q3_k_s") is None


def test_relatives_are_smaller_models_of_the_same_family() -> None:
    spec = catalog_spec(ENTRIES["qwen2.5:32b"])
    names = [relative.name for relative in relatives_of(spec)]
    assert "qwen2.5:14b" in names and "qwen2.5:0.5b" in names
    assert "qwen2.5:72b" not in names and "llama3.1:8b" not in names


def test_the_derivation_matches_a_real_file_tensor_by_tensor(real_gemma: Path) -> None:
    """The real Gemma 3 270M Q4_K_M: every tensor's name and ggml type as llama.cpp's
    quantizer wrote them, the same tensor bytes, and the file within 0.1 %."""
    real = read_gguf_model(real_gemma)
    derived = catalog_spec(ENTRIES["gemma3:270m"], "Q4_K_M")
    real_types = {tensor.name: tensor.type_name for tensor in real.tensors}
    assert {tensor.name: tensor.type_name for tensor in derived.tensors} == real_types
    assert derived.tensor_bytes == real.tensor_bytes
    assert derived.file_bytes == pytest.approx(real_gemma.stat().st_size, rel=0.001)


def test_a_compact_spec_keeps_every_figure_placement_reads() -> None:
    dense = ENTRIES["llama3.1:70b"]
    assert len(catalog_spec(dense, compact=True).tensors) < len(catalog_spec(dense).tensors) // 2
    entry = ENTRIES["qwen3:30b-a3b"]
    full, compact = catalog_spec(entry), catalog_spec(entry, compact=True)
    assert (compact.tensor_bytes, compact.file_bytes) == (full.tensor_bytes, full.file_bytes)
    assert compact.layer_bytes == full.layer_bytes
    assert (compact.params_total, compact.params_active) == (full.params_total, full.params_active)
    experts = [tensor.name for tensor in compact.tensors if "_exps." in tensor.name]
    assert len(experts) == 3 * 48  # the stacks --n-cpu-moe moves stay whole


def test_a_miss_suggests_the_family_sizes_or_the_quants_the_catalog_sizes() -> None:
    assert catalog_suggestions("qwen3:7b")[:2] == ["qwen3:8b", "qwen3:4b"]
    assert catalog_suggestions("mixtral:8x8b")[0] == "mixtral:8x7b"
    assert catalog_suggestions("llama3.1:8b-instruct-q3_k_s") == [
        "llama3.1:8b", "llama3.1:8b-q8_0", "llama3.1:8b-f16",
    ]  # fmt: skip
    assert catalog_suggestions("lama3.1")[0] == "llama3.1"


def test_llama4_maverick_alternates_dense_and_moe_blocks_with_a_shared_expert() -> None:
    spec = catalog_spec(ENTRIES["llama4:128x17b"])
    assert (spec.n_experts, spec.n_experts_used, spec.n_experts_shared) == (128, 1, 1)
    assert spec.n_ff == 16384 and spec.expert_ff_length == 8192  # intermediate_size_mlp
    dense, moe = spec.layer_bytes[0::2], spec.layer_bytes[1::2]
    assert max(dense) * 10 < min(moe)
    scout = catalog_spec(ENTRIES["llama4:16x17b"])
    assert len(set(scout.layer_bytes)) <= 2  # every block MoE (Q4_K_M's two ffn_down types)


VISION = [entry for entry in ENTRIES.values() if entry.vision_params]


@pytest.mark.parametrize("entry", VISION, ids=[entry.name for entry in VISION])
def test_a_vision_tower_is_one_f16_tensor_outside_the_blocks(entry: CatalogEntry) -> None:
    """Ollama's quantizer skips ``v.`` tensors and an mmproj blob is F16: the tower adds
    two bytes a parameter to the language model's file, in no block."""
    assert "vision" in entry.uses
    spec = catalog_spec(entry)
    (tower,) = [tensor for tensor in spec.tensors if tensor.name.startswith("v.")]
    assert (tower.type_name, tower.layer, tower.n_params) == ("F16", None, entry.vision_params)
    assert tower.n_bytes >= 2 * entry.vision_params
    assert spec.params_total - entry.vision_params < entry.published_params_total


@pytest.mark.parametrize("name", ["llava:7b", "llava:13b", "minicpm-v:8b"])
def test_the_mmproj_families_are_sized_in_q4_0_not_q4_k_m(name: str) -> None:
    """Ollama's llava and minicpm-v tags pull Q4_0: the published sum of model and projector
    fits the Q4_0 derivation and is missed by more than 2 % in Q4_K_M."""
    entry = ENTRIES[name]
    published = entry.files["Q4_0"].bytes
    assert entry.default_quant == "Q4_0"
    assert abs(catalog_spec(entry, "Q4_0").file_bytes / published - 1) < SIZE_TOLERANCE
    assert catalog_spec(entry, "Q4_K_M").file_bytes / published - 1 > SIZE_TOLERANCE


def test_vision_language_models_keep_their_language_models_layout() -> None:
    """Qwen2.5-VL converts as llama.cpp's qwen2vl (q/k/v biases, as Qwen2); Llama 3.2
    Vision's 40 blocks include its 8 cross-attention blocks; LLaVA 1.6 is a Llama."""
    qwen = catalog_spec(ENTRIES["qwen2.5vl:7b"])
    names = {tensor.name for tensor in qwen.tensors}
    assert qwen.architecture == "qwen2vl" and "blk.0.attn_k.bias" in names
    mllama = catalog_spec(ENTRIES["llama3.2-vision:11b"])
    assert (mllama.architecture, mllama.n_layers, mllama.n_embd) == ("mllama", 40, 4096)
    assert catalog_spec(ENTRIES["llava:34b"]).architecture == "llama"
    assert catalog_spec(ENTRIES["minicpm-v:8b"]).architecture == "qwen2"


# --- reading only what a lookup needs (issue 22: `yoyu plan NAME` in well under 300 ms) ---


def test_looking_a_name_up_builds_that_entry_and_no_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    real = catalog_module._Family.entry

    def recording(family: catalog_module._Family, name: str, body: dict[str, Any]) -> CatalogEntry:
        built.append(name)
        return real(family, name, body)

    monkeypatch.setattr(catalog_module._Family, "entry", recording)
    fresh = functools.lru_cache(maxsize=4)(catalog_module._Catalog)  # nothing built yet
    monkeypatch.setattr(catalog_module, "_catalog", fresh)
    match = match_catalog("llama3.1:8b-instruct-q8_0")
    assert match is not None and (match.entry.name, match.quant) == ("llama3.1:8b", "Q8_0")
    assert catalog_model("Qwen/Qwen3-8B") is not None
    assert built == ["llama3.1:8b", "qwen3:8b"]
    assert len(catalog_entries()) == len(ENTRIES)  # the whole catalog, when asked for it
    assert sorted(built) == sorted(ENTRIES)


LAYOUTS = sorted(
    {(entry.architecture, "embedding" not in entry.uses) for entry in ENTRIES.values()},
    key=repr,
)


def test_a_block_at_a_time_types_every_tensor_as_the_file_order_does() -> None:
    """``assign_part_types`` finds each block template's rules once; for every layout of the
    catalog and every file type it must give each tensor the type ``assign_types`` gives
    it walking the whole file (a rule that read the ``blk.N.`` prefix would break this)."""
    for arch, output_head in LAYOUTS:
        parts = gguf_layout_parts(arch, output_head=output_head)
        context = quant_context(arch)
        for file_type in FILE_TYPES:
            by_part = assign_part_types(parts, file_type, context)
            flat = [*by_part.head, *(t for block in by_part.blocks for t in block), *by_part.tail]
            assert flat == assign_types(parts.tensors(), file_type, context), (arch, file_type)
