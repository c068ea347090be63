"""Tiny models: llama.cpp loads each one, generates, and reports the shape that was written.

The expected figures come from ``TinyModel``; they are checked against two
readers that share no code with the writer: llama.cpp (through
llama-cpp-python) and gguf-py's ``GGUFReader``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import llama_cpp
import pytest

from yoyu.models.gguf_spec import read_gguf_model
from yoyu.testing.tiny_models import ARCHITECTURES, TinyModel, write_tiny_model
from yoyu.testing.vocab import BOS_ID, EOS_ID

WEIGHT_TYPES = ("F16", "Q8_0")
CASES = [(arch, weight_type) for arch in ARCHITECTURES for weight_type in WEIGHT_TYPES]
CASE_IDS = [f"{arch}-{weight_type}" for arch, weight_type in CASES]
Loaded = tuple[TinyModel, llama_cpp.Llama]


def _load(path: Path) -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, n_threads=2, verbose=False)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], TinyModel]:
    folder = tmp_path_factory.mktemp("tiny")
    return {
        (arch, weight_type): write_tiny_model(
            folder / f"{arch}-{weight_type}.gguf", arch, weight_type=weight_type
        )
        for arch, weight_type in CASES
    }


@pytest.fixture(scope="module", params=CASES, ids=CASE_IDS)
def loaded(
    request: pytest.FixtureRequest, tiny_models: dict[tuple[str, str], TinyModel]
) -> Iterator[Loaded]:
    model = tiny_models[request.param]
    llm = _load(model.path)
    yield model, llm
    llm.close()


def _generate(llm: llama_cpp.Llama, n_tokens: int = 4) -> list[int]:
    prompt = llm.tokenize(b"hello the world")
    return list(itertools.islice(llm.generate(prompt, temp=0.0), n_tokens))


@pytest.mark.slow
def test_llama_cpp_generates_from_every_tiny_model(loaded: Loaded) -> None:
    model, llm = loaded
    generated = _generate(llm)
    assert len(generated) == 4
    assert all(0 <= token < model.vocab_size for token in generated)


@pytest.mark.slow
def test_llama_cpp_reports_the_written_shape(loaded: Loaded) -> None:
    model, llm = loaded
    handle = llm.model
    assert llama_cpp.llama_model_n_layer(handle) == model.n_layers
    assert llama_cpp.llama_model_n_embd(handle) == model.n_embd
    assert llama_cpp.llama_model_n_head(handle) == model.n_head
    assert llama_cpp.llama_model_n_head_kv(handle) == model.n_head_kv
    assert llama_cpp.llama_model_n_ctx_train(handle) == model.context_length
    assert llama_cpp.llama_model_n_swa(handle) == (model.sliding_window or 0)
    assert llm.n_vocab() == model.vocab_size
    assert llm.metadata["general.architecture"] == model.architecture


@pytest.mark.slow
def test_llama_cpp_counts_the_written_bytes_and_parameters(loaded: Loaded) -> None:
    model, llm = loaded
    assert llama_cpp.llama_model_size(llm.model) == model.tensor_bytes
    assert llama_cpp.llama_model_n_params(llm.model) == model.params_total


@pytest.mark.slow
def test_architecture_specific_keys_reach_llama_cpp(loaded: Loaded) -> None:
    model, llm = loaded
    prefix = model.architecture
    if model.kind in ("qwen3", "gemma2"):
        assert int(llm.metadata[f"{prefix}.attention.key_length"]) == model.head_dim
    if model.kind == "qwen3":
        assert model.head_dim != model.n_embd // model.n_head
    if model.kind == "gemma2":
        assert float(llm.metadata[f"{prefix}.attn_logit_softcapping"]) > 0
        assert float(llm.metadata[f"{prefix}.final_logit_softcapping"]) > 0
        assert model.swa_layers == tuple(range(0, model.n_layers, 2))
    if model.kind == "moe":
        assert int(llm.metadata[f"{prefix}.expert_count"]) == model.n_experts
        assert int(llm.metadata[f"{prefix}.expert_used_count"]) == model.n_experts_used
        assert model.params_active < model.params_total


def _reader_field(reader: gguf.GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


@pytest.mark.parametrize(("arch", "weight_type"), CASES, ids=CASE_IDS)
def test_figures_match_what_gguf_reader_sees(
    tiny_models: dict[tuple[str, str], TinyModel], arch: str, weight_type: str
) -> None:
    model = tiny_models[(arch, weight_type)]
    reader = gguf.GGUFReader(model.path)
    table = [(t.name, tuple(int(d) for d in t.shape), t.tensor_type.name) for t in reader.tensors]
    assert table == [(row.name, row.ne, row.type_name) for row in model.tensors]
    layer_bytes = [0] * model.n_layers
    type_bytes: dict[str, int] = {}
    for tensor in reader.tensors:
        match = re.match(r"blk\.(\d+)\.", tensor.name)
        if match:
            layer_bytes[int(match.group(1))] += int(tensor.n_bytes)
        type_bytes[tensor.tensor_type.name] = type_bytes.get(tensor.tensor_type.name, 0) + int(
            tensor.n_bytes
        )
    assert tuple(layer_bytes) == model.layer_bytes
    assert type_bytes == model.type_bytes
    assert sum(layer_bytes) + model.nonrepeating_bytes == model.tensor_bytes
    assert sum(int(t.n_elements) for t in reader.tensors) == model.params_total
    assert max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors) <= model.file_bytes
    assert model.file_bytes == model.path.stat().st_size
    assert _reader_field(reader, f"{model.architecture}.block_count") == model.n_layers
    assert _reader_field(reader, f"{model.architecture}.embedding_length") == model.n_embd


@pytest.mark.slow
def test_byte_level_vocab_tokenizes_with_merges_and_round_trips(
    tiny_models: dict[tuple[str, str], TinyModel],
) -> None:
    llm = _load(tiny_models[("llama", "F16")].path)
    text = b"hello the world\n\xe4\xbd\x99"  # ends with a newline and a 3-byte character
    tokens = llm.tokenize(text, add_bos=False)
    assert llm.detokenize(tokens) == b" " + text  # SPM adds one leading space
    assert len(tokens) < len(text)  # merged pieces were used
    assert 3 + 0x0A in tokens  # the newline is the byte token <0x0A>
    assert (llm.token_bos(), llm.token_eos()) == (BOS_ID, EOS_ID)
    assert llm.tokenize(b"hi")[0] == BOS_ID
    llm.close()


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    first = write_tiny_model(tmp_path / "a.gguf", "qwen2", seed=7)
    again = write_tiny_model(tmp_path / "b.gguf", "qwen2", seed=7)
    other = write_tiny_model(tmp_path / "c.gguf", "qwen2", seed=8)
    assert first.path.read_bytes() == again.path.read_bytes()
    assert first.path.read_bytes() != other.path.read_bytes()
    assert first.file_bytes == other.file_bytes


@pytest.mark.slow
def test_shape_overrides_and_type_overrides_are_written(tmp_path: Path) -> None:
    shape = {
        "n_layers": 3,
        "n_embd": 256,
        "n_head": 8,
        "n_head_kv": 2,
        "n_ff": 512,
        "vocab_size": 300,
    }
    model = write_tiny_model(
        tmp_path / "mix.gguf",
        "llama",
        weight_type="Q4_K",  # no numpy quantizer: written as zero blocks
        type_overrides={"output": "Q6_K", "attn_v": "Q6_K"},
        context_length=1024,
        **shape,
    )
    assert (model.n_layers, model.n_embd, model.head_dim, model.vocab_size) == (3, 256, 32, 300)
    types = {row.name: row.type_name for row in model.tensors}
    assert types["output.weight"] == types["blk.2.attn_v.weight"] == "Q6_K"
    assert types["blk.0.attn_q.weight"] == "Q4_K"
    assert types["blk.0.attn_norm.weight"] == "F32"
    llm = _load(model.path)
    assert llama_cpp.llama_model_n_layer(llm.model) == 3
    assert llama_cpp.llama_model_n_ctx_train(llm.model) == 1024
    assert llama_cpp.llama_model_size(llm.model) == model.tensor_bytes
    assert len(_generate(llm)) == 4
    llm.close()


@pytest.mark.parametrize(
    ("arch", "options", "message"),
    [
        ("mamba", {}, "unknown tiny architecture"),
        ("llama", {"n_lyers": 2}, "unknown shape fields"),
        ("llama", {"n_head_kv": 3}, "not a multiple of n_head_kv"),
        ("llama", {"n_experts": 4, "n_experts_used": 2}, "only the 'moe' architecture"),
        ("moe", {"n_experts_used": 5}, "n_experts_used must be"),
        ("llama", {"sliding_window": 16}, "only 'gemma2'"),
        ("llama", {"vocab_size": 100}, "vocab_size 100 is too small"),
        ("llama", {"weight_type": "Q4_K"}, "not a multiple of Q4_K's block size 256"),
    ],
)
def test_bad_shapes_are_refused_with_the_reason(
    tmp_path: Path, arch: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write_tiny_model(tmp_path / "bad.gguf", arch, **options)
    assert not (tmp_path / "bad.gguf").exists()


@pytest.mark.parametrize(("arch", "weight_type"), CASES, ids=CASE_IDS)
def test_read_gguf_model_matches_the_written_shape(
    tiny_models: dict[tuple[str, str], TinyModel], arch: str, weight_type: str
) -> None:
    model = tiny_models[(arch, weight_type)]
    spec = read_gguf_model(model.path)
    assert spec.architecture == model.architecture
    assert (spec.n_layers, spec.n_embd, spec.n_head, spec.n_head_kv) == (
        model.n_layers,
        model.n_embd,
        model.n_head,
        model.n_head_kv,
    )
    assert (spec.head_dim_k, spec.head_dim_v, spec.n_ff) == (
        model.head_dim,
        model.head_dim,
        model.n_ff,
    )
    assert (spec.vocab_size, spec.context_length) == (model.vocab_size, model.context_length)
    assert (spec.sliding_window, tuple(spec.swa_layers)) == (model.sliding_window, model.swa_layers)
    assert (spec.n_experts, spec.n_experts_used) == (model.n_experts, model.n_experts_used)
    assert (spec.params_total, spec.params_active) == (model.params_total, model.params_active)
    assert spec.tensor_bytes == model.tensor_bytes
    assert tuple(spec.layer_bytes) == model.layer_bytes
    assert spec.nonrepeating_bytes == model.nonrepeating_bytes
    assert spec.type_bytes == model.type_bytes
    assert spec.file_bytes == model.file_bytes
