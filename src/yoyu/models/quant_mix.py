"""Which ggml type llama.cpp's quantizer gives each tensor of a file type (Q4_K_M, Q8_0...).

A port of ``llama_tensor_get_type`` and the filters around it in
``llama_model_quantize_impl`` (llama.cpp ``src/llama-quant.cpp``), for the file
types the catalog publishes; Ollama's own quantizer (``server/quantization.go``,
``getTensorNewType``) is a port of the same function. The rules that move bytes:

- only tensors whose name ends in ``weight``, with 2 or more dimensions, are
  quantized; norms, ``ffn_gate_inp`` (the MoE router), ``position_embd`` and
  ``token_types`` keep the converter's type (F32 for the 1-D ones and these);
- ``output.weight`` (or ``token_embd`` when the output is tied to it) becomes
  Q6_K, unless the file type is Q8_0 or its rows are not a multiple of the
  block (then Q8_0);
- Q4_K_M and Q5_K_M give Q6_K to ``attn_v`` and ``ffn_down`` in the
  "use_more_bits" layers (the first and last eighth, and every third between),
  ``attn_qkv`` one step up (Q5_K / Q6_K); a "70B" model (80 layers with GQA)
  gets Q5_K for its other ``attn_v``; 8-expert models (Mixtral) Q8_0 for
  ``attn_v`` and ``attn_k`` and, in Q4_K_M, Q5_K for ``attn_output``;
- a row length not a multiple of the chosen type's block falls back:
  Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 (Qwen2.5-0.5B's 896-wide
  rows take Q5_0 in its "Q4_K_M").

``MXFP4`` is the layout OpenAI released gpt-oss in and Ollama ships it as:
experts MXFP4, every other matrix BF16.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from yoyu.models.ggml_types import ggml_type_named
from yoyu.models.gguf_layout import LayoutParts, LayoutTensor


@dataclass(frozen=True)
class FileType:
    """A llama.cpp file type: its default ggml type and the "more bits" type its mix uses."""

    name: str
    default: str
    more_bits: str | None = None  # attn_v / ffn_down in use_more_bits layers
    qkv: str | None = None  # fused attn_qkv


FILE_TYPES: dict[str, FileType] = {
    "Q4_K_M": FileType("Q4_K_M", "Q4_K", more_bits="Q6_K", qkv="Q5_K"),
    "Q5_K_M": FileType("Q5_K_M", "Q5_K", more_bits="Q6_K", qkv="Q6_K"),
    "Q4_0": FileType("Q4_0", "Q4_0"),
    "Q8_0": FileType("Q8_0", "Q8_0"),
    "F16": FileType("F16", "F16"),
    "BF16": FileType("BF16", "BF16"),
    "MXFP4": FileType("MXFP4", "BF16"),
}
_FLOAT_FILE_TYPES = frozenset({"F16", "BF16"})
_KEPT = ("_norm.weight", "ffn_gate_inp.weight", "position_embd.weight", "token_types.weight")
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class QuantContext:
    """What the quantizer knows of the whole model besides one tensor."""

    n_layers: int
    n_experts: int
    is_70b: bool  # llama.cpp's LLM_TYPE_70B: 80 blocks with grouped-query attention


def assign_types(
    tensors: Sequence[LayoutTensor], file_type: str, context: QuantContext
) -> list[str]:
    """The ggml type of each tensor, in order (counters run over the file order)."""
    names = [tensor.name for tensor in tensors]
    quantizer = _Quantizer(file_type, context, "output.weight" in names, _count_wv(names))
    return [quantizer.type_of(tensor.name, tensor.shape) for tensor in tensors]


class PartTypes(NamedTuple):
    """``assign_types`` of a ``LayoutParts``: the input side's types, each block's, the
    output side's."""

    head: tuple[str, ...]
    blocks: tuple[tuple[str, ...], ...]
    tail: tuple[str, ...]


def assign_part_types(parts: LayoutParts, file_type: str, context: QuantContext) -> PartTypes:
    """``assign_types`` over the file ``parts`` lays out, a block at a time.

    What the quantizer decides for a tensor of a block depends on its name after
    ``blk.N.`` (no rule's pattern can reach into that prefix), except for ``attn_v`` and
    ``ffn_down``, which depend on where they are; so each template's rules are found
    once and only those two are worked out per block (the same types, in a fraction of
    the time, for a ranking that types some 100,000 tensors)."""
    outside = [tensor.name for tensor in (*parts.head, *parts.tail)]  # a block's never match
    per_template = [_count_wv(name for name, _, _ in template) for template in parts.templates]
    n_attention_wv = _count_wv(outside) + sum(per_template[kind] for kind in parts.blocks)
    quantizer = _Quantizer(file_type, context, "output.weight" in outside, n_attention_wv)
    head = tuple(quantizer.type_of(tensor.name, tensor.shape) for tensor in parts.head)
    rules = [
        tuple(quantizer.rule(name, shape) for name, shape, _ in template)
        for template in parts.templates
    ]
    positional = [
        [
            (index, rule, template[index][1][0])
            for index, rule in enumerate(rules[kind])
            if rule in _POSITIONAL
        ]
        for kind, template in enumerate(parts.templates)
    ]
    blocks = []
    for layer, kind in enumerate(parts.blocks):
        if not positional[kind]:
            blocks.append(rules[kind])  # every type decided by the name: the template's own
            continue
        types = list(rules[kind])
        for index, rule, row_length in positional[kind]:  # in file order, as llama.cpp counts
            types[index] = quantizer.resolve(rule, layer, row_length)
        blocks.append(tuple(types))
    tail = tuple(quantizer.type_of(tensor.name, tensor.shape) for tensor in parts.tail)
    return PartTypes(head, tuple(blocks), tail)


_ATTN_V = "attn_v"  # rules whose type depends on the tensor's place in the file
_FFN_DOWN = "ffn_down"
_POSITIONAL = frozenset({_ATTN_V, _FFN_DOWN})


class _Quantizer:
    """llama.cpp's choice for one file, tensor by tensor in file order: ``rule`` is the
    type a tensor's name and shape decide (``_ATTN_V`` or ``_FFN_DOWN`` where its
    place decides it too), ``resolve`` the type at its place, counting as llama.cpp
    counts ``attn_v`` and ``ffn_down`` tensors."""

    def __init__(
        self, file_type: str, context: QuantContext, has_output: bool, n_attention_wv: int
    ) -> None:
        self.ftype = FILE_TYPES[file_type]
        self.context = context
        self.has_output = has_output
        self.n_attention_wv = n_attention_wv
        self.counters = {_ATTN_V: 0, _FFN_DOWN: 0}

    def type_of(self, name: str, shape: tuple[int, ...]) -> str:
        return self.resolve(self.rule(name, shape), _layer_of(name), shape[0])

    def rule(self, name: str, shape: tuple[int, ...]) -> str:
        if not _quantized(name, shape):
            return "F32"
        chosen = _choose(name, shape, self.ftype, self.context, self.has_output)
        return chosen if chosen in _POSITIONAL else _compatible(chosen, shape[0])

    def resolve(self, rule: str, layer: int | None, row_length: int) -> str:
        """The type of a tensor with ``rule`` in block ``layer`` (None: outside the blocks)."""
        if rule not in _POSITIONAL:
            return rule
        index = self.counters[rule]
        self.counters[rule] += 1
        ftype, context = self.ftype, self.context
        if rule == _ATTN_V:
            chosen = _attn_v_type(ftype, context, index, self.n_attention_wv)
        else:
            at = layer if context.n_experts > 1 and layer is not None else index
            more = ftype.more_bits is not None and use_more_bits(at, context.n_layers)
            chosen = ftype.more_bits if more and ftype.more_bits else ftype.default
        return _compatible(chosen, row_length)


def _quantized(name: str, shape: tuple[int, ...]) -> bool:
    return name.endswith("weight") and len(shape) >= 2 and not name.endswith(_KEPT)


def _count_wv(names: Iterable[str]) -> int:
    """llama.cpp's ``n_attention_wv``: the value (or fused) attention matrices."""
    return sum(_is_attention_wv(name) for name in names)


def _is_attention_wv(name: str) -> bool:
    return "attn_v.weight" in name or "attn_qkv.weight" in name or "attn_kv_b.weight" in name


def _choose(
    name: str,
    shape: tuple[int, ...],
    ftype: FileType,
    context: QuantContext,
    has_output: bool,
) -> str:
    """The type llama.cpp picks for a tensor, or ``_ATTN_V`` / ``_FFN_DOWN`` where it also
    depends on the tensor's place (``_Quantizer.resolve``)."""
    if ftype.name == "MXFP4":
        return "MXFP4" if "_exps." in name else "BF16"
    if ftype.name in _FLOAT_FILE_TYPES:
        return ftype.default
    if name == "output.weight" or (not has_output and name == "token_embd.weight"):
        return _output_type(ftype, shape[0])
    if "attn_v.weight" in name:
        return _ATTN_V
    if "attn_k.weight" in name and context.n_experts == 8:
        return "Q8_0"
    if "ffn_down" in name:
        return _FFN_DOWN
    if "attn_output.weight" in name and context.n_experts == 8 and ftype.name == "Q4_K_M":
        return "Q5_K"
    if "attn_qkv.weight" in name and ftype.qkv:
        return ftype.qkv
    return ftype.default


def _output_type(ftype: FileType, row_length: int) -> str:
    block = _block_size(ftype.default)
    if row_length % block or ftype.default == "Q8_0":
        return "Q8_0"
    return "Q6_K"


def _attn_v_type(ftype: FileType, context: QuantContext, index: int, n_attention_wv: int) -> str:
    chosen = ftype.default
    if ftype.more_bits and use_more_bits(index, n_attention_wv):
        chosen = ftype.more_bits
    if context.is_70b and chosen in ("Q3_K", "Q4_K"):
        chosen = "Q5_K"
    if context.n_experts == 8:
        chosen = "Q8_0"
    return chosen


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of layers that get more bits: the first and last eighth, and
    every third layer between (a negative offset never reaches the modulo)."""
    eighth = n_layers // 8
    return i_layer < eighth or i_layer >= 7 * n_layers // 8 or (i_layer - eighth) % 3 == 2


def _layer_of(name: str) -> int | None:
    match = _LAYER.match(name)
    return int(match.group(1)) if match else None


@functools.cache
def _compatible(type_name: str, row_length: int) -> str:
    """The fallback llama.cpp takes when rows do not fill whole blocks of the chosen type."""
    if row_length % _block_size(type_name) == 0:
        return type_name
    fallback = _FALLBACK.get(type_name, "F16")
    return fallback if row_length % _block_size(fallback) == 0 else "F16"


def _block_size(type_name: str) -> int:
    return _blocks(type_name)[0]


def tensor_bytes(type_name: str, n_params: int) -> int:
    """Bytes of ``n_params`` weights stored as ``type_name`` (whole blocks)."""
    block_size, block_bytes = _blocks(type_name)
    return n_params // block_size * block_bytes


@functools.cache
def _blocks(type_name: str) -> tuple[int, int]:
    """(weights per block, bytes per block) of a ggml type, looked up once per name."""
    ggml_type = ggml_type_named(type_name)
    if ggml_type is None:
        raise ValueError(f"unknown ggml type {type_name!r}")
    return ggml_type.block_size, ggml_type.block_bytes
