"""GGUF files with the exact tensor tables of real models and no data on disk.

The planner's tests need Llama-3.1-8B, Qwen2.5-32B, gpt-oss-20b, DeepSeek-V3
and Kimi K2 as llama.cpp sees them: the same tensor names, shapes, ggml types
and metadata, and the same file size. ``write_sparse_model`` writes the
header, metadata and tensor table with gguf-py's ``GGUFWriter`` and then
extends each file to its full length with ``truncate``: the data region is a
hole, so a 600 GB model takes a few kilobytes of disk and readers (which never
read weights) see exactly what they would see in the real file.

Each recipe says where its shapes come from (the model's ``config.json`` on
Hugging Face and the metadata of the well-known GGUF release). The Q4_K_M
mixes follow llama.cpp's ``llama_tensor_get_type`` (``src/llama-quant.cpp``):
``output`` is Q6_K; ``attn_v`` and every ``ffn_down`` variant are Q6_K on the
layers ``use_more_bits`` picks (the first and last eighth, and every third
in between) and Q4_K elsewhere; 1-D tensors and the MoE router stay F32; a
row length that is not a multiple of 256 falls back (Q4_K to Q5_0, Q6_K to
Q8_0). The tokenizer arrays have the real vocabulary size (short made-up
strings) because a reader's speed depends on skipping them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from yoyu.models.shape import MlaDims, ModelShape
from yoyu.testing.tiny_models import TensorRow, table_figures

MetadataValue = str | int | float | bool
_ALIGNMENT = gguf.GGUF_DEFAULT_ALIGNMENT


@dataclass(frozen=True)
class TokenizerShape:
    """The ``tokenizer.ggml.*`` arrays: real lengths, placeholder strings."""

    model: str  # "gpt2": byte-level BPE (merges); "llama": SentencePiece (scores)
    pre: str
    n_tokens: int
    n_merges: int
    bos_id: int
    eos_id: int


@dataclass(frozen=True, kw_only=True)
class SparseRecipe(ModelShape):
    """Everything needed to write one real model's GGUF without its weights."""

    name: str
    architecture: str
    quantization: str
    source: str
    tokenizer: TokenizerShape
    tensors: tuple[TensorRow, ...] = field(repr=False)
    metadata: Mapping[str, MetadataValue] = field(repr=False)  # keys the fields do not imply
    default_split_count: int = 1


@dataclass(frozen=True, kw_only=True)
class SparseModel(ModelShape):
    """A written sparse model: its files and the figures a reader must find.

    The shape is the GGUF's values as written (for Kimi K2's MLA layout that
    means ``n_head_kv`` 1 and key/value lengths 576/512, with the per-head
    sizes in ``mla``); byte figures are summed from the tensor table.
    """

    name: str
    paths: tuple[Path, ...]
    file_bytes: int
    architecture: str
    quantization: str
    n_tensors: int
    params_total: int
    params_active: int
    tensor_bytes: int
    layer_bytes: tuple[int, ...]
    nonrepeating_bytes: int
    type_bytes: dict[str, int]
    tensors: tuple[TensorRow, ...] = field(repr=False)


def write_sparse_model(
    folder: Path, name: str, *, split_count: int | None = None, tokenizer: bool = True
) -> SparseModel:
    """Write the sparse GGUF(s) of ``SPARSE_MODELS[name]`` into ``folder``.

    ``split_count`` defaults to the release's own (DeepSeek-V3 9, Kimi K2 13);
    shards are named like llama.cpp's ``gguf-split`` output and carry its
    ``split.*`` keys, with the metadata on the first one only. With
    ``tokenizer=False`` the token arrays are left out: the tensor table is the
    same, and ``gguf.GGUFReader`` (slow on 100k-string arrays) reads it fast.
    """
    recipe = _recipe(name)
    count = recipe.default_split_count if split_count is None else split_count
    shards = _partition(recipe.tensors, count)
    folder.mkdir(parents=True, exist_ok=True)
    paths = _shard_paths(folder, name, len(shards))
    for index, (path, rows) in enumerate(zip(paths, shards, strict=True)):
        _write_shard(path, recipe, rows, (index, len(shards)), tokenizer=tokenizer)
    return _describe(recipe, paths)


def _recipe(name: str) -> SparseRecipe:
    if name not in SPARSE_MODELS:
        raise ValueError(f"unknown sparse model {name!r}; choose one of {sorted(SPARSE_MODELS)}")
    return SPARSE_MODELS[name]


def _partition(rows: Sequence[TensorRow], split_count: int) -> list[list[TensorRow]]:
    """Cut the table, in order, into ``split_count`` runs of about equal bytes."""
    if 1 <= split_count <= len(rows):
        shards: list[list[TensorRow]] = [[] for _ in range(split_count)]
        total, before = sum(row.n_bytes for row in rows), 0
        for row in rows:
            shards[min(before * split_count // total, split_count - 1)].append(row)
            before += row.n_bytes
        if all(shards):
            return shards
    raise ValueError(f"cannot split {len(rows)} tensors into {split_count} non-empty shards")


def _shard_paths(folder: Path, name: str, count: int) -> tuple[Path, ...]:
    if count == 1:
        return (folder / f"{name}.gguf",)
    return tuple(
        folder / f"{name}-{index:05d}-of-{count:05d}.gguf" for index in range(1, count + 1)
    )


def _write_shard(
    path: Path,
    recipe: SparseRecipe,
    rows: Sequence[TensorRow],
    split: tuple[int, int],
    *,
    tokenizer: bool,
) -> None:
    """One file: metadata (and tokens) on the first shard only, as gguf-split writes them."""
    writer = gguf.GGUFWriter(path, recipe.architecture)
    index, count = split
    if index == 0:
        _add_metadata(writer, _common_metadata(recipe) | dict(recipe.metadata))
        if tokenizer:
            _add_tokenizer(writer, recipe.tokenizer)
    else:
        writer.kv_data[0].pop(gguf.Keys.General.ARCHITECTURE)
    if count > 1:
        writer.add_uint16(gguf.Keys.Split.LLM_KV_SPLIT_NO, index)
        writer.add_uint16(gguf.Keys.Split.LLM_KV_SPLIT_COUNT, count)
        writer.add_int32(gguf.Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT, len(recipe.tensors))
    for row in rows:
        numpy_shape = tuple(reversed(row.ne))
        writer.add_tensor_info(
            row.name, numpy_shape, np.dtype(np.float32), row.n_bytes, raw_dtype=row.qtype
        )
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    data_bytes = sum(_padded(row.n_bytes) for row in rows)
    os.truncate(path, _padded(path.stat().st_size) + data_bytes)


def _padded(n_bytes: int) -> int:
    return -(-n_bytes // _ALIGNMENT) * _ALIGNMENT


def _add_metadata(writer: gguf.GGUFWriter, metadata: Mapping[str, MetadataValue]) -> None:
    """Scalars in the GGUF types converters use: u32 counts, f32 factors."""
    for key, value in metadata.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_string(key, value)


def _add_tokenizer(writer: gguf.GGUFWriter, shape: TokenizerShape) -> None:
    """BPE ("gpt2") with merges, or SentencePiece ("llama") with a score per token."""
    token_types = np.full(shape.n_tokens, int(gguf.TokenType.NORMAL), dtype=np.int32)
    token_types[[shape.bos_id, shape.eos_id]] = int(gguf.TokenType.CONTROL)
    writer.add_tokenizer_model(shape.model)
    writer.add_tokenizer_pre(shape.pre)
    writer.add_token_list([f"t{index}" for index in range(shape.n_tokens)])
    writer.add_token_types(token_types.tolist())
    if shape.model == "llama":
        writer.add_token_scores([-float(index) for index in range(shape.n_tokens)])
    else:
        writer.add_token_merges([f"m{index} n{index}" for index in range(shape.n_merges)])
    writer.add_bos_token_id(shape.bos_id)
    writer.add_eos_token_id(shape.eos_id)


def _describe(recipe: SparseRecipe, paths: tuple[Path, ...]) -> SparseModel:
    figures = table_figures(
        recipe.tensors, recipe.n_layers, recipe.n_experts, recipe.n_experts_used
    )
    return SparseModel(
        name=recipe.name,
        paths=paths,
        file_bytes=sum(path.stat().st_size for path in paths),
        architecture=recipe.architecture,
        quantization=recipe.quantization,
        n_tensors=len(recipe.tensors),
        tensors=recipe.tensors,
        **recipe.shape_fields(),
        **dataclasses.asdict(figures),
    )


# --- the Q4_K_M mix ---------------------------------------------------------------------


def _use_more_bits(layer: int, n_layers: int) -> bool:
    """llama-quant.cpp's rule for which layers' attn_v / ffn_down get Q6_K in Q4_K_M."""
    eighth = n_layers // 8
    return layer < eighth or layer >= 7 * n_layers // 8 or (layer - eighth) % 3 == 2


def _q4_k_m(
    tables: Sequence[tuple[str, tuple[int, ...]]], n_layers: int, *, is_70b: bool = False
) -> tuple[TensorRow, ...]:
    """Assign each (name, ne) the type llama-quantize gives it for Q4_K_M.

    ``is_70b``: llama-quant.cpp raises a 70B model's ``attn_v`` from Q4_K to Q5_K
    ("8 heads sharing the same attn_v weights ... nearly negligible increase in size").
    """
    n_attention_wv = sum("attn_v.weight" in name for name, _ in tables)
    i_attention_wv = 0
    rows = []
    for name, ne in tables:
        wanted = _q4_k_m_type(name, ne, n_layers, i_attention_wv, n_attention_wv)
        if is_70b and "attn_v.weight" in name and wanted == "Q4_K":
            wanted = "Q5_K"
        i_attention_wv += "attn_v.weight" in name
        rows.append(TensorRow(name, ne, wanted))
    return tuple(rows)


def _q4_k_m_type(name: str, ne: tuple[int, ...], n_layers: int, i_wv: int, n_wv: int) -> str:
    if len(ne) < 2 or name.endswith("ffn_gate_inp.weight"):
        return "F32"
    wanted = "Q4_K"
    if name == "output.weight":
        wanted = "Q6_K"
    elif "attn_v.weight" in name:
        wanted = "Q6_K" if _use_more_bits(i_wv, n_wv) else "Q4_K"
    elif "ffn_down" in name:
        wanted = "Q6_K" if _use_more_bits(int(name.split(".")[1]), n_layers) else "Q4_K"
    if ne[0] % 256:  # not a whole number of K-quant super-blocks
        wanted = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}[wanted]
    return wanted


# --- tensor tables ----------------------------------------------------------------------

Table = list[tuple[str, tuple[int, ...]]]


def _dense_attention(prefix: str, embd: int, q_width: int, kv_width: int, biases: bool) -> Table:
    table: Table = [
        (f"{prefix}attn_norm.weight", (embd,)),
        (f"{prefix}attn_q.weight", (embd, q_width)),
        (f"{prefix}attn_k.weight", (embd, kv_width)),
        (f"{prefix}attn_v.weight", (embd, kv_width)),
        (f"{prefix}attn_output.weight", (q_width, embd)),
    ]
    if biases:
        table += [
            (f"{prefix}attn_q.bias", (q_width,)),
            (f"{prefix}attn_k.bias", (kv_width,)),
            (f"{prefix}attn_v.bias", (kv_width,)),
        ]
    return table


def _dense_ffn(prefix: str, embd: int, ff: int) -> Table:
    return [
        (f"{prefix}ffn_norm.weight", (embd,)),
        (f"{prefix}ffn_gate.weight", (embd, ff)),
        (f"{prefix}ffn_up.weight", (embd, ff)),
        (f"{prefix}ffn_down.weight", (ff, embd)),
    ]


def _dense_model(
    n_layers: int, embd: int, q_width: int, kv_width: int, ff: int, vocab: int, *, biases: bool
) -> Table:
    table: Table = [("token_embd.weight", (embd, vocab))]
    for layer in range(n_layers):
        prefix = f"blk.{layer}."
        table += _dense_attention(prefix, embd, q_width, kv_width, biases) + _dense_ffn(
            prefix, embd, ff
        )
    return [*table, ("output_norm.weight", (embd,)), ("output.weight", (embd, vocab))]


@dataclass(frozen=True)
class _DenseRelease:
    """A dense model with grouped-query attention and its well-known Q4_K_M GGUF."""

    name: str
    architecture: str
    source: str
    shape: ModelShape
    tokenizer: TokenizerShape
    metadata: Mapping[str, MetadataValue]
    biases: bool  # q/k/v biases (Qwen2)
    rope_freqs: int | None = None  # Llama 3.1's rope_freqs.weight [n] (llama3 rope scaling)
    is_70b: bool = False  # llama.cpp's LLM_TYPE_70B: attn_v one step up (see _q4_k_m)


_DENSE_RELEASES = (
    # meta-llama/Llama-3.1-8B-Instruct config.json (rope_theta 5e5, rope_scaling llama3
    # factor 8). File: bartowski/Meta-Llama-3.1-8B-Instruct-GGUF Q4_K_M, 4.92 GB, 292 tensors
    # (F32 66, Q4_K 193, Q6_K 33); llama.cpp reports 4.58 GiB.
    _DenseRelease(
        name="llama-3.1-8b-q4_k_m", architecture="llama",
        source="meta-llama/Llama-3.1-8B-Instruct config.json; bartowski Q4_K_M GGUF metadata",
        shape=ModelShape(
            n_layers=32, n_embd=4096, n_head=32, n_head_kv=8, head_dim_k=128, head_dim_v=128,
            n_ff=14336, vocab_size=128256, context_length=131072,
        ),
        tokenizer=TokenizerShape("gpt2", "llama-bpe", 128256, 280147, 128000, 128009),
        metadata={
            "llama.rope.freq_base": 500000.0,
            "llama.rope.dimension_count": 128,
            "llama.attention.layer_norm_rms_epsilon": 1e-5,
        },
        biases=False, rope_freqs=64,
    ),
    # meta-llama/Llama-3.1-70B-Instruct config.json (80 layers, hidden 8192, 64 heads, 8 KV
    # heads, intermediate 28672, rope_theta 5e5, llama3 rope scaling). File: bartowski/
    # Meta-Llama-3.1-70B-Instruct-GGUF Q4_K_M, one file of 42.52 GB, 724 tensors.
    _DenseRelease(
        name="llama-3.1-70b-q4_k_m", architecture="llama",
        source="meta-llama/Llama-3.1-70B-Instruct config.json; bartowski Q4_K_M GGUF metadata",
        shape=ModelShape(
            n_layers=80, n_embd=8192, n_head=64, n_head_kv=8, head_dim_k=128, head_dim_v=128,
            n_ff=28672, vocab_size=128256, context_length=131072,
        ),
        tokenizer=TokenizerShape("gpt2", "llama-bpe", 128256, 280147, 128000, 128009),
        metadata={
            "llama.rope.freq_base": 500000.0,
            "llama.rope.dimension_count": 128,
            "llama.attention.layer_norm_rms_epsilon": 1e-5,
        },
        biases=False, rope_freqs=64, is_70b=True,
    ),
    # deepseek-ai/DeepSeek-R1-Distill-Qwen-7B config.json (Qwen2.5-Math-7B, rope_theta 10000,
    # untied lm_head). File: bartowski DeepSeek-R1-Distill-Qwen-7B-GGUF Q4_K_M, 4.68 GB (the
    # 7B that ollama's deepseek-r1:7b is).
    _DenseRelease(
        name="deepseek-r1-distill-qwen-7b-q4_k_m", architecture="qwen2",
        source="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B config.json; bartowski Q4_K_M metadata",
        shape=ModelShape(
            n_layers=28, n_embd=3584, n_head=28, n_head_kv=4, head_dim_k=128, head_dim_v=128,
            n_ff=18944, vocab_size=152064, context_length=131072,
        ),
        tokenizer=TokenizerShape("gpt2", "deepseek-r1-qwen", 152064, 151387, 151646, 151643),
        metadata={
            "qwen2.rope.freq_base": 10000.0,
            "qwen2.attention.layer_norm_rms_epsilon": 1e-6,
        },
        biases=True,
    ),
    # Qwen/Qwen2.5-32B-Instruct config.json (rope_theta 1e6, untied lm_head). File:
    # bartowski/Qwen2.5-32B-Instruct-GGUF Q4_K_M, 19.85 GB; the GGUF pads the tokenizer's
    # 151665 tokens to the 152064-row embedding.
    _DenseRelease(
        name="qwen2.5-32b-q4_k_m", architecture="qwen2",
        source="Qwen/Qwen2.5-32B-Instruct config.json; bartowski Q4_K_M GGUF metadata",
        shape=ModelShape(
            n_layers=64, n_embd=5120, n_head=40, n_head_kv=8, head_dim_k=128, head_dim_v=128,
            n_ff=27648, vocab_size=152064, context_length=32768,
        ),
        tokenizer=TokenizerShape("gpt2", "qwen2", 152064, 151387, 151643, 151645),
        metadata={
            "qwen2.rope.freq_base": 1000000.0,
            "qwen2.attention.layer_norm_rms_epsilon": 1e-6,
        },
        biases=True,
    ),
)  # fmt: skip


def _dense_recipe(release: _DenseRelease) -> SparseRecipe:
    """The release's tensor table follows from its shape: llama.cpp's llama/qwen2 layout."""
    shape = release.shape
    table = _dense_model(
        shape.n_layers, shape.n_embd, shape.n_head * shape.head_dim_k,
        shape.n_head_kv * shape.head_dim_k, shape.n_ff, shape.vocab_size, biases=release.biases,
    )  # fmt: skip
    if release.rope_freqs is not None:
        table.insert(1, ("rope_freqs.weight", (release.rope_freqs,)))
    return SparseRecipe(
        name=release.name,
        architecture=release.architecture,
        quantization="Q4_K_M",
        source=release.source,
        tokenizer=release.tokenizer,
        tensors=_q4_k_m(table, shape.n_layers, is_70b=release.is_70b),
        metadata=release.metadata,
        **shape.shape_fields(),
    )


def _gemma3_block(prefix: str, embd: int, q_width: int, kv_width: int, head_dim: int) -> Table:
    table = _dense_attention(prefix, embd, q_width, kv_width, biases=False)
    table += [
        (f"{prefix}attn_q_norm.weight", (head_dim,)),
        (f"{prefix}attn_k_norm.weight", (head_dim,)),
        (f"{prefix}post_attention_norm.weight", (embd,)),
    ]
    return [*table, *_dense_ffn(prefix, embd, 15360), (f"{prefix}post_ffw_norm.weight", (embd,))]


def _gemma3_12b() -> SparseRecipe:
    # Shapes: google/gemma-3-12b-it config.json text_config (hidden 3840, 48 layers, 16 heads,
    # 8 KV heads, head_dim 256, intermediate 15360, vocab 262208, sliding_window 1024, every
    # 6th layer global, max positions 131072). File: bartowski google_gemma-3-12b-it-GGUF
    # Q4_K_M, 7.30 GB; the output is tied to token_embd (Q6_K, as llama-quantize gives it).
    n_layers, embd, vocab = 48, 3840, 262208
    table: Table = [("token_embd.weight", (embd, vocab))]
    for layer in range(n_layers):
        table += _gemma3_block(f"blk.{layer}.", embd, 16 * 256, 8 * 256, 256)
    table.append(("output_norm.weight", (embd,)))
    rows = tuple(
        TensorRow(row.name, row.ne, "Q6_K") if row.name == "token_embd.weight" else row
        for row in _q4_k_m(table, n_layers)
    )
    return SparseRecipe(
        name="gemma-3-12b-q4_k_m",
        architecture="gemma3",
        quantization="Q4_K_M",
        source="google/gemma-3-12b-it config.json; bartowski Q4_K_M GGUF metadata",
        n_layers=n_layers,
        n_embd=embd,
        n_head=16,
        n_head_kv=8,
        head_dim_k=256,
        head_dim_v=256,
        n_ff=15360,
        vocab_size=vocab,
        context_length=131072,
        tokenizer=TokenizerShape("llama", "default", vocab, 0, 2, 1),
        tensors=rows,
        metadata={
            "gemma3.rope.freq_base": 1000000.0,
            "gemma3.attention.layer_norm_rms_epsilon": 1e-6,
        },
        sliding_window=1024,
        swa_layers=tuple(layer for layer in range(n_layers) if (layer + 1) % 6),
    )


def _gpt_oss_block(prefix: str) -> list[TensorRow]:
    embd, q_width, kv_width, experts, expert_ff = 2880, 4096, 512, 32, 2880
    rows = [
        TensorRow(f"{prefix}attn_norm.weight", (embd,), "F32"),
        TensorRow(f"{prefix}attn_q.weight", (embd, q_width), "Q8_0"),
        TensorRow(f"{prefix}attn_q.bias", (q_width,), "F32"),
        TensorRow(f"{prefix}attn_k.weight", (embd, kv_width), "Q8_0"),
        TensorRow(f"{prefix}attn_k.bias", (kv_width,), "F32"),
        TensorRow(f"{prefix}attn_v.weight", (embd, kv_width), "Q8_0"),
        TensorRow(f"{prefix}attn_v.bias", (kv_width,), "F32"),
        TensorRow(f"{prefix}attn_output.weight", (q_width, embd), "Q8_0"),
        TensorRow(f"{prefix}attn_output.bias", (embd,), "F32"),
        TensorRow(f"{prefix}attn_sinks.weight", (64,), "F32"),  # one learned sink per head
        TensorRow(f"{prefix}post_attention_norm.weight", (embd,), "F32"),
        TensorRow(f"{prefix}ffn_gate_inp.weight", (embd, experts), "F32"),
        TensorRow(f"{prefix}ffn_gate_inp.bias", (experts,), "F32"),
    ]
    for kind, ne in (
        ("gate", (embd, expert_ff)),
        ("up", (embd, expert_ff)),
        ("down", (expert_ff, embd)),
    ):
        rows.append(TensorRow(f"{prefix}ffn_{kind}_exps.weight", (*ne, experts), "MXFP4"))
        rows.append(TensorRow(f"{prefix}ffn_{kind}_exps.bias", (ne[1], experts), "F32"))
    return rows


def _gpt_oss_20b() -> SparseRecipe:
    # Shapes: openai/gpt-oss-20b config.json (hidden 2880, 24 layers, 64 heads of 64, 8 KV
    # heads, 32 local experts of 2880, 4 per token, sliding window 128 on alternate layers
    # starting with layer 0, vocab 201088, 131072 context, rope_theta 150000, YaRN x32 from
    # 4096). File: ggml-org/gpt-oss-20b-GGUF gpt-oss-20b-mxfp4.gguf, 12.1 GB, 459 tensors:
    # experts MXFP4, embeddings/attention/output Q8_0, norms, biases, sinks and router F32.
    rows = [TensorRow("token_embd.weight", (2880, 201088), "Q8_0")]
    for layer in range(24):
        rows += _gpt_oss_block(f"blk.{layer}.")
    rows += [
        TensorRow("output_norm.weight", (2880,), "F32"),
        TensorRow("output.weight", (2880, 201088), "Q8_0"),
    ]
    return SparseRecipe(
        name="gpt-oss-20b-mxfp4",
        architecture="gpt-oss",
        quantization="MXFP4",
        source="openai/gpt-oss-20b config.json; ggml-org/gpt-oss-20b-GGUF metadata",
        n_layers=24,
        n_embd=2880,
        n_head=64,
        n_head_kv=8,
        head_dim_k=64,
        head_dim_v=64,
        n_ff=2880,
        vocab_size=201088,
        context_length=131072,
        tokenizer=TokenizerShape("gpt2", "gpt-4o", 201088, 446189, 199998, 200002),
        tensors=tuple(rows),
        sliding_window=128,
        swa_layers=tuple(range(0, 24, 2)),  # llama.cpp: set_swa_pattern(2), even layers slide
        n_experts=32,
        n_experts_used=4,
        expert_ff_length=2880,
        metadata={
            "gpt-oss.attention.layer_norm_rms_epsilon": 1e-5,
            "gpt-oss.rope.freq_base": 150000.0,
            "gpt-oss.rope.scaling.type": "yarn",
            "gpt-oss.rope.scaling.factor": 32.0,
            "gpt-oss.rope.scaling.original_context_length": 4096,
        },
    )


@dataclass(frozen=True)
class _MlaMoe:
    """The DeepSeek-V3 family's dimensions (deepseek2 architecture in llama.cpp)."""

    n_layers: int
    n_dense: int  # leading dense blocks (first_k_dense_replace)
    n_head: int
    n_experts: int
    vocab: int
    split_kv_b: bool  # MLA-era GGUFs store attn_k_b / attn_v_b instead of attn_kv_b
    embd: int = 7168
    ff: int = 18432
    expert_ff: int = 2048
    q_lora: int = 1536
    kv_lora: int = 512
    rope: int = 64
    nope: int = 128
    v_head: int = 128


def _mla_attention(prefix: str, dims: _MlaMoe) -> Table:
    heads, key_dim = dims.n_head, dims.nope + dims.rope
    table: Table = [
        (f"{prefix}attn_norm.weight", (dims.embd,)),
        (f"{prefix}attn_q_a_norm.weight", (dims.q_lora,)),
        (f"{prefix}attn_kv_a_norm.weight", (dims.kv_lora,)),
        (f"{prefix}attn_q_a.weight", (dims.embd, dims.q_lora)),
        (f"{prefix}attn_q_b.weight", (dims.q_lora, heads * key_dim)),
        (f"{prefix}attn_kv_a_mqa.weight", (dims.embd, dims.kv_lora + dims.rope)),
    ]
    if dims.split_kv_b:
        table += [
            (f"{prefix}attn_k_b.weight", (dims.nope, dims.kv_lora, heads)),
            (f"{prefix}attn_v_b.weight", (dims.kv_lora, dims.v_head, heads)),
        ]
    else:
        table.append(
            (f"{prefix}attn_kv_b.weight", (dims.kv_lora, heads * (dims.nope + dims.v_head)))
        )
    return [*table, (f"{prefix}attn_output.weight", (heads * dims.v_head, dims.embd))]


def _mla_moe_ffn(prefix: str, dims: _MlaMoe) -> Table:
    embd, expert_ff, experts = dims.embd, dims.expert_ff, dims.n_experts
    return [
        (f"{prefix}ffn_norm.weight", (embd,)),
        (f"{prefix}ffn_gate_inp.weight", (embd, experts)),
        (f"{prefix}exp_probs_b.bias", (experts,)),
        (f"{prefix}ffn_gate_exps.weight", (embd, expert_ff, experts)),
        (f"{prefix}ffn_up_exps.weight", (embd, expert_ff, experts)),
        (f"{prefix}ffn_down_exps.weight", (expert_ff, embd, experts)),
        (f"{prefix}ffn_gate_shexp.weight", (embd, expert_ff)),
        (f"{prefix}ffn_up_shexp.weight", (embd, expert_ff)),
        (f"{prefix}ffn_down_shexp.weight", (expert_ff, embd)),
    ]


def _mla_moe_table(dims: _MlaMoe) -> Table:
    table: Table = [("token_embd.weight", (dims.embd, dims.vocab))]
    for layer in range(dims.n_layers):
        prefix = f"blk.{layer}."
        table += _mla_attention(prefix, dims)
        if layer < dims.n_dense:
            table += _dense_ffn(prefix, dims.embd, dims.ff)
        else:
            table += _mla_moe_ffn(prefix, dims)
    return [
        *table,
        ("output_norm.weight", (dims.embd,)),
        ("output.weight", (dims.embd, dims.vocab)),
    ]


def _deepseek2_metadata(dims: _MlaMoe) -> dict[str, MetadataValue]:
    """deepseek2 keys as convert_hf_to_gguf writes them, beyond _common_metadata's."""
    return {
        "deepseek2.leading_dense_block_count": dims.n_dense,
        "deepseek2.expert_weights_norm": True,
        "deepseek2.expert_gating_func": 2,  # sigmoid
        "deepseek2.attention.layer_norm_rms_epsilon": 1e-6,
        "deepseek2.rope.scaling.type": "yarn",
        "deepseek2.rope.scaling.original_context_length": 4096,
        "deepseek2.rope.scaling.yarn_log_multiplier": 0.1,
    }


def _mla_recipe(
    name: str,
    source: str,
    dims: _MlaMoe,
    *,
    context: int,
    extra: dict[str, MetadataValue],
    tokenizer: TokenizerShape,
    split_count: int,
) -> SparseRecipe:
    key_length_mla = dims.nope + dims.rope if dims.split_kv_b else None
    value_length_mla = dims.v_head if dims.split_kv_b else None
    return SparseRecipe(
        name=name,
        architecture="deepseek2",
        quantization="Q4_K_M",
        source=source,
        n_layers=dims.n_layers,
        n_embd=dims.embd,
        n_head=dims.n_head,
        n_head_kv=1 if dims.split_kv_b else dims.n_head,
        head_dim_k=dims.kv_lora + dims.rope if dims.split_kv_b else dims.nope + dims.rope,
        head_dim_v=dims.kv_lora if dims.split_kv_b else dims.v_head,
        n_ff=dims.ff,
        vocab_size=dims.vocab,
        context_length=context,
        tensors=_q4_k_m(_mla_moe_table(dims), dims.n_layers),
        metadata=_deepseek2_metadata(dims) | extra,
        n_experts=dims.n_experts,
        n_experts_used=8,
        n_experts_shared=1,
        expert_ff_length=dims.expert_ff,
        mla=MlaDims(dims.kv_lora, dims.q_lora, dims.rope, key_length_mla, value_length_mla),
        tokenizer=tokenizer,
        default_split_count=split_count,
    )


def _deepseek_v3() -> SparseRecipe:
    # Shapes: deepseek-ai/DeepSeek-V3 config.json (hidden 7168, 61 layers of which
    # first_k_dense_replace=3 dense, 128 heads, q_lora_rank 1536, kv_lora_rank 512,
    # qk_nope 128 + qk_rope 64, v_head 128, 256 routed experts of 2048 + 1 shared, 8 per
    # token, sigmoid routing scaled 2.5, vocab 129280, 163840 positions, YaRN x40 from 4096).
    # File: unsloth/DeepSeek-V3-GGUF Q4_K_M (legacy attn_kv_b layout, 1025 tensors,
    # about 404 GB in 9 shards; the MTP layer 61 is not converted).
    dims = _MlaMoe(
        n_layers=61, n_dense=3, n_head=128, n_experts=256, vocab=129280, split_kv_b=False
    )
    return _mla_recipe(
        "deepseek-v3-q4_k_m",
        "deepseek-ai/DeepSeek-V3 config.json; unsloth/DeepSeek-V3-GGUF Q4_K_M metadata",
        dims,
        context=163840,
        extra={
            "deepseek2.expert_weights_scale": 2.5,
            "deepseek2.rope.freq_base": 10000.0,
            "deepseek2.rope.scaling.factor": 40.0,
        },
        tokenizer=TokenizerShape("gpt2", "deepseek-v3", 129280, 127741, 0, 1),
        split_count=9,
    )


def _kimi_k2() -> SparseRecipe:
    # Shapes: moonshotai/Kimi-K2-Instruct config.json (DeepSeek-V3 design: hidden 7168,
    # 61 layers with first_k_dense_replace=1, 64 heads, q_lora 1536, kv_lora 512, qk_nope 128 +
    # qk_rope 64, v_head 128, 384 routed experts of 2048 + 1 shared, 8 per token, scaling
    # 2.827, vocab 163840, 131072 positions, rope_theta 50000, YaRN x32 from 4096): about
    # 1.03T parameters. File: unsloth/Kimi-K2-Instruct-GGUF Q4_K_M, MLA-era layout
    # (attn_k_b / attn_v_b, key_length 576 / value_length 512, *_mla 192 / 128), split in 13.
    # attn_k_b rows are 128 long, so Q4_K_M falls back to Q5_0 for them.
    dims = _MlaMoe(n_layers=61, n_dense=1, n_head=64, n_experts=384, vocab=163840, split_kv_b=True)
    return _mla_recipe(
        "kimi-k2-q4_k_m",
        "moonshotai/Kimi-K2-Instruct config.json; unsloth/Kimi-K2-Instruct-GGUF Q4_K_M metadata",
        dims,
        context=131072,
        extra={
            "deepseek2.expert_weights_scale": 2.827,
            "deepseek2.rope.freq_base": 50000.0,
            "deepseek2.rope.scaling.factor": 32.0,
        },
        tokenizer=TokenizerShape("gpt2", "kimi-k2", 163840, 163328, 163584, 163585),
        split_count=13,
    )


_FILE_TYPES = {
    "Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M,
    "MXFP4": gguf.LlamaFileType.MOSTLY_MXFP4_MOE,
}


def _common_metadata(recipe: SparseRecipe) -> dict[str, MetadataValue]:
    """The keys that follow from the recipe's own figures, so the two cannot disagree.

    Head sizes are written only when they are not ``n_embd / n_head``, as converters do.
    """
    arch = recipe.architecture
    metadata: dict[str, MetadataValue] = {
        "general.name": recipe.name,
        "general.file_type": int(_FILE_TYPES[recipe.quantization]),
        "general.quantization_version": gguf.GGML_QUANT_VERSION,
        f"{arch}.block_count": recipe.n_layers,
        f"{arch}.context_length": recipe.context_length,
        f"{arch}.embedding_length": recipe.n_embd,
        f"{arch}.feed_forward_length": recipe.n_ff,
        f"{arch}.attention.head_count": recipe.n_head,
        f"{arch}.attention.head_count_kv": recipe.n_head_kv,
        f"{arch}.vocab_size": recipe.vocab_size,
    }
    if recipe.head_dim_k * recipe.n_head != recipe.n_embd:
        metadata[f"{arch}.attention.key_length"] = recipe.head_dim_k
        metadata[f"{arch}.attention.value_length"] = recipe.head_dim_v
    if recipe.sliding_window:
        metadata[f"{arch}.attention.sliding_window"] = recipe.sliding_window
    return metadata | _expert_metadata(recipe) | _mla_metadata(recipe)


def _expert_metadata(recipe: SparseRecipe) -> dict[str, MetadataValue]:
    arch = recipe.architecture
    metadata: dict[str, MetadataValue] = {}
    if recipe.n_experts:
        metadata[f"{arch}.expert_count"] = recipe.n_experts
        metadata[f"{arch}.expert_used_count"] = recipe.n_experts_used
    if recipe.expert_ff_length:
        metadata[f"{arch}.expert_feed_forward_length"] = recipe.expert_ff_length
    if recipe.n_experts_shared:
        metadata[f"{arch}.expert_shared_count"] = recipe.n_experts_shared
    return metadata


def _mla_metadata(recipe: SparseRecipe) -> dict[str, MetadataValue]:
    arch, mla = recipe.architecture, recipe.mla
    metadata: dict[str, MetadataValue] = {}
    if mla is not None:
        metadata[f"{arch}.attention.q_lora_rank"] = mla.q_lora_rank
        metadata[f"{arch}.attention.kv_lora_rank"] = mla.kv_lora_rank
        metadata[f"{arch}.rope.dimension_count"] = mla.rope_dim
    if mla is not None and mla.key_length_mla and mla.value_length_mla:
        metadata[f"{arch}.attention.key_length_mla"] = mla.key_length_mla
        metadata[f"{arch}.attention.value_length_mla"] = mla.value_length_mla
    return metadata


_RECIPES: tuple[SparseRecipe, ...] = (
    *(_dense_recipe(release) for release in _DENSE_RELEASES),
    _gemma3_12b(),
    _gpt_oss_20b(),
    _deepseek_v3(),
    _kimi_k2(),
)
SPARSE_MODELS: dict[str, SparseRecipe] = {recipe.name: recipe for recipe in _RECIPES}
"""Every sparse model by name: ``write_sparse_model(folder, name)`` writes one."""
