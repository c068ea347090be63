"""A quantized GGUF's tensor table from a ``config.json``: names, shapes, ggml types, bytes.

``gguf_layout`` lists the tensors ``convert_hf_to_gguf.py`` writes for the config,
``quant_mix`` types each one as llama.cpp's quantizer would, and this module turns
them into ``TensorInfo`` rows with their bytes (each tensor's data aligned to 32)
plus the header's: what a catalog entry's download holds, tensor by tensor. Tables
are cached per ``TableKey``, so fine-tunes of one base share theirs.

``compact_table`` is the same table with each block's tensors of one type and row
length merged: the estimator and the speed model iterate over tensors, and ranking
the whole catalog (``plan.ranking``) needs them few.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from yoyu.models.gguf_layout import LayoutTensor, gguf_layout
from yoyu.models.hf_config import HfArchitecture
from yoyu.models.quant_mix import QuantContext, assign_types, tensor_bytes
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
def typed_layout(key: TableKey) -> tuple[tuple[LayoutTensor, ...], tuple[str, ...]]:
    """The converted file's tensors and the ggml type the quantizer gives each."""
    arch = key.arch
    layout = gguf_layout(arch, output_head=key.output_head)
    if key.vision_params:
        layout.append(LayoutTensor.of("v.vision_tower.weight", (key.vision_params,)))
    context = QuantContext(arch.n_layers, arch.n_experts, _is_70b(arch))
    types = assign_types(layout, key.quant, context)
    if key.vision_params:
        types[-1] = VISION_TYPE  # Ollama keeps the vision tower as converted
    return tuple(layout), tuple(types)


@functools.lru_cache(maxsize=512)
def tensor_table(key: TableKey) -> tuple[TensorInfo, ...]:
    layout, types = typed_layout(key)
    pairs = zip(layout, types, strict=True)
    return tuple(_tensor(tensor, type_name) for tensor, type_name in pairs)


@functools.lru_cache(maxsize=512)
def compact_table(key: TableKey) -> tuple[TensorInfo, ...]:
    """Each block's tensors of one type and row length merged into one (``attn_q``,
    ``attn_k``, ``ffn_gate``... all Q4_K on ``n_embd``-long rows), keeping what placement
    and speed read: the block, the type, the row length, the bytes; expert stacks
    (``_exps``, which ``--n-cpu-moe`` moves) and non-repeating tensors stay as they are.
    A block then has a few tensors instead of a dozen, and the estimator and the speed
    model iterate over tensors."""
    layout, types = typed_layout(key)
    kept: list[TensorInfo] = []
    groups: dict[tuple[int, str, int], list[int]] = {}
    for tensor, type_name in zip(layout, types, strict=True):
        if tensor.layer is None or "_exps." in tensor.name:
            kept.append(_tensor(tensor, type_name))
            continue
        row = tensor.shape[0] if len(tensor.shape) > 1 else 0
        sums = groups.setdefault((tensor.layer, type_name, row), [0, 0])
        n_params = tensor.n_params
        sums[0] += n_params
        sums[1] += _padded(tensor_bytes(type_name, n_params))
    return tuple(kept + [_merged(*key, *sums) for key, sums in groups.items()])


def _merged(layer: int, type_name: str, row: int, n_params: int, n_bytes: int) -> TensorInfo:
    if row == 0:  # norms and biases: 1-D, never quantized or repacked
        name = f"blk.{layer}.norms.{type_name.lower()}"
        return TensorInfo(name, type_name, (n_params,), n_params, n_bytes, layer)
    name = f"blk.{layer}.merged_{type_name.lower()}_{row}.weight"
    return TensorInfo(name, type_name, (row, n_params // row), n_params, n_bytes, layer)


def _tensor(tensor: LayoutTensor, type_name: str) -> TensorInfo:
    n_bytes = _padded(tensor_bytes(type_name, tensor.n_params))
    return TensorInfo(tensor.name, type_name, tensor.shape, tensor.n_params, n_bytes, tensor.layer)


def _padded(n_bytes: int) -> int:
    return (n_bytes + GGUF_ALIGNMENT - 1) // GGUF_ALIGNMENT * GGUF_ALIGNMENT


def header_bytes(key: TableKey) -> int:
    """GGUF metadata before the tensor data: the tokenizer dominates it."""
    arch = key.arch
    per_token = SPM_BYTES_PER_TOKEN if _sentencepiece(arch) else BPE_BYTES_PER_TOKEN
    n_tensors = len(typed_layout(key)[0])
    return arch.vocab_size * per_token + n_tensors * HEADER_BYTES_PER_TENSOR


def _sentencepiece(arch: HfArchitecture) -> bool:
    """Gemma's, and the 32k vocabularies of Llama 2, Mistral and Phi-3, are SentencePiece."""
    small_llama = arch.model_type in ("llama", "mistral", "mixtral", "phi3")
    return arch.model_type.startswith("gemma") or (small_llama and arch.vocab_size <= 32_768)


def _is_70b(arch: HfArchitecture) -> bool:
    """llama.cpp's LLM_TYPE_70B: an 80-block Llama or Qwen2 with grouped-query attention."""
    grouped = arch.n_head_kv < arch.n_head
    return arch.architecture in ("llama", "qwen2") and arch.n_layers == 80 and grouped
