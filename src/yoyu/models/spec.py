"""``ModelSpec``: everything yoyu knows about a model before running it.

One dataclass for every source (GGUF, safetensors folder, Ollama blob,
catalog entry), so the estimator and planner never ask where a model came
from. Readers fill the architecture fields from metadata and the byte
figures from the tensor table; ``summarize_tensors`` derives the totals so
that every reader computes them the same way.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from yoyu.models.shape import MlaDims, ModelShape

__all__ = ["MlaDims", "ModelShape", "ModelSpec", "TensorInfo", "TensorSummary"]

_LAYER_PATTERNS = (
    re.compile(r"^blk\.(\d+)\."),  # GGUF
    re.compile(r"^(?:model\.|language_model\.model\.|transformer\.)?layers\.(\d+)\."),  # HF
    re.compile(r"^model\.language_model\.layers\.(\d+)\."),  # HF multimodal wrappers
    re.compile(r"^transformer\.h\.(\d+)\."),  # GPT-2 style
)


def layer_of(tensor_name: str) -> int | None:
    """Return the block index a tensor belongs to, or None for non-repeating tensors."""
    for pattern in _LAYER_PATTERNS:
        match = pattern.match(tensor_name)
        if match:
            return int(match.group(1))
    return None


def is_expert_tensor(tensor_name: str) -> bool:
    """True for routed-expert weights, which only ``n_experts_used`` of per token."""
    # GGUF, HF and MLX names, tested in a row: this runs for every tensor of every estimate
    routed = "_exps." in tensor_name or ".experts." in tensor_name or ".switch_mlp." in tensor_name
    return routed and "shexp" not in tensor_name


def is_vision_tensor(tensor_name: str) -> bool:
    """A vision tower's weights (``v.*``) or its projector (``mm.*``), which Ollama ships in
    the model's own GGUF; llama.cpp names them so in an mmproj file."""
    return tensor_name.startswith(("v.", "mm."))


@dataclass(frozen=True)
class TensorInfo:
    """One tensor from a file's table: its data is never read."""

    name: str
    type_name: str  # ggml type name ("Q4_K", "F16", "MXFP4") or safetensors dtype ("BF16", "U32")
    shape: tuple[int, ...]
    n_params: int  # logical parameter count (packed MLX tensors hold several per element)
    n_bytes: int
    layer: int | None  # block index, None for embeddings, output and norms outside blocks
    file_index: int = 0  # which file of a split model holds it
    offset: int = 0  # absolute byte offset of its data in that file


@dataclass(frozen=True)
class TensorSummary:
    """Byte and parameter totals derived from a tensor table."""

    params_total: int
    params_active: int
    tensor_bytes: int
    layer_bytes: tuple[int, ...]
    nonrepeating_bytes: int
    type_bytes: dict[str, int]


def summarize_tensors(
    tensors: Iterable[TensorInfo], n_layers: int, n_experts: int, n_experts_used: int
) -> TensorSummary:
    """Sum a tensor table into the figures the planner needs.

    Active parameters count routed experts at ``n_experts_used / n_experts`` of
    their size; memory figures always count every expert, since all of them
    must be resident (a known peer mistake is to size MoE memory by active
    parameters).
    """
    layer_bytes = [0] * n_layers
    type_bytes: dict[str, int] = {}
    params_total = params_expert = tensor_bytes = nonrepeating_bytes = 0
    for tensor in tensors:
        tensor_bytes += tensor.n_bytes
        params_total += tensor.n_params
        type_bytes[tensor.type_name] = type_bytes.get(tensor.type_name, 0) + tensor.n_bytes
        if is_expert_tensor(tensor.name):
            params_expert += tensor.n_params
        if tensor.layer is not None and 0 <= tensor.layer < n_layers:
            layer_bytes[tensor.layer] += tensor.n_bytes
        else:
            nonrepeating_bytes += tensor.n_bytes
    params_active = params_total
    if n_experts > 0 and params_expert:
        params_active = params_total - params_expert + params_expert * n_experts_used // n_experts
    return TensorSummary(
        params_total=params_total,
        params_active=params_active,
        tensor_bytes=tensor_bytes,
        layer_bytes=tuple(layer_bytes),
        nonrepeating_bytes=nonrepeating_bytes,
        type_bytes=dict(sorted(type_bytes.items(), key=lambda item: -item[1])),
    )


@dataclass(frozen=True, kw_only=True)
class ModelSpec(ModelShape):
    """A model's shape and the bytes it occupies, from whichever source.

    ``n_head_kv_layers`` holds one KV head count per block for models whose
    layers differ (0 for layers without a KV cache, e.g. recurrent ones).
    """

    name: str
    architecture: str
    format: str  # "gguf", "safetensors", "mlx", "catalog"
    paths: tuple[str, ...]
    file_bytes: int
    quantization: str | None  # "Q4_K_M", "MXFP4", "BF16", "4-bit (MLX)", ...
    params_total: int
    params_active: int
    tensor_bytes: int
    layer_bytes: tuple[int, ...]
    nonrepeating_bytes: int
    type_bytes: dict[str, int]
    n_head_kv_layers: tuple[int, ...] = ()
    chat_template: bool | None = None  # the file carries one; None: the source does not say
    chat_template_text: str | None = field(default=None, repr=False)  # kept out of to_dict
    longest_token_bytes: int | None = None  # the vocabulary's longest piece (GGUF token list)
    tensors: tuple[TensorInfo, ...] = field(default=(), repr=False)

    def to_dict(self, *, include_tensors: bool = False) -> dict[str, Any]:
        """Plain JSON-ready dict; the tensor table only when asked (it can be 10k rows)."""
        data = dataclasses.asdict(self)
        data.pop("chat_template_text")  # tens of KiB of Jinja; ``chat_template`` says it is there
        if not include_tensors:
            data.pop("tensors")
        return data
