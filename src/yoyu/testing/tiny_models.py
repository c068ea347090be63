"""Small real GGUF models that llama.cpp loads and generates from in milliseconds.

Tests, benchmarks and the estimator's calibration need real files of known
shape: ``write_tiny_model`` writes one with random weights (seeded numpy),
a byte-level SPM vocabulary and the metadata llama.cpp requires for each
architecture, and returns the exact shape and byte figures it wrote, so a
test can compare a reader's answer (or llama.cpp's own report) with the
truth rather than with another reader.

Tensor names, shapes and required keys follow llama.cpp ``src/llama-arch.cpp``
(tensor names per architecture), ``src/llama-model.cpp`` (``load_hparams``
and ``load_tensors``) and gguf-py ``constants.py`` (``MODEL_TENSORS``):

- ``llama``: GQA attention, SwiGLU FFN; ``rope.dimension_count`` must equal
  the head size.
- ``qwen2``: llama's layout plus biases on q, k and v (required tensors).
- ``qwen3``: per-head q/k RMS norms and a head size that is not
  ``n_embd / n_head`` (given by ``attention.key_length``/``value_length``).
- ``gemma2``: sliding-window attention on the even layers (llama.cpp's
  ``set_swa_pattern(2)``), attention and final logit soft-capping, post-attention
  and post-FFN norms, output tied to the token embeddings.
- ``moe``: a Mixtral-style MoE in the ``llama`` architecture (``expert_count``,
  ``expert_used_count``, ``ffn_gate_inp`` router and merged
  ``ffn_{gate,up,down}_exps`` expert tensors, whose expert size is
  ``feed_forward_length``).

The tensor-table types and figures defined here (``TensorRow``,
``TableFigures``, ``table_figures``) are shared with ``sparse_models``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from yoyu.testing.vocab import add_spm_vocab, byte_spm_vocab

ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "qwen3", "gemma2", "moe")
_GGUF_ARCHITECTURE = {"moe": "llama"}
_LAYER_PREFIX = re.compile(r"^blk\.(\d+)\.")
_WEIGHT_SCALE = 0.05
_RMS_EPS = 1e-5
_GEMMA2_ATTN_SOFTCAP = 50.0  # Gemma 2's config.json values
_GEMMA2_FINAL_SOFTCAP = 30.0


@dataclass(frozen=True)
class TensorRow:
    """One entry of a GGUF tensor table; ``ne`` in ggml order (fastest dimension first)."""

    name: str
    ne: tuple[int, ...]
    type_name: str

    @property
    def qtype(self) -> gguf.GGMLQuantizationType:
        return gguf.GGMLQuantizationType[self.type_name]

    @property
    def n_elements(self) -> int:
        return math.prod(self.ne)

    @property
    def n_bytes(self) -> int:
        block_size, block_bytes = gguf.GGML_QUANT_SIZES[self.qtype]
        if self.ne[0] % block_size:
            raise ValueError(
                f"tensor {self.name}: row length {self.ne[0]} is not a multiple of "
                f"{self.type_name}'s block size {block_size}; choose a shape that divides"
            )
        return self.n_elements // block_size * block_bytes

    @property
    def layer(self) -> int | None:
        match = _LAYER_PREFIX.match(self.name)
        return int(match.group(1)) if match else None

    @property
    def is_expert(self) -> bool:
        """Routed-expert tensors (weights and per-expert biases), not shared experts."""
        return "_exps." in self.name


@dataclass(frozen=True)
class TableFigures:
    """The byte and parameter totals a reader must derive from the same table."""

    params_total: int
    params_active: int
    tensor_bytes: int
    layer_bytes: tuple[int, ...]
    nonrepeating_bytes: int
    type_bytes: dict[str, int]


def table_figures(
    rows: Iterable[TensorRow], n_layers: int, n_experts: int = 0, n_experts_used: int = 0
) -> TableFigures:
    """Sum a table: per block, outside blocks, per type; routed experts count
    ``n_experts_used / n_experts`` toward active parameters (floor of the total)."""
    layer_bytes = [0] * n_layers
    type_bytes: dict[str, int] = {}
    params_total = params_expert = nonrepeating_bytes = 0
    for row in rows:
        type_bytes[row.type_name] = type_bytes.get(row.type_name, 0) + row.n_bytes
        params_total += row.n_elements
        params_expert += row.n_elements if row.is_expert else 0
        if row.layer is None:
            nonrepeating_bytes += row.n_bytes
        else:
            layer_bytes[row.layer] += row.n_bytes
    params_active = params_total
    if n_experts:
        params_active = params_total - params_expert + params_expert * n_experts_used // n_experts
    return TableFigures(
        params_total=params_total,
        params_active=params_active,
        tensor_bytes=sum(type_bytes.values()),
        layer_bytes=tuple(layer_bytes),
        nonrepeating_bytes=nonrepeating_bytes,
        type_bytes=type_bytes,
    )


@dataclass(frozen=True)
class TinyShape:
    """Hyperparameters of a tiny model; ``head_dim`` 0 means the architecture's default."""

    n_layers: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 0
    n_ff: int = 128
    vocab_size: int = 288
    context_length: int = 4096  # room for any n_ctx a test asks for, without llama.cpp warnings
    sliding_window: int = 0
    n_experts: int = 0
    n_experts_used: int = 0


_ARCH_DEFAULTS: dict[str, dict[str, int]] = {
    "llama": {},
    "qwen2": {},
    "qwen3": {},
    "gemma2": {"n_layers": 4, "sliding_window": 32},
    "moe": {"n_experts": 4, "n_experts_used": 2},
}


@dataclass(frozen=True)
class TinyModel:
    """What ``write_tiny_model`` wrote: the path, the exact shape and the byte figures."""

    path: Path
    kind: str  # the name asked for ("moe")
    architecture: str  # general.architecture ("llama" for "moe")
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    vocab_size: int
    context_length: int
    sliding_window: int | None
    swa_layers: tuple[int, ...]
    n_experts: int
    n_experts_used: int
    weight_type: str
    params_total: int
    params_active: int
    tensor_bytes: int
    layer_bytes: tuple[int, ...]
    nonrepeating_bytes: int
    type_bytes: dict[str, int]
    file_bytes: int
    tensors: tuple[TensorRow, ...] = dataclasses.field(repr=False)


def write_tiny_model(
    path: Path,
    arch: str = "llama",
    *,
    seed: int = 0,
    weight_type: str = "F16",
    type_overrides: Mapping[str, str] | None = None,
    chat_template: str | None = None,
    **shape: int,
) -> TinyModel:
    """Write a tiny ``arch`` model to ``path`` and describe it.

    ``weight_type`` applies to every matrix (embeddings, attention, FFN,
    experts); norms, biases and the MoE router stay F32 as converters keep
    them. ``type_overrides`` maps a tensor role (its name without ``blk.N.``
    and ``.weight``: ``"output"``, ``"attn_v"``, ``"ffn_down_exps"``) to a type,
    e.g. to mimic a Q4_K_M mix. Types gguf-py cannot quantize (K-quants, IQ)
    are written as zero blocks: valid data that still exercises the kernels.
    ``chat_template`` is written as ``tokenizer.chat_template`` (none by default).
    ``shape`` overrides ``TinyShape`` fields (``n_layers=3``, ``n_embd=256``).
    """
    tiny_shape = _resolve_shape(arch, shape)
    rows = _tensor_rows(arch, tiny_shape, weight_type, type_overrides or {})
    rng = np.random.default_rng(seed)
    _write_gguf(path, arch, tiny_shape, rows, weight_type, rng, chat_template)
    return _describe(path, arch, tiny_shape, rows, weight_type)


def _resolve_shape(arch: str, overrides: Mapping[str, int]) -> TinyShape:
    if arch not in _ARCH_DEFAULTS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {ARCHITECTURES}")
    unknown = set(overrides) - {field.name for field in dataclasses.fields(TinyShape)}
    if unknown:
        raise ValueError(f"unknown shape fields {sorted(unknown)}; see TinyShape")
    shape = TinyShape(**{**_ARCH_DEFAULTS[arch], **overrides})
    if not shape.head_dim:
        per_head = shape.n_embd // shape.n_head
        shape = dataclasses.replace(shape, head_dim=2 * per_head if arch == "qwen3" else per_head)
    _check_shape(arch, shape)
    return shape


def _check_shape(arch: str, shape: TinyShape) -> None:
    problems = []
    if shape.n_head % shape.n_head_kv:
        problems.append(f"n_head {shape.n_head} is not a multiple of n_head_kv {shape.n_head_kv}")
    if shape.head_dim % 2:
        problems.append(f"head_dim {shape.head_dim} must be even for RoPE")
    if (arch == "moe") != (shape.n_experts > 0):
        problems.append("only the 'moe' architecture has experts (n_experts > 0)")
    if not 0 <= shape.n_experts_used <= shape.n_experts or (
        shape.n_experts and not shape.n_experts_used
    ):
        problems.append(f"n_experts_used must be in 1..{shape.n_experts} for a MoE")
    if (arch == "gemma2") != (shape.sliding_window > 0):
        problems.append("only 'gemma2' has a sliding window (sliding_window > 0)")
    if problems:
        raise ValueError(f"bad tiny {arch} shape: " + "; ".join(problems))


@dataclass(frozen=True)
class _RowMaker:
    """Rows typed as a converter would: matrices take the weight type (or an override
    for their role, the name without ``blk.N.`` and ``.weight``), vectors stay F32."""

    weight_type: str
    overrides: Mapping[str, str]

    def matrix(self, name: str, *ne: int) -> TensorRow:
        role = re.sub(r"^blk\.\d+\.|\.weight$", "", name)
        return TensorRow(name, ne, self.overrides.get(role, self.weight_type))

    @staticmethod
    def vector(name: str, size: int) -> TensorRow:
        return TensorRow(name, (size,), "F32")


def _tensor_rows(
    arch: str, shape: TinyShape, weight_type: str, overrides: Mapping[str, str]
) -> tuple[TensorRow, ...]:
    make = _RowMaker(weight_type, overrides)
    rows = [make.matrix("token_embd.weight", shape.n_embd, shape.vocab_size)]
    for layer in range(shape.n_layers):
        rows += _attention_rows(arch, shape, f"blk.{layer}.", make)
        rows += _ffn_rows(shape, f"blk.{layer}.", make)
    rows.append(make.vector("output_norm.weight", shape.n_embd))
    if arch != "gemma2":  # Gemma ties the output to the token embeddings
        rows.append(make.matrix("output.weight", shape.n_embd, shape.vocab_size))
    for row in rows:
        _ = row.n_bytes  # raises early, naming the tensor, if the type does not fit the shape
    return tuple(rows)


def _attention_rows(arch: str, shape: TinyShape, prefix: str, make: _RowMaker) -> list[TensorRow]:
    embd, q_width = shape.n_embd, shape.head_dim * shape.n_head
    kv_width = shape.head_dim * shape.n_head_kv
    rows = [
        make.vector(f"{prefix}attn_norm.weight", embd),
        make.matrix(f"{prefix}attn_q.weight", embd, q_width),
        make.matrix(f"{prefix}attn_k.weight", embd, kv_width),
        make.matrix(f"{prefix}attn_v.weight", embd, kv_width),
        make.matrix(f"{prefix}attn_output.weight", q_width, embd),
    ]
    if arch == "qwen2":
        widths = {"q": q_width, "k": kv_width, "v": kv_width}
        rows += [make.vector(f"{prefix}attn_{name}.bias", width) for name, width in widths.items()]
    if arch == "qwen3":
        rows += [make.vector(f"{prefix}attn_{name}_norm.weight", shape.head_dim) for name in "qk"]
    if arch == "gemma2":
        names = ("post_attention_norm", "post_ffw_norm")
        rows += [make.vector(f"{prefix}{name}.weight", embd) for name in names]
    return rows


def _ffn_rows(shape: TinyShape, prefix: str, make: _RowMaker) -> list[TensorRow]:
    embd, ff, experts = shape.n_embd, shape.n_ff, shape.n_experts
    norm = make.vector(f"{prefix}ffn_norm.weight", embd)
    if not experts:
        return [
            norm,
            make.matrix(f"{prefix}ffn_gate.weight", embd, ff),
            make.matrix(f"{prefix}ffn_up.weight", embd, ff),
            make.matrix(f"{prefix}ffn_down.weight", ff, embd),
        ]
    return [
        norm,
        TensorRow(f"{prefix}ffn_gate_inp.weight", (embd, experts), "F32"),  # router stays F32
        make.matrix(f"{prefix}ffn_gate_exps.weight", embd, ff, experts),
        make.matrix(f"{prefix}ffn_up_exps.weight", embd, ff, experts),
        make.matrix(f"{prefix}ffn_down_exps.weight", ff, embd, experts),
    ]


def _write_gguf(
    path: Path,
    arch: str,
    shape: TinyShape,
    rows: tuple[TensorRow, ...],
    weight_type: str,
    rng: np.random.Generator,
    chat_template: str | None = None,
) -> None:
    writer = gguf.GGUFWriter(path, _GGUF_ARCHITECTURE.get(arch, arch))
    _add_hparams(writer, arch, shape)
    _add_file_type(writer, weight_type)
    add_spm_vocab(writer, byte_spm_vocab(shape.vocab_size))
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for row in rows:
        data = _tensor_data(row, rng)
        raw_dtype = None if data.dtype in (np.float32, np.float16) else row.qtype
        writer.add_tensor(row.name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_hparams(writer: gguf.GGUFWriter, arch: str, shape: TinyShape) -> None:
    writer.add_name(f"yoyu tiny {arch}")
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layers)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_layer_norm_rms_eps(_RMS_EPS)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_vocab_size(shape.vocab_size)
    if arch in ("qwen3", "gemma2") or shape.head_dim * shape.n_head != shape.n_embd:
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    if shape.sliding_window:
        writer.add_sliding_window(shape.sliding_window)
        writer.add_attn_logit_softcapping(_GEMMA2_ATTN_SOFTCAP)
        writer.add_final_logit_softcapping(_GEMMA2_FINAL_SOFTCAP)
    if shape.n_experts:
        writer.add_expert_count(shape.n_experts)
        writer.add_expert_used_count(shape.n_experts_used)


def _add_file_type(writer: gguf.GGUFWriter, weight_type: str) -> None:
    """``general.file_type`` as llama-quantize sets it; unknown mixes are left out."""
    name = "ALL_F32" if weight_type == "F32" else f"MOSTLY_{weight_type}"
    if name in gguf.LlamaFileType.__members__:
        writer.add_file_type(int(gguf.LlamaFileType[name]))
    if weight_type not in ("F32", "F16", "BF16"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tensor_data(row: TensorRow, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """Random values in numpy order (slowest dimension first), encoded as the row's type."""
    numpy_shape = tuple(reversed(row.ne))
    if row.name.endswith("norm.weight"):
        values = np.ones(numpy_shape, dtype=np.float32)
    else:
        values = (rng.standard_normal(numpy_shape, dtype=np.float32) * _WEIGHT_SCALE).astype(
            np.float32
        )
    try:
        return gguf.quants.quantize(values, row.qtype)
    except NotImplementedError:
        return np.zeros(gguf.quant_shape_to_byte_shape(numpy_shape, row.qtype), dtype=np.uint8)


def _describe(
    path: Path, arch: str, shape: TinyShape, rows: tuple[TensorRow, ...], weight_type: str
) -> TinyModel:
    figures = table_figures(rows, shape.n_layers, shape.n_experts, shape.n_experts_used)
    swa_layers = tuple(range(0, shape.n_layers, 2)) if shape.sliding_window else ()
    return TinyModel(
        path=path,
        kind=arch,
        architecture=_GGUF_ARCHITECTURE.get(arch, arch),
        n_layers=shape.n_layers,
        n_embd=shape.n_embd,
        n_head=shape.n_head,
        n_head_kv=shape.n_head_kv,
        head_dim=shape.head_dim,
        n_ff=shape.n_ff,
        vocab_size=shape.vocab_size,
        context_length=shape.context_length,
        sliding_window=shape.sliding_window or None,
        swa_layers=swa_layers,
        n_experts=shape.n_experts,
        n_experts_used=shape.n_experts_used,
        weight_type=weight_type,
        file_bytes=path.stat().st_size,
        tensors=rows,
        **dataclasses.asdict(figures),
    )
