"""A quantized GGUF's tensor table from a ``config.json``: names, shapes, ggml types, bytes.

``gguf_layout`` lists the tensors ``convert_hf_to_gguf.py`` writes for the config,
``quant_mix`` types each one as llama.cpp's quantizer would, and this module turns
them into ``TensorInfo`` rows with their bytes (each tensor's data aligned to 32)
plus the header's: what a catalog entry's download holds, tensor by tensor. Tables
are cached per ``TableKey``, so fine-tunes of one base share theirs. The layout comes
in parts (``gguf_layout_parts``: a template per kind of block) and is typed a block
at a time (``assign_part_types``), so a ranking of the whole catalog works per
template, not per tensor, where it can.

``compact_table`` is the same table with each block's tensors of one type and row
length merged: the estimator and the speed model iterate over tensors, and ranking
the whole catalog (``plan.ranking``) needs them few.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from yoyu.models.gguf_layout import BlockTemplate, LayoutParts, LayoutTensor, gguf_layout_parts
from yoyu.models.hf_config import HfArchitecture
from yoyu.models.quant_mix import PartTypes, QuantContext, assign_part_types, tensor_bytes
from yoyu.models.spec import TensorInfo

GGUF_ALIGNMENT = 32  # general.alignment: every tensor's data starts on this boundary
# Tokenizer metadata per vocabulary entry: a SentencePiece vocabulary stores token, score and
# type (the real Gemma 3 270M Q4_K_M: 6.5 MB of header for 262,144 tokens, 25 bytes each); a
# byte-level BPE one stores token and type plus about as many merges (40 bytes a token).
SPM_BYTES_PER_TOKEN = 25
BPE_BYTES_PER_TOKEN = 40
HEADER_BYTES_PER_TENSOR = 96  # a tensor-info record: name, dims, type, offset
# Ollama keeps a vision tower unquantized: its quantizer skips "v." and "mm." tensors
# (server/quantization.go), and an mmproj blob is written F16.
VISION_TYPE = "F16"


@dataclass(frozen=True)
class TableKey:
    """What decides a tensor table: fine-tunes of one base share theirs."""

    arch: HfArchitecture
    quant: str
    vision_params: int
    output_head: bool


@functools.lru_cache(maxsize=512)
def typed_parts(key: TableKey) -> tuple[LayoutParts, PartTypes]:
    """The converted file's tensors and the ggml type the quantizer gives each, a block
    at a time (``gguf_layout_parts``)."""
    arch = key.arch
    parts = gguf_layout_parts(arch, output_head=key.output_head)
    if key.vision_params:
        vision = LayoutTensor.of("v.vision_tower.weight", (key.vision_params,))
        parts = parts._replace(tail=(*parts.tail, vision))
    types = assign_part_types(parts, key.quant, quant_context(arch))
    if key.vision_params:  # Ollama keeps the vision tower as converted
        types = types._replace(tail=(*types.tail[:-1], VISION_TYPE))
    return parts, types


@functools.lru_cache(maxsize=512)
def tensor_table(key: TableKey) -> tuple[TensorInfo, ...]:
    parts, types = typed_parts(key)
    table = _typed(parts.head, types.head)
    for layer, block_types in enumerate(types.blocks):
        table.extend(_typed(parts.block_tensors(layer), block_types))
    return tuple(table + _typed(parts.tail, types.tail))


@functools.lru_cache(maxsize=512)
def compact_table(key: TableKey) -> tuple[TensorInfo, ...]:
    """Each block's tensors of one type and row length merged into one (``attn_q``,
    ``attn_k``, ``ffn_gate``... all Q4_K on ``n_embd``-long rows), keeping what placement
    and speed read: the block, the type, the row length, the bytes; expert stacks
    (``_exps``, which ``--n-cpu-moe`` moves) and non-repeating tensors stay as they are.
    A block then has a few tensors instead of a dozen, and the estimator and the speed
    model iterate over tensors. Blocks of one template typed alike are summed once."""
    parts, types = typed_parts(key)
    kept = _typed(parts.head, types.head)
    merged: list[TensorInfo] = []
    sums: dict[tuple[int, tuple[str, ...]], _BlockSums] = {}
    for layer, (kind, block_types) in enumerate(zip(parts.blocks, types.blocks, strict=True)):
        block = sums.get((kind, block_types))
        if block is None:
            block = sums[kind, block_types] = _block_sums(parts.templates[kind], block_types)
        prefix = f"blk.{layer}."
        kept.extend(
            TensorInfo(prefix + name, type_name, shape, n_params, n_bytes, layer)
            for name, type_name, shape, n_params, n_bytes in block.experts
        )
        merged.extend(_merged(layer, *group) for group in block.groups)
    return tuple(kept + _typed(parts.tail, types.tail) + merged)


class _BlockSums(NamedTuple):
    """One block's compact rows without its index: the expert stacks it keeps
    (name after ``blk.N.``, type, shape, parameters, bytes) and the merged groups
    (type, row length, parameters, bytes), in file order."""

    experts: tuple[tuple[str, str, tuple[int, ...], int, int], ...]
    groups: tuple[tuple[str, int, int, int], ...]


def _block_sums(template: BlockTemplate, types: tuple[str, ...]) -> _BlockSums:
    experts = []
    groups: dict[tuple[str, int], list[int]] = {}
    for (name, shape, n_params), type_name in zip(template, types, strict=True):
        n_bytes = _padded(tensor_bytes(type_name, n_params))
        if "_exps." in name:
            experts.append((name, type_name, shape, n_params, n_bytes))
            continue
        row = shape[0] if len(shape) > 1 else 0
        group = groups.setdefault((type_name, row), [0, 0])
        group[0] += n_params
        group[1] += n_bytes
    merged = tuple(
        (type_name, row, n_params, n_bytes)
        for (type_name, row), (n_params, n_bytes) in groups.items()
    )
    return _BlockSums(tuple(experts), merged)


def _merged(layer: int, type_name: str, row: int, n_params: int, n_bytes: int) -> TensorInfo:
    if row == 0:  # norms and biases: 1-D, never quantized or repacked
        name = f"blk.{layer}.norms.{type_name.lower()}"
        return TensorInfo(name, type_name, (n_params,), n_params, n_bytes, layer)
    name = f"blk.{layer}.merged_{type_name.lower()}_{row}.weight"
    return TensorInfo(name, type_name, (row, n_params // row), n_params, n_bytes, layer)


def _typed(tensors: Sequence[LayoutTensor], types: Sequence[str]) -> list[TensorInfo]:
    return [_tensor(tensor, type_name) for tensor, type_name in zip(tensors, types, strict=True)]


def _tensor(tensor: LayoutTensor, type_name: str) -> TensorInfo:
    n_bytes = _padded(tensor_bytes(type_name, tensor.n_params))
    return TensorInfo(tensor.name, type_name, tensor.shape, tensor.n_params, n_bytes, tensor.layer)


def _padded(n_bytes: int) -> int:
    return (n_bytes + GGUF_ALIGNMENT - 1) // GGUF_ALIGNMENT * GGUF_ALIGNMENT


def header_bytes(key: TableKey) -> int:
    """GGUF metadata before the tensor data: the tokenizer dominates it."""
    arch = key.arch
    per_token = SPM_BYTES_PER_TOKEN if _sentencepiece(arch) else BPE_BYTES_PER_TOKEN
    n_tensors = typed_parts(key)[0].n_tensors()
    return arch.vocab_size * per_token + n_tensors * HEADER_BYTES_PER_TENSOR


def _sentencepiece(arch: HfArchitecture) -> bool:
    """Gemma's, and the 32k vocabularies of Llama 2, Mistral and Phi-3, are SentencePiece."""
    small_llama = arch.model_type in ("llama", "mistral", "mixtral", "phi3")
    return arch.model_type.startswith("gemma") or (small_llama and arch.vocab_size <= 32_768)


def quant_context(arch: HfArchitecture) -> QuantContext:
    """What llama.cpp's quantizer knows of the whole model besides each tensor."""
    return QuantContext(arch.n_layers, arch.n_experts, _is_70b(arch))


def _is_70b(arch: HfArchitecture) -> bool:
    """llama.cpp's LLM_TYPE_70B: an 80-block Llama or Qwen2 with grouped-query attention."""
    grouped = arch.n_head_kv < arch.n_head
    return arch.architecture in ("llama", "qwen2") and arch.n_layers == 80 and grouped
