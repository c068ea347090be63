"""Sparse models: real tensor tables, no disk, and the figures the real releases publish.

Three independent views check what ``write_sparse_model`` claims: the file
system (holes, apparent sizes), gguf-py's ``GGUFReader`` (tensor table, keys,
shard layout) and llama.cpp itself, which loads each table without
allocating weights (``no_alloc``) and so validates every tensor name, shape
and type against its architecture. Published figures (file sizes, parameter
counts, tensor counts) come from the model cards and GGUF pages named below.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import gguf
import pytest

from yoyu.models.gguf_spec import read_gguf_model
from yoyu.testing.sparse_models import SPARSE_MODELS, SparseModel, write_sparse_model

NAMES = sorted(SPARSE_MODELS)
MiB = 1 << 20


@pytest.fixture(scope="module")
def sparse_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SparseModel]:
    folder = tmp_path_factory.mktemp("sparse")
    return {name: write_sparse_model(folder, name) for name in NAMES}


@pytest.fixture(scope="module")
def bare_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SparseModel]:
    """Same tables without the 100k-entry token arrays, which GGUFReader parses slowly."""
    folder = tmp_path_factory.mktemp("sparse-bare")
    return {name: write_sparse_model(folder, name, tokenizer=False) for name in NAMES}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_files_take_almost_no_disk(sparse_models: dict[str, SparseModel], name: str) -> None:
    model = sparse_models[name]
    allocated = sum(path.stat().st_blocks * 512 for path in model.paths)
    assert allocated < 32 * MiB  # headers and token arrays only
    assert allocated * 100 < model.file_bytes


@pytest.mark.parametrize("name", NAMES)
def test_apparent_size_is_the_expected_file_bytes(
    sparse_models: dict[str, SparseModel], name: str
) -> None:
    model = sparse_models[name]
    assert sum(path.stat().st_size for path in model.paths) == model.file_bytes
    assert model.file_bytes > model.tensor_bytes  # header and alignment on top of the data


# Figures published for the real releases (not derived from the recipes):
# - Llama-3.1-8B-Instruct Q4_K_M (bartowski): 4.92 GB, llama.cpp "file size = 4.58 GiB",
#   292 tensors: 66 F32, 193 Q4_K, 33 Q6_K; 8.03B parameters.
# - Qwen2.5-32B-Instruct Q4_K_M (bartowski): 19.85 GB; Hugging Face counts 32.8B parameters.
# - gpt-oss-20b MXFP4 (ggml-org, bartowski): 12.1 GB, 459 tensors of which 72 MXFP4 expert
#   tensors; the GGUF pages count 20.9B parameters.
# - DeepSeek-V3 Q4_K_M (unsloth, bartowski): 404.43 GB, 1025 tensors; 671B total, 37B active
#   (technical report; the converted GGUF leaves out the multi-token-prediction layer).
# - Kimi K2: "1 trillion total parameters, 32 billion activated" (model card).
PUBLISHED: dict[str, dict[str, Any]] = {
    # bartowski DeepSeek-R1-Distill-Qwen-7B-GGUF Q4_K_M: 4.68 GB; the model card: 7.62B
    "deepseek-r1-distill-qwen-7b-q4_k_m": {
        "file_gb": 4.68,
        "n_tensors": 339,
        "params": (7.62, 1e9),
    },
    # bartowski google_gemma-3-12b-it-GGUF Q4_K_M: 7.30 GB; the language model's 11.8B
    "gemma-3-12b-q4_k_m": {"file_gb": 7.3, "params": (11.8, 1e9)},
    "llama-3.1-8b-q4_k_m": {
        "file_gb": 4.92,
        "tensor_gib": 4.58,
        "n_tensors": 292,
        "types": {"F32": 66, "Q4_K": 193, "Q6_K": 33},
        "params": (8.03, 1e9),
    },
    "qwen2.5-32b-q4_k_m": {"file_gb": 19.85, "params": (32.8, 1e9)},
    # bartowski Meta-Llama-3.1-70B-Instruct-GGUF Q4_K_M: one file of 42.52 GB, 724 tensors;
    # the model card: 70.6B parameters (attn_v is Q5_K/Q6_K there: llama.cpp's 70B rule)
    "llama-3.1-70b-q4_k_m": {"file_gb": 42.52, "n_tensors": 724, "params": (70.6, 1e9)},
    "gpt-oss-20b-mxfp4": {"file_gb": 12.1, "n_tensors": 459, "params": (20.9, 1e9)},
    "deepseek-v3-q4_k_m": {"file_gb": 404.43, "n_tensors": 1025, "params": (671, 1e9)},
    "kimi-k2-q4_k_m": {"params": (1.0, 1e12)},
}
ACTIVE_B = {"deepseek-v3-q4_k_m": 37, "kimi-k2-q4_k_m": 32}


def _decimals(figure: float) -> int:
    return len(repr(figure).partition(".")[2]) if isinstance(figure, float) else 0


@pytest.mark.parametrize("name", NAMES)
def test_figures_match_the_published_ones(sparse_models: dict[str, SparseModel], name: str) -> None:
    model, published = sparse_models[name], PUBLISHED[name]
    params, scale = published["params"]
    assert round(model.params_total / scale, _decimals(params)) == params
    if "file_gb" in published:
        assert (
            round(model.file_bytes / 1e9, _decimals(published["file_gb"])) == published["file_gb"]
        )
    if "tensor_gib" in published:
        assert round(model.tensor_bytes / 2**30, 2) == published["tensor_gib"]
    if "n_tensors" in published:
        assert model.n_tensors == len(model.tensors) == published["n_tensors"]
    if "types" in published:
        assert dict(Counter(row.type_name for row in model.tensors)) == published["types"]
    if name in ACTIVE_B:
        assert int(model.params_active / 1e9) == ACTIVE_B[name]


def test_gpt_oss_keeps_experts_in_mxfp4_and_slides_on_even_layers(
    sparse_models: dict[str, SparseModel],
) -> None:
    model = sparse_models["gpt-oss-20b-mxfp4"]
    experts = [row for row in model.tensors if row.name.endswith("_exps.weight")]
    assert len(experts) == 72 and {row.type_name for row in experts} == {"MXFP4"}
    assert {row.type_name for row in model.tensors if row.name.endswith("attn_q.weight")} == {
        "Q8_0"
    }
    assert model.sliding_window == 128
    assert model.swa_layers == tuple(range(0, 24, 2))
    assert sum(row.name.endswith("attn_sinks.weight") for row in model.tensors) == 24


def test_mla_models_differ_in_kv_b_layout_and_dense_lead(
    sparse_models: dict[str, SparseModel],
) -> None:
    deepseek, kimi = sparse_models["deepseek-v3-q4_k_m"], sparse_models["kimi-k2-q4_k_m"]
    deepseek_names = {row.name for row in deepseek.tensors}
    kimi_names = {row.name for row in kimi.tensors}
    assert (
        "blk.0.attn_kv_b.weight" in deepseek_names and "blk.0.attn_k_b.weight" not in deepseek_names
    )
    assert "blk.0.attn_k_b.weight" in kimi_names and "blk.0.attn_kv_b.weight" not in kimi_names
    assert (
        "blk.2.ffn_down.weight" in deepseek_names and "blk.3.ffn_down_exps.weight" in deepseek_names
    )
    assert "blk.0.ffn_down.weight" in kimi_names and "blk.1.ffn_down_exps.weight" in kimi_names
    assert deepseek.mla is not None and kimi.mla is not None
    assert (
        (deepseek.mla.kv_lora_rank, deepseek.mla.rope_dim)
        == (kimi.mla.kv_lora_rank, kimi.mla.rope_dim)
        == (512, 64)
    )
    assert (deepseek.n_experts, kimi.n_experts) == (256, 384)
    assert len(deepseek.paths) == 9 and len(kimi.paths) == 13


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_gguf_reader_sees_the_recipe_table(bare_tables: dict[str, SparseModel], name: str) -> None:
    model = bare_tables[name]
    readers = [gguf.GGUFReader(path) for path in model.paths]
    table = [
        (t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.n_bytes))
        for reader in readers
        for t in reader.tensors
    ]
    assert table == [(row.name, row.ne, row.type_name, row.n_bytes) for row in model.tensors]
    for path, reader in zip(model.paths, readers, strict=True):
        data_end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
        assert data_end <= path.stat().st_size < data_end + gguf.GGUF_DEFAULT_ALIGNMENT


@pytest.mark.parametrize("name", NAMES)
def test_figures_match_gguf_reader_sums(bare_tables: dict[str, SparseModel], name: str) -> None:
    model = bare_tables[name]
    tensors = [t for path in model.paths for t in gguf.GGUFReader(path).tensors]
    layer_bytes = [0] * model.n_layers
    type_bytes: Counter[str] = Counter()
    for tensor in tensors:
        match = re.match(r"blk\.(\d+)\.", tensor.name)
        if match:
            layer_bytes[int(match.group(1))] += int(tensor.n_bytes)
        type_bytes[tensor.tensor_type.name] += int(tensor.n_bytes)
    assert tuple(layer_bytes) == model.layer_bytes
    assert dict(type_bytes) == model.type_bytes
    assert sum(type_bytes.values()) == model.tensor_bytes
    assert model.tensor_bytes - sum(layer_bytes) == model.nonrepeating_bytes
    assert sum(int(t.n_elements) for t in tensors) == model.params_total


@pytest.mark.parametrize("name", NAMES)
def test_metadata_states_the_shape(bare_tables: dict[str, SparseModel], name: str) -> None:
    model = bare_tables[name]
    fields = gguf.GGUFReader(model.paths[0]).fields
    arch = model.architecture

    def value(key: str) -> Any:
        return fields[f"{arch}.{key}"].contents()

    assert fields["general.architecture"].contents() == arch
    assert (value("block_count"), value("embedding_length")) == (model.n_layers, model.n_embd)
    assert (value("attention.head_count"), value("attention.head_count_kv")) == (
        model.n_head,
        model.n_head_kv,
    )
    assert (value("context_length"), value("vocab_size")) == (
        model.context_length,
        model.vocab_size,
    )
    if model.n_experts:
        assert (value("expert_count"), value("expert_used_count")) == (
            model.n_experts,
            model.n_experts_used,
        )
    if model.sliding_window:
        assert value("attention.sliding_window") == model.sliding_window


def test_splits_carry_gguf_split_keys(tmp_path: Path) -> None:
    model = write_sparse_model(tmp_path, "llama-3.1-8b-q4_k_m", split_count=3, tokenizer=False)
    assert [path.name for path in model.paths] == [
        f"llama-3.1-8b-q4_k_m-0000{index}-of-00003.gguf" for index in (1, 2, 3)
    ]
    readers = [gguf.GGUFReader(path) for path in model.paths]
    for index, reader in enumerate(readers):
        assert reader.fields["split.no"].contents() == index
        assert reader.fields["split.count"].contents() == 3
        assert reader.fields["split.tensors.count"].contents() == 292
        assert ("general.architecture" in reader.fields) == (index == 0)
    shard_bytes = [sum(int(t.n_bytes) for t in reader.tensors) for reader in readers]
    assert max(shard_bytes) < model.tensor_bytes / 2  # balanced, not one big shard
    assert sum(path.stat().st_size for path in model.paths) == model.file_bytes


@pytest.mark.parametrize("split_count", [0, 10_000])
def test_impossible_split_counts_are_refused(tmp_path: Path, split_count: int) -> None:
    with pytest.raises(ValueError, match="non-empty shards"):
        write_sparse_model(tmp_path, "gpt-oss-20b-mxfp4", split_count=split_count)


def test_unknown_model_names_list_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kimi-k2-q4_k_m"):
        write_sparse_model(tmp_path, "llama-4-behemoth")


# Runs in a child process: llama.cpp aborts the process (GGML_ASSERT) on some bad inputs,
# which must fail this test rather than kill the test run.
_LLAMA_CPP_PROBE = """
import json, sys, llama_cpp
llama_cpp.llama_backend_init()
params = llama_cpp.llama_model_default_params()
params.no_alloc = True  # read metadata and tensor table, allocate and read no weights
params.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
params.n_gpu_layers = 0
found = {}
for path in sys.argv[1:]:
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        found[path] = None
        continue
    found[path] = {
        "n_layer": llama_cpp.llama_model_n_layer(model),
        "n_embd": llama_cpp.llama_model_n_embd(model),
        "n_head": llama_cpp.llama_model_n_head(model),
        "n_head_kv": llama_cpp.llama_model_n_head_kv(model),
        "n_swa": llama_cpp.llama_model_n_swa(model),
        "n_ctx_train": llama_cpp.llama_model_n_ctx_train(model),
        "size": llama_cpp.llama_model_size(model),
        "n_params": llama_cpp.llama_model_n_params(model),
        "n_vocab": llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model)),
    }
    llama_cpp.llama_model_free(model)
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def llama_cpp_view(sparse_models: dict[str, SparseModel]) -> dict[str, Any]:
    paths = [str(sparse_models[name].paths[0]) for name in NAMES]
    result = subprocess.run(
        [sys.executable, "-c", _LLAMA_CPP_PROBE, *paths],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    view: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return view


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_llama_cpp_accepts_the_table_and_agrees(
    sparse_models: dict[str, SparseModel], llama_cpp_view: dict[str, Any], name: str
) -> None:
    model = sparse_models[name]
    seen = llama_cpp_view[str(model.paths[0])]
    assert seen is not None, f"llama.cpp refused {model.paths[0].name}"
    assert (seen["n_layer"], seen["n_embd"], seen["n_head"], seen["n_head_kv"]) == (
        model.n_layers,
        model.n_embd,
        model.n_head,
        model.n_head_kv,
    )
    assert seen["n_swa"] == (model.sliding_window or 0)
    assert seen["n_ctx_train"] == model.context_length
    assert seen["n_vocab"] == model.vocab_size
    assert seen["size"] == model.tensor_bytes
    assert seen["n_params"] == model.params_total


@pytest.mark.parametrize("name", NAMES)
def test_read_gguf_model_matches_the_recipe(
    sparse_models: dict[str, SparseModel], name: str
) -> None:
    model = sparse_models[name]
    spec = read_gguf_model(model.paths[0])
    assert spec.architecture == model.architecture
    assert (spec.n_layers, spec.n_embd, spec.n_head, spec.n_head_kv) == (
        model.n_layers,
        model.n_embd,
        model.n_head,
        model.n_head_kv,
    )
    assert (spec.head_dim_k, spec.head_dim_v, spec.n_ff) == (
        model.head_dim_k,
        model.head_dim_v,
        model.n_ff,
    )
    assert (spec.vocab_size, spec.context_length) == (model.vocab_size, model.context_length)
    assert (spec.sliding_window, tuple(spec.swa_layers)) == (model.sliding_window, model.swa_layers)
    assert (spec.n_experts, spec.n_experts_used) == (model.n_experts, model.n_experts_used)
    assert (spec.n_experts_shared, spec.expert_ff_length) == (
        model.n_experts_shared,
        model.expert_ff_length,
    )
    assert spec.mla == model.mla
    assert (spec.params_total, spec.params_active) == (model.params_total, model.params_active)
    assert spec.tensor_bytes == model.tensor_bytes
    assert tuple(spec.layer_bytes) == model.layer_bytes
    assert spec.nonrepeating_bytes == model.nonrepeating_bytes
    assert spec.type_bytes == model.type_bytes
    assert spec.file_bytes == model.file_bytes
    assert len(spec.paths) == len(model.paths)
