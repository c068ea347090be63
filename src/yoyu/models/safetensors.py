"""Safetensors headers: the tensor table of a Hugging Face checkpoint, weights unread.

The format (https://github.com/huggingface/safetensors, "Format"): an 8-byte
little-endian header length N, then N bytes of JSON mapping each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
first byte after the header) plus an optional ``"__metadata__"`` object. Sharded
checkpoints add ``model.safetensors.index.json`` whose ``weight_map`` names the
shard of every tensor.

This module owns the bytes of those files and nothing about what the tensors
mean (``hf_model`` does that). A lying N could ask for gigabytes, so N is capped
and checked against the file size before anything is read, and every tensor's
span is checked against the data that follows: a bad file fails in one line.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from yoyu.errors import ModelFileError
from yoyu.models.spec import TensorInfo, layer_of

MAX_HEADER_BYTES = 100 * 1024 * 1024  # DeepSeek-V3's largest shard header is ~2 MB
MAX_INDEX_BYTES = 64 * 1024 * 1024
INDEX_NAME = "model.safetensors.index.json"

# Element sizes from the safetensors Dtype enum (safetensors/src/tensor.rs).
DTYPE_BYTES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def read_safetensors_header(path: Path, file_index: int = 0) -> list[TensorInfo]:
    """Return the tensor table of one ``.safetensors`` file; its data is never read."""
    file_bytes = _file_size(path)
    header_length = _header_length(path, file_bytes)
    header = _parse_header(path, _read_span(path, 8, header_length))
    data_start = 8 + header_length
    data_bytes = file_bytes - data_start
    return [
        _tensor_info(path, name, entry, data_start, data_bytes, file_index)
        for name, entry in header.items()
        if name != "__metadata__"
    ]


def safetensors_files(folder: Path) -> list[Path]:
    """The shards of the checkpoint in ``folder``: from the index if there is one, else
    every ``*.safetensors`` file in name order."""
    index_path = folder / INDEX_NAME
    if index_path.is_file():
        return _files_from_index(index_path)
    return sorted(folder.glob("*.safetensors"))


def read_safetensors_folder(folder: Path) -> tuple[list[Path], list[TensorInfo]]:
    """Read every shard's header; ``TensorInfo.file_index`` points into the file list."""
    files = safetensors_files(folder)
    if not files:
        raise ModelFileError(
            f"{folder}: no *.safetensors files; a Hugging Face model folder needs its weights"
        )
    tensors: list[TensorInfo] = []
    for file_index, path in enumerate(files):
        tensors.extend(read_safetensors_header(path, file_index))
    return files, tensors


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error.strerror})") from None


def _header_length(path: Path, file_bytes: int) -> int:
    if file_bytes < 8:
        raise ModelFileError(f"{path}: {file_bytes} bytes is too short for a safetensors file")
    (header_length,) = struct.unpack("<Q", _read_span(path, 0, 8))
    if header_length > MAX_HEADER_BYTES:
        raise ModelFileError(
            f"{path}: safetensors header claims {header_length} bytes (limit "
            f"{MAX_HEADER_BYTES}); the file is corrupt or not safetensors"
        )
    if 8 + header_length > file_bytes:
        raise ModelFileError(
            f"{path}: safetensors header claims {header_length} bytes but the file has "
            f"{file_bytes}; the file is truncated"
        )
    return int(header_length)


def _read_span(path: Path, start: int, length: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            return handle.read(length)
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error.strerror})") from None


def _parse_header(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: safetensors header is not a JSON object")
    return header


def _tensor_info(
    path: Path, name: str, entry: Any, data_start: int, data_bytes: int, file_index: int
) -> TensorInfo:
    if not isinstance(entry, dict):
        raise ModelFileError(f"{path}: tensor {name!r} entry is not an object")
    dtype = entry.get("dtype")
    shape = _int_list(entry.get("shape"))
    offsets = _int_list(entry.get("data_offsets"), 2)
    if not isinstance(dtype, str) or shape is None or offsets is None:
        raise ModelFileError(f"{path}: tensor {name!r} needs dtype, shape and data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_bytes:
        raise ModelFileError(
            f"{path}: tensor {name!r} spans bytes {begin}..{end} but the data section has "
            f"{data_bytes}; the file is truncated or corrupt"
        )
    n_elements = math.prod(shape)
    _check_span_matches_shape(path, name, dtype, n_elements, end - begin)
    return TensorInfo(
        name=name,
        type_name=dtype,
        shape=tuple(shape),
        n_params=n_elements,
        n_bytes=end - begin,
        layer=layer_of(name),
        file_index=file_index,
        offset=data_start + begin,
    )


def _int_list(value: Any, length: int | None = None) -> list[int] | None:
    """``value`` if it is a list of non-negative ints (of ``length`` items), else None."""
    if not isinstance(value, list) or (length is not None and len(value) != length):
        return None
    if all(isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value):
        return value
    return None


def _check_span_matches_shape(
    path: Path, name: str, dtype: str, n_elements: int, n_bytes: int
) -> None:
    element_bytes = DTYPE_BYTES.get(dtype)
    if element_bytes is not None and n_elements * element_bytes != n_bytes:
        raise ModelFileError(
            f"{path}: tensor {name!r} is {dtype} with {n_elements} elements but spans "
            f"{n_bytes} bytes; the header is corrupt"
        )


def _files_from_index(index_path: Path) -> list[Path]:
    weight_map = _read_index(index_path)
    names: list[str] = []
    for file_name in weight_map.values():
        if not isinstance(file_name, str) or Path(file_name).name != file_name:
            raise ModelFileError(
                f"{index_path}: weight_map entry {file_name!r} is not a file name in this folder"
            )
        if file_name not in names:
            names.append(file_name)
    files = [index_path.parent / name for name in sorted(names)]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise ModelFileError(
            f"{index_path}: shard {missing[0]} is missing ({len(missing)} of {len(files)}); "
            "finish the download"
        )
    return files


def _read_index(index_path: Path) -> dict[str, Any]:
    if _file_size(index_path) > MAX_INDEX_BYTES:
        raise ModelFileError(f"{index_path}: index is larger than {MAX_INDEX_BYTES} bytes")
    try:
        document = json.loads(index_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{index_path}: not valid JSON") from None
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict):
        raise ModelFileError(f"{index_path}: no weight_map object")
    return weight_map
