"""GGUF metadata to ModelSpec: every field compared with what the test wrote.

Each model is written with gguf-py's GGUFWriter (its own key names), with a
tensor table but no weights (the data region is a hole made by truncate), and
the byte figures are recomputed here from the shapes and gguf-py's
GGML_QUANT_SIZES, independently of yoyu's ggml type table.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q

from yoyu.errors import ModelFileError
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.models.spec import MlaDims, ModelSpec

Row = tuple[str, tuple[int, ...], Q]  # tensor name, ggml-order shape (ne[0] first), type
AddMetadata = Callable[[gguf.GGUFWriter], None]


def padded(n_bytes: int) -> int:
    return -(-n_bytes // 32) * 32


def row_bytes(row: Row) -> int:
    _, ne, qtype = row
    block, type_size = GGML_QUANT_SIZES[qtype]
    return math.prod(ne) // block * type_size


def write_model(
    path: Path, arch: str, add: AddMetadata, rows: Sequence[Row], split_max_size: int = 0
) -> list[Path]:
    """Header and tensor table via GGUFWriter; the data region is a sparse hole."""
    writer = gguf.GGUFWriter(path, arch, split_max_size=split_max_size)
    add(writer)
    for name, ne, qtype in rows:
        shape = list(reversed(ne))  # GGUFWriter takes numpy order and writes ne[0] first
        writer.add_tensor_info(
            name, shape, np.dtype(np.float32), row_bytes((name, ne, qtype)), qtype
        )
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    assert writer.fout is not None
    for fout, tensors in zip(writer.fout, writer.tensors, strict=True):
        data_start = padded(fout.tell())
        fout.truncate(data_start + sum(padded(info.nbytes) for info in tensors.values()))
    writer.close()
    return writer.format_shard_names(path)


def figures(
    rows: Sequence[Row], n_layers: int, n_experts: int = 0, used: int = 0
) -> dict[str, Any]:
    """The byte and parameter totals of a tensor table, computed from scratch."""
    layer_bytes = [0] * n_layers
    type_bytes: dict[str, int] = {}
    nonrepeating = params = expert_params = 0
    for row in rows:
        name, ne, qtype = row
        n_bytes = row_bytes(row)
        type_bytes[qtype.name] = type_bytes.get(qtype.name, 0) + n_bytes
        params += math.prod(ne)
        if "_exps." in name:
            expert_params += math.prod(ne)
        block = re.match(r"blk\.(\d+)\.", name)
        if block:
            layer_bytes[int(block.group(1))] += n_bytes
        else:
            nonrepeating += n_bytes
    active = params - expert_params + expert_params * used // n_experts if n_experts else params
    return {
        "params_total": params,
        "params_active": active,
        "tensor_bytes": sum(row_bytes(row) for row in rows),
        "layer_bytes": tuple(layer_bytes),
        "nonrepeating_bytes": nonrepeating,
        "type_bytes": type_bytes,
    }


def assert_spec(spec: ModelSpec, rows: Sequence[Row], **expected: Any) -> None:
    """Compare every ModelSpec field; a field this test forgot is a failure too."""
    unchecked = {f.name for f in dataclasses.fields(ModelSpec)} - set(expected) - {"tensors"}
    assert not unchecked, f"test does not check {sorted(unchecked)}"
    assert {key: getattr(spec, key) for key in expected} == expected
    assert [(t.name, t.shape, t.type_name) for t in spec.tensors] == [
        (name, ne, qtype.name) for name, ne, qtype in rows
    ]


def common(path: Path, paths: Sequence[Path] | None = None) -> dict[str, Any]:
    parts = list(paths or [path])
    return {
        "format": "gguf",
        "paths": tuple(str(p) for p in parts),
        "file_bytes": sum(p.stat().st_size for p in parts),
        "chat_template": False,  # these files carry none; see the template test
        "chat_template_text": None,
        "longest_token_bytes": None,  # no token list in these files
    }


def no_extras() -> dict[str, Any]:
    return {
        "n_head_kv_layers": (),
        "sliding_window": None,
        "swa_layers": (),
        "n_experts": 0,
        "n_experts_used": 0,
        "n_experts_shared": 0,
        "expert_ff_length": None,
        "mla": None,
    }


def dense_rows(n_layers: int, embd: int, q_dim: int, kv_dim: int, ff: int, vocab: int) -> list[Row]:
    rows: list[Row] = [("token_embd.weight", (embd, vocab), Q.Q4_K)]
    for layer in range(n_layers):
        p = f"blk.{layer}."
        rows += [
            (p + "attn_norm.weight", (embd,), Q.F32),
            (p + "attn_q.weight", (embd, q_dim), Q.Q4_K),
            (p + "attn_k.weight", (embd, kv_dim), Q.Q4_K),
            (p + "attn_v.weight", (embd, kv_dim), Q.Q6_K),
            (p + "attn_output.weight", (q_dim, embd), Q.Q4_K),
            (p + "ffn_norm.weight", (embd,), Q.F32),
            (p + "ffn_gate.weight", (embd, ff), Q.Q4_K),
            (p + "ffn_up.weight", (embd, ff), Q.Q4_K),
            (p + "ffn_down.weight", (ff, embd), Q.Q6_K),
        ]
    rows += [("output_norm.weight", (embd,), Q.F32), ("output.weight", (embd, vocab), Q.Q6_K)]
    return rows


def basic_hparams(
    writer: gguf.GGUFWriter, *, layers: int, embd: int, heads: Any, kv_heads: Any, ff: Any
) -> None:
    writer.add_block_count(layers)
    writer.add_embedding_length(embd)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_feed_forward_length(ff)
    writer.add_context_length(4096)


# -- dense architectures ----------------------------------------------------------------


def test_llama_with_grouped_query_attention(tmp_path: Path) -> None:
    rows = dense_rows(4, embd=256, q_dim=256, kv_dim=64, ff=512, vocab=300)

    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_name("Tiny Llama")
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
        basic_hparams(writer, layers=4, embd=256, heads=8, kv_heads=2, ff=512)
        writer.add_token_list([f"t{i}" for i in range(300)])

    path = tmp_path / "llama.gguf"
    write_model(path, "llama", add, rows)
    spec = read_gguf_model(path)
    assert_spec(
        spec,
        rows,
        name="Tiny Llama",
        architecture="llama",
        quantization="Q4_K_M",
        n_layers=4,
        n_embd=256,
        n_head=8,
        n_head_kv=2,
        head_dim_k=32,  # no key_length: n_embd / n_head
        head_dim_v=32,
        n_ff=512,
        vocab_size=300,
        context_length=4096,
        **{**common(path), "longest_token_bytes": 4},  # "t299"
        **figures(rows, 4),
        **no_extras(),
    )
    assert spec.file_bytes > spec.tensor_bytes  # the hole counts: the header is extra


def test_qwen3_head_dim_comes_from_key_length_not_embd_over_heads(tmp_path: Path) -> None:
    rows = dense_rows(2, embd=256, q_dim=8 * 128, kv_dim=2 * 128, ff=512, vocab=500)

    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_name("Tiny Qwen3")
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q6_K)
        basic_hparams(writer, layers=2, embd=256, heads=8, kv_heads=2, ff=512)
        writer.add_key_length(128)
        writer.add_value_length(128)
        writer.add_vocab_size(500)

    path = tmp_path / "qwen3.gguf"
    write_model(path, "qwen3", add, rows)
    assert_spec(
        read_gguf_model(path),
        rows,
        name="Tiny Qwen3",
        architecture="qwen3",
        quantization="Q6_K",
        n_layers=2,
        n_embd=256,
        n_head=8,
        n_head_kv=2,
        head_dim_k=128,  # 256 / 8 would be 32
        head_dim_v=128,
        n_ff=512,
        vocab_size=500,
        context_length=4096,
        **common(path),
        **figures(rows, 2),
        **no_extras(),
    )


def test_per_layer_arrays_for_heads_and_feed_forward(tmp_path: Path) -> None:
    rows = dense_rows(4, embd=256, q_dim=256, kv_dim=128, ff=512, vocab=64)

    def add(writer: gguf.GGUFWriter) -> None:
        heads, kv_heads, ff = [8, 8, 8, 8], [2, 4, 0, 4], [512, 256, 512, 128]
        basic_hparams(writer, layers=4, embd=256, heads=heads, kv_heads=kv_heads, ff=ff)

    path = tmp_path / "Varied-Model.gguf"
    write_model(path, "llama", add, rows)
    assert_spec(
        read_gguf_model(path),
        rows,
        name="Varied-Model",  # no general.name: the file stem
        architecture="llama",
        quantization="Q4_K",  # no general.file_type: the type holding the most bytes
        n_layers=4,
        n_embd=256,
        n_head=8,
        n_head_kv=4,
        head_dim_k=32,
        head_dim_v=32,
        n_ff=512,
        vocab_size=64,  # no vocab_size, no token list: token_embd's second dimension
        context_length=4096,
        **common(path),
        **figures(rows, 4),
        **{**no_extras(), "n_head_kv_layers": (2, 4, 0, 4)},
    )


# -- sliding-window attention ----------------------------------------------------------


def swa_model(
    tmp_path: Path, arch: str, layers: int, add_swa: AddMetadata, name: str = "swa"
) -> tuple[ModelSpec, list[Row]]:
    rows = dense_rows(layers, embd=256, q_dim=8 * 64, kv_dim=4 * 64, ff=256, vocab=64)

    def add(writer: gguf.GGUFWriter) -> None:
        basic_hparams(writer, layers=layers, embd=256, heads=8, kv_heads=4, ff=256)
        writer.add_key_length(64)
        writer.add_value_length(64)
        add_swa(writer)

    path = tmp_path / f"{name}.gguf"
    write_model(path, arch, add, rows)
    return read_gguf_model(path), rows


def test_gemma2_slides_on_even_layers(tmp_path: Path) -> None:
    spec, rows = swa_model(tmp_path, "gemma2", 6, lambda w: w.add_sliding_window(128))
    assert_spec(
        spec,
        rows,
        name="swa",
        architecture="gemma2",
        quantization="Q4_K",
        n_layers=6,
        n_embd=256,
        n_head=8,
        n_head_kv=4,
        head_dim_k=64,
        head_dim_v=64,
        n_ff=256,
        vocab_size=64,
        context_length=4096,
        **common(tmp_path / "swa.gguf"),
        **figures(rows, 6),
        **{**no_extras(), "sliding_window": 128, "swa_layers": (0, 2, 4)},
    )


def test_gemma2_without_a_window_key_uses_llamacpps_4096(tmp_path: Path) -> None:
    spec, _ = swa_model(tmp_path, "gemma2", 4, lambda w: None)
    assert (spec.sliding_window, spec.swa_layers) == (4096, (0, 2))


def test_gemma3_has_five_local_layers_then_one_global(tmp_path: Path) -> None:
    spec, _ = swa_model(tmp_path, "gemma3", 12, lambda w: w.add_sliding_window(512))
    assert spec.sliding_window == 512
    assert spec.swa_layers == (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)


def test_sliding_window_pattern_key_overrides_the_period(tmp_path: Path) -> None:
    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_sliding_window(512)
        writer.add_sliding_window_pattern(3)

    spec, _ = swa_model(tmp_path, "gemma3", 7, add)
    assert spec.swa_layers == (0, 1, 3, 4, 6)


def test_per_layer_pattern_flags_mark_each_layer(tmp_path: Path) -> None:
    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_sliding_window(1024)
        writer.add_sliding_window_pattern([True, True, False, True, False])

    spec, _ = swa_model(tmp_path, "gemma4", 5, add)
    assert (spec.sliding_window, spec.swa_layers) == (1024, (0, 1, 3))


def test_unknown_architecture_with_a_pattern_uses_it(tmp_path: Path) -> None:
    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_sliding_window(2048)
        writer.add_sliding_window_pattern(4)

    spec, _ = swa_model(tmp_path, "newarch", 8, add)
    assert (spec.sliding_window, spec.swa_layers) == (2048, (0, 1, 2, 4, 5, 6))


def test_window_without_pattern_on_a_plain_architecture_is_full_attention(
    tmp_path: Path,
) -> None:
    spec, _ = swa_model(tmp_path, "llama", 4, lambda w: w.add_sliding_window(4096))
    assert (spec.sliding_window, spec.swa_layers) == (None, ())


def test_phi3_sliding_window_is_disabled_as_in_llamacpp(tmp_path: Path) -> None:
    spec, _ = swa_model(tmp_path, "phi3", 4, lambda w: w.add_sliding_window(2047))
    assert (spec.sliding_window, spec.swa_layers) == (None, ())


def test_gemma3_with_window_zero_is_full_attention(tmp_path: Path) -> None:
    spec, _ = swa_model(tmp_path, "gemma3", 6, lambda w: w.add_sliding_window(0))
    assert (spec.sliding_window, spec.swa_layers) == (None, ())


# -- mixtures of experts ----------------------------------------------------------------


def moe_rows(
    layers: int, embd: int, experts: int, expert_ff: int, expert_type: Q, down_type: Q
) -> list[Row]:
    rows: list[Row] = [("token_embd.weight", (embd, 128), Q.Q8_0)]
    for layer in range(layers):
        p = f"blk.{layer}."
        rows += [
            (p + "attn_norm.weight", (embd,), Q.F32),
            (p + "attn_q.weight", (embd, 512), Q.Q8_0),
            (p + "attn_k.weight", (embd, 128), Q.Q8_0),
            (p + "attn_v.weight", (embd, 128), Q.Q8_0),
            (p + "attn_output.weight", (512, embd), Q.Q8_0),
            (p + "ffn_norm.weight", (embd,), Q.F32),
            (p + "ffn_gate_inp.weight", (embd, experts), Q.F32),
            (p + "ffn_gate_exps.weight", (embd, expert_ff, experts), expert_type),
            (p + "ffn_up_exps.weight", (embd, expert_ff, experts), expert_type),
            (p + "ffn_down_exps.weight", (expert_ff, embd, experts), down_type),
        ]
    rows += [("output_norm.weight", (embd,), Q.F32), ("output.weight", (embd, 128), Q.Q8_0)]
    return rows


def test_qwen3moe_counts_every_expert_in_memory_and_used_ones_as_active(tmp_path: Path) -> None:
    rows = moe_rows(3, embd=256, experts=8, expert_ff=128, expert_type=Q.Q4_K, down_type=Q.Q8_0)

    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_name("Tiny Qwen3 MoE")
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_S)
        basic_hparams(writer, layers=3, embd=256, heads=4, kv_heads=1, ff=768)
        writer.add_key_length(128)
        writer.add_value_length(128)
        writer.add_expert_count(8)
        writer.add_expert_used_count(2)
        writer.add_expert_feed_forward_length(128)
        writer.add_token_list([f"t{i}" for i in range(2000)])  # kept only as a count

    path = tmp_path / "qwen3moe.gguf"
    write_model(path, "qwen3moe", add, rows)
    spec = read_gguf_model(path)
    assert_spec(
        spec,
        rows,
        name="Tiny Qwen3 MoE",
        architecture="qwen3moe",
        quantization="Q4_K_S",
        n_layers=3,
        n_embd=256,
        n_head=4,
        n_head_kv=1,
        head_dim_k=128,
        head_dim_v=128,
        n_ff=768,
        vocab_size=2000,
        context_length=4096,
        **{**common(path), "longest_token_bytes": 5},  # "t1999"
        **figures(rows, 3, n_experts=8, used=2),
        **{**no_extras(), "n_experts": 8, "n_experts_used": 2, "expert_ff_length": 128},
    )
    assert spec.params_active < spec.params_total
    assert spec.is_moe


def test_gpt_oss_mxfp4_experts_and_alternating_sliding_window(tmp_path: Path) -> None:
    rows = moe_rows(4, embd=256, experts=32, expert_ff=256, expert_type=Q.MXFP4, down_type=Q.MXFP4)

    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_name("Tiny gpt-oss")
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_MXFP4_MOE)
        basic_hparams(writer, layers=4, embd=256, heads=8, kv_heads=2, ff=256)
        writer.add_key_length(64)
        writer.add_value_length(64)
        writer.add_sliding_window(128)
        writer.add_expert_count(32)
        writer.add_expert_used_count(4)
        writer.add_expert_feed_forward_length(256)

    path = tmp_path / "gpt-oss.gguf"
    write_model(path, "gpt-oss", add, rows)
    spec = read_gguf_model(path)
    assert_spec(
        spec,
        rows,
        name="Tiny gpt-oss",
        architecture="gpt-oss",
        quantization="MXFP4",
        n_layers=4,
        n_embd=256,
        n_head=8,
        n_head_kv=2,
        head_dim_k=64,
        head_dim_v=64,
        n_ff=256,
        vocab_size=128,
        context_length=4096,
        **common(path),
        **figures(rows, 4, n_experts=32, used=4),
        **{
            **no_extras(),
            "sliding_window": 128,
            "swa_layers": (0, 2),
            "n_experts": 32,
            "n_experts_used": 4,
            "expert_ff_length": 256,
        },
    )
    assert max(spec.type_bytes, key=spec.type_bytes.__getitem__) == "MXFP4"


# -- multi-head latent attention -------------------------------------------------------

MLA = {"kv_lora": 128, "q_lora": 192, "rope": 32, "nope": 64, "v": 64, "heads": 4}


def mla_rows(layers: int, embd: int, experts: int, expert_ff: int, vocab: int) -> list[Row]:
    heads, q_head = MLA["heads"], MLA["nope"] + MLA["rope"]
    rows: list[Row] = [("token_embd.weight", (embd, vocab), Q.Q8_0)]
    for layer in range(layers):
        p = f"blk.{layer}."
        rows += [
            (p + "attn_norm.weight", (embd,), Q.F32),
            (p + "attn_q_a.weight", (embd, MLA["q_lora"]), Q.Q8_0),
            (p + "attn_q_a_norm.weight", (MLA["q_lora"],), Q.F32),
            (p + "attn_q_b.weight", (MLA["q_lora"], heads * q_head), Q.Q8_0),
            (p + "attn_kv_a_mqa.weight", (embd, MLA["kv_lora"] + MLA["rope"]), Q.Q8_0),
            (p + "attn_kv_a_norm.weight", (MLA["kv_lora"],), Q.F32),
            (p + "attn_k_b.weight", (MLA["nope"], MLA["kv_lora"], heads), Q.Q8_0),
            (p + "attn_v_b.weight", (MLA["kv_lora"], MLA["v"], heads), Q.Q8_0),
            (p + "attn_output.weight", (heads * MLA["v"], embd), Q.Q8_0),
            (p + "ffn_norm.weight", (embd,), Q.F32),
        ]
        if layer == 0:  # leading dense block
            rows += [
                (p + "ffn_gate.weight", (embd, 512), Q.Q4_K),
                (p + "ffn_up.weight", (embd, 512), Q.Q4_K),
                (p + "ffn_down.weight", (512, embd), Q.Q6_K),
            ]
        else:
            rows += [
                (p + "ffn_gate_inp.weight", (embd, experts), Q.F32),
                (p + "exp_probs_b.bias", (experts,), Q.F32),
                (p + "ffn_gate_exps.weight", (embd, expert_ff, experts), Q.Q4_K),
                (p + "ffn_up_exps.weight", (embd, expert_ff, experts), Q.Q4_K),
                (p + "ffn_down_exps.weight", (expert_ff, embd, experts), Q.Q6_K),
                (p + "ffn_gate_shexp.weight", (embd, expert_ff), Q.Q4_K),
                (p + "ffn_up_shexp.weight", (embd, expert_ff), Q.Q4_K),
                (p + "ffn_down_shexp.weight", (expert_ff, embd), Q.Q6_K),
            ]
    rows += [("output_norm.weight", (embd,), Q.F32), ("output.weight", (embd, vocab), Q.Q6_K)]
    return rows


def add_mla_metadata(
    writer: gguf.GGUFWriter, layers: int, embd: int, experts: int, expert_ff: int, vocab: int
) -> None:
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_block_count(layers)
    writer.add_embedding_length(embd)
    writer.add_context_length(163840)
    writer.add_feed_forward_length(512)
    writer.add_head_count(MLA["heads"])
    writer.add_head_count_kv([1] * layers)  # MLA caches one latent "head" per layer
    writer.add_key_length(MLA["kv_lora"] + MLA["rope"])
    writer.add_value_length(MLA["kv_lora"])
    writer.add_key_length_mla(MLA["nope"] + MLA["rope"])
    writer.add_value_length_mla(MLA["v"])
    writer.add_rope_dimension_count(MLA["rope"])
    writer.add_q_lora_rank(MLA["q_lora"])
    writer.add_kv_lora_rank(MLA["kv_lora"])
    writer.add_expert_count(experts)
    writer.add_expert_used_count(8)
    writer.add_expert_shared_count(1)
    writer.add_expert_feed_forward_length(expert_ff)
    writer.add_leading_dense_block_count(1)
    writer.add_vocab_size(vocab)


def test_deepseek2_latent_attention_and_shared_experts(tmp_path: Path) -> None:
    rows = mla_rows(3, embd=256, experts=16, expert_ff=256, vocab=256)

    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_name("Tiny DeepSeek")
        add_mla_metadata(writer, 3, embd=256, experts=16, expert_ff=256, vocab=256)

    path = tmp_path / "deepseek2.gguf"
    write_model(path, "deepseek2", add, rows)
    assert_spec(
        read_gguf_model(path),
        rows,
        name="Tiny DeepSeek",
        architecture="deepseek2",
        quantization="Q4_K_M",
        n_layers=3,
        n_embd=256,
        n_head=4,
        n_head_kv=1,
        head_dim_k=160,  # kv_lora_rank + rope: what llama.cpp's MLA cache stores per token
        head_dim_v=128,
        n_ff=512,
        vocab_size=256,
        context_length=163840,
        **common(path),
        **figures(rows, 3, n_experts=16, used=8),
        **{
            **no_extras(),
            "n_experts": 16,
            "n_experts_used": 8,
            "n_experts_shared": 1,
            "expert_ff_length": 256,
            "mla": MlaDims(
                kv_lora_rank=128,
                q_lora_rank=192,
                rope_dim=32,
                key_length_mla=96,
                value_length_mla=64,
            ),
        },
    )


@pytest.mark.slow
def test_kimi_k2_shaped_split_model_reads_from_any_part(tmp_path: Path) -> None:
    """61 layers, 384 experts, ~600 GB in sparse parts: figures and bounded memory."""
    layers, embd, experts, expert_ff, vocab = 61, 7168, 384, 2048, 163840
    rows = mla_rows(layers, embd, experts, expert_ff, vocab)

    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_name("Kimi K2 shape")
        add_mla_metadata(writer, layers, embd, experts, expert_ff, vocab)
        writer.add_token_list([f"t{i}" for i in range(20000)])
        writer.add_token_merges([f"a{i} b{i}" for i in range(20000)])

    parts = write_model(tmp_path / "kimi.gguf", "deepseek2", add, rows, split_max_size=50 << 30)
    assert len(parts) > 10
    expected = figures(rows, layers, n_experts=experts, used=8)
    tracemalloc.start()
    try:
        specs = [read_gguf_model(parts[0]), read_gguf_model(parts[len(parts) // 2])]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for spec in specs:
        assert spec.name == "Kimi K2 shape"
        assert spec.paths == tuple(str(p) for p in parts)
        assert spec.file_bytes == sum(p.stat().st_size for p in parts) > 500 * 10**9
        assert (spec.n_layers, spec.n_experts, spec.n_experts_used) == (61, 384, 8)
        assert spec.vocab_size == vocab  # vocab_size key, not the 20000-token list
        assert spec.mla is not None and spec.mla.kv_lora_rank == 128
        assert {key: getattr(spec, key) for key in expected} == expected
        assert {t.file_index for t in spec.tensors} == set(range(len(parts)))
    assert specs[0].layer_bytes[0] < specs[0].layer_bytes[1]  # dense lead block vs MoE block
    assert peak < 16 << 20


# -- bad metadata -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("add", "fragment"),
    [
        (lambda w: w.add_string("llama.block_count", "four"), "llama.block_count is 'four'"),
        (lambda w: w.add_block_count(100_000), "llama.block_count is 100000, over llama.cpp"),
        (lambda w: w.add_int32("llama.attention.key_length", -5), "key_length is -5"),
        (
            lambda w: (w.add_block_count(2), w.add_head_count_kv([1, 2, 3])),
            "head_count_kv has 3 entries for a model of 2 layers",
        ),
        (
            lambda w: (w.add_block_count(2), w.add_float32("llama.context_length", 4096.0)),
            "llama.context_length is 4096.0, not a non-negative integer",
        ),
    ],
    ids=["string-count", "too-many-layers", "negative", "array-length", "float"],
)
def test_bad_metadata_is_a_one_line_model_file_error(
    tmp_path: Path, add: AddMetadata, fragment: str
) -> None:
    path = tmp_path / "bad.gguf"
    write_model(path, "llama", add, [("blk.0.attn_norm.weight", (32,), Q.F32)])
    with pytest.raises(ModelFileError) as caught:
        read_gguf_model(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "bad.gguf" in message and fragment in message


def test_file_without_an_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "noarch.gguf"
    write_model(path, "", lambda w: None, [])
    with pytest.raises(ModelFileError, match=r"no general\.architecture"):
        read_gguf_model(path)


def test_a_chat_template_in_the_file_is_seen(tmp_path: Path) -> None:
    rows = dense_rows(1, embd=256, q_dim=256, kv_dim=256, ff=512, vocab=300)

    def with_template(template: str) -> Callable[[gguf.GGUFWriter], None]:
        def add(writer: gguf.GGUFWriter) -> None:
            basic_hparams(writer, layers=1, embd=256, heads=4, kv_heads=4, ff=512)
            writer.add_chat_template(template)

        return add

    write_model(tmp_path / "t.gguf", "llama", with_template("{{ messages }}"), rows)
    spec = read_gguf_model(tmp_path / "t.gguf")
    assert spec.chat_template is True and spec.chat_template_text == "{{ messages }}"
    assert "chat_template_text" not in spec.to_dict()  # tens of KiB: the flag says it is there
    write_model(tmp_path / "blank.gguf", "llama", with_template("  "), rows)
    assert read_gguf_model(tmp_path / "blank.gguf").chat_template is False
