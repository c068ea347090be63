"""A Hugging Face model folder (``config.json`` + safetensors) as a ``ModelSpec``.

The config gives the shape, the safetensors headers give the bytes. What this
module adds is the parameter count of quantized checkpoints, where an element is
not a weight:

- MLX (mlx-lm ``quantization`` block): a quantized ``*.weight`` is U32 holding
  ``32 // bits`` weights each; its ``*.scales`` and ``*.biases`` are per-group
  dequantization constants, not parameters.
- MXFP4 (gpt-oss ``quant_method: mxfp4``): ``*_blocks`` are U8 holding two FP4
  values each; ``*_scales`` are shared exponents.
- GPTQ/AWQ: ``qweight`` is I32 holding ``32 // bits`` weights; ``qzeros``,
  ``scales`` and ``g_idx`` are bookkeeping.
- FP8 (DeepSeek V3): ``weight_scale_inv`` block scales are not parameters.

Bytes are always the bytes on disk; only ``n_params`` changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from yoyu.models.hf_config import HfArchitecture, parse_hf_config, read_config_json
from yoyu.models.safetensors import read_safetensors_folder
from yoyu.models.spec import ModelSpec, TensorInfo, TensorSummary, summarize_tensors

_SCALE_LEAVES = {"weight_scale_inv", "weight_scale", "input_scale"}
_GPTQ_BOOKKEEPING = {"qzeros", "scales", "g_idx"}


def read_hf_model(folder: Path) -> ModelSpec:
    """Read ``folder`` (config.json + *.safetensors, sharded or not); weights never read."""
    arch = parse_hf_config(read_config_json(folder), str(folder / "config.json"))
    files, raw_tensors = read_safetensors_folder(folder)
    tensors = logical_params(raw_tensors, arch)
    summary = summarize_tensors(tensors, arch.n_layers, arch.n_experts, arch.n_experts_used)
    return architecture_spec(
        arch,
        tensors,
        summary,
        name=hf_model_name(folder),
        format="mlx" if arch.mlx_quantization else "safetensors",
        paths=tuple(str(path) for path in files),
        file_bytes=sum(path.stat().st_size for path in files),
        quantization=quantization_label(arch, summary),
    )


def architecture_spec(
    arch: HfArchitecture,
    tensors: Sequence[TensorInfo],
    summary: TensorSummary,
    *,
    name: str,
    format: str,
    paths: tuple[str, ...],
    file_bytes: int,
    quantization: str | None,
) -> ModelSpec:
    """The ``ModelSpec`` of a config-described architecture and its tensor table: a
    safetensors folder here, a catalog entry (``catalog.catalog_spec``) alike."""
    return ModelSpec(
        name=name,
        architecture=arch.architecture,
        format=format,
        paths=paths,
        file_bytes=file_bytes,
        quantization=quantization,
        **arch.shape_fields(),
        params_total=summary.params_total,
        params_active=summary.params_active,
        tensor_bytes=summary.tensor_bytes,
        layer_bytes=summary.layer_bytes,
        nonrepeating_bytes=summary.nonrepeating_bytes,
        type_bytes=summary.type_bytes,
        tensors=tuple(tensors),
    )


def hf_model_name(folder: Path) -> str:
    """``org/name`` for a Hugging Face cache snapshot, else the folder's own name."""
    repo_folder = folder.parent.parent
    if folder.parent.name == "snapshots" and repo_folder.name.startswith("models--"):
        return repo_folder.name.removeprefix("models--").replace("--", "/")
    return folder.name


def logical_params(tensors: list[TensorInfo], arch: HfArchitecture) -> list[TensorInfo]:
    """The same tensors with ``n_params`` counting weights, not packed storage elements."""
    packed_modules = {
        tensor.name.removesuffix(".weight")
        for tensor in tensors
        if tensor.type_name == "U32" and tensor.name.endswith(".weight")
    }
    return [
        dataclasses.replace(tensor, n_params=_param_count(tensor, arch, packed_modules))
        for tensor in tensors
    ]


def quantization_label(arch: HfArchitecture, summary: TensorSummary) -> str | None:
    """Return "4-bit (MLX)", the config's quant method ("FP8", "MXFP4"), else the main dtype."""
    if arch.mlx_quantization is not None:
        return f"{arch.mlx_quantization.bits}-bit (MLX)"
    if arch.quant_method is not None:
        return arch.quant_method.upper()
    return next(iter(summary.type_bytes), None)


def _param_count(tensor: TensorInfo, arch: HfArchitecture, packed_modules: set[str]) -> int:
    module, _, leaf = tensor.name.rpartition(".")
    if arch.mlx_quantization is not None and module in packed_modules:
        if leaf == "weight":
            return tensor.n_params * 32 // arch.mlx_quantization.bits_for(module)
        if leaf in ("scales", "biases"):
            return 0
    if arch.quant_method == "mxfp4" and leaf.endswith(("_blocks", "_scales")):
        return tensor.n_params * 2 if leaf.endswith("_blocks") else 0
    if arch.quant_method in ("gptq", "awq") and arch.quant_bits:
        if leaf == "qweight":
            return tensor.n_params * 32 // arch.quant_bits
        if leaf in _GPTQ_BOOKKEEPING:
            return 0
    return 0 if leaf in _SCALE_LEAVES else tensor.n_params
