"""The safetensors header reader: real files written by the ``safetensors`` package,
hand-made headers for the lies a broken or hostile file can tell."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from yoyu.errors import ModelFileError
from yoyu.models.safetensors import (
    MAX_HEADER_BYTES,
    read_safetensors_folder,
    read_safetensors_header,
    safetensors_files,
)


def write_raw(path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    """A safetensors file from a header object (or raw bytes) and a data section."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def test_reads_names_dtypes_shapes_bytes_and_layers(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    arrays: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": np.zeros((10, 8), dtype=np.float32),
        "model.layers.0.self_attn.q_proj.weight": np.zeros((8, 8), dtype=np.float16),
        "model.layers.1.mlp.down_proj.weight": np.zeros((8, 16), dtype=np.float16),
        "model.norm.weight": np.zeros((8,), dtype=np.float32),
    }
    save_file(arrays, str(path), metadata={"format": "pt"})

    tensors = {tensor.name: tensor for tensor in read_safetensors_header(path)}

    assert set(tensors) == set(arrays)
    for name, array in arrays.items():
        assert tensors[name].shape == array.shape
        assert tensors[name].n_bytes == array.nbytes
        assert tensors[name].n_params == array.size
    assert tensors["model.embed_tokens.weight"].type_name == "F32"
    assert tensors["model.layers.1.mlp.down_proj.weight"].type_name == "F16"
    assert tensors["model.layers.0.self_attn.q_proj.weight"].layer == 0
    assert tensors["model.layers.1.mlp.down_proj.weight"].layer == 1
    assert tensors["model.norm.weight"].layer is None


def test_offsets_point_at_each_tensors_data(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    arrays: dict[str, np.ndarray] = {
        "a": np.arange(12, dtype=np.int32).reshape(3, 4),
        "b": np.arange(5, dtype=np.float64) + 0.5,
    }
    save_file(arrays, str(path))
    content = path.read_bytes()
    for tensor in read_safetensors_header(path):
        stored = content[tensor.offset : tensor.offset + tensor.n_bytes]
        assert stored == arrays[tensor.name].tobytes()


def test_hand_written_header_with_metadata_and_packed_dtype(tmp_path: Path) -> None:
    header = {
        "__metadata__": {"format": "mlx"},
        "model.layers.3.mlp.gate_proj.weight": {
            "dtype": "U32",
            "shape": [4, 2],
            "data_offsets": [0, 32],
        },
    }
    path = write_raw(tmp_path / "packed.safetensors", header, bytes(32))
    (tensor,) = read_safetensors_header(path, file_index=2)
    assert (tensor.type_name, tensor.shape, tensor.n_bytes) == ("U32", (4, 2), 32)
    assert tensor.layer == 3
    assert tensor.file_index == 2


BAD_HEADERS = [
    pytest.param(b"\x01\x02\x03", "too short", id="truncated-length"),
    pytest.param(
        struct.pack("<Q", 2**60) + b"{}", "claims 1152921504606846976 bytes", id="length-2^60"
    ),
    pytest.param(struct.pack("<Q", 4096) + b"{}", "truncated", id="length-past-end"),
    pytest.param(struct.pack("<Q", 7) + b"not-jsn", "not valid JSON", id="not-json"),
    pytest.param(struct.pack("<Q", 2) + b"[]", "not a JSON object", id="json-list"),
    pytest.param(struct.pack("<Q", 2) + b"\xff\xfe", "not valid JSON", id="not-utf8"),
]


@pytest.mark.parametrize(("content", "fragment"), BAD_HEADERS)
def test_bad_headers_are_one_line_model_file_errors(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as error:
        read_safetensors_header(path)
    message = str(error.value)
    assert fragment in message
    assert str(path) in message
    assert "\n" not in message


BAD_ENTRIES = [
    pytest.param({"dtype": "F16", "shape": [4], "data_offsets": [0, 800]}, "spans", id="past-end"),
    pytest.param({"dtype": "F16", "shape": [4], "data_offsets": [6, 2]}, "spans", id="reversed"),
    pytest.param({"dtype": "F16", "shape": [5], "data_offsets": [0, 8]}, "5 elements", id="size"),
    pytest.param({"dtype": "F16", "shape": [-1], "data_offsets": [0, 8]}, "needs", id="neg-dim"),
    pytest.param({"shape": [4], "data_offsets": [0, 8]}, "needs dtype", id="no-dtype"),
    pytest.param({"dtype": "F16", "shape": [4], "data_offsets": [0]}, "needs", id="one-offset"),
    pytest.param([1, 2], "not an object", id="entry-list"),
]


@pytest.mark.parametrize(("entry", "fragment"), BAD_ENTRIES)
def test_lying_tensor_entries_are_refused(tmp_path: Path, entry: object, fragment: str) -> None:
    path = write_raw(tmp_path / "lying.safetensors", {"w": entry}, bytes(8))
    with pytest.raises(ModelFileError, match=fragment) as error:
        read_safetensors_header(path)
    assert "'w'" in str(error.value)


def test_huge_header_claim_allocates_nothing(tmp_path: Path) -> None:
    """A header length just under the cap, on a 100-byte file, must fail before reading."""
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES - 1) + b"{" * 92)
    tracemalloc.start()
    with pytest.raises(ModelFileError, match="truncated"):
        read_safetensors_header(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1024 * 1024


def write_sharded(folder: Path) -> dict[str, np.ndarray]:
    shard_one: dict[str, np.ndarray] = {
        "model.layers.0.mlp.up_proj.weight": np.ones((4, 4), dtype=np.float16)
    }
    shard_two: dict[str, np.ndarray] = {
        "model.layers.1.mlp.up_proj.weight": np.ones((4, 4), dtype=np.float16),
        "lm_head.weight": np.ones((6, 4), dtype=np.float32),
    }
    save_file(shard_one, str(folder / "model-00001-of-00002.safetensors"))
    save_file(shard_two, str(folder / "model-00002-of-00002.safetensors"))
    weight_map = dict.fromkeys(shard_one, "model-00001-of-00002.safetensors")
    weight_map |= dict.fromkeys(shard_two, "model-00002-of-00002.safetensors")
    index = {"metadata": {"total_size": 160}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    return shard_one | shard_two


def test_sharded_folder_reads_every_shard_from_the_index(tmp_path: Path) -> None:
    arrays = write_sharded(tmp_path)
    (tmp_path / "consolidated.safetensors").write_bytes(b"not listed in the index")

    files, tensors = read_safetensors_folder(tmp_path)

    assert [path.name for path in files] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    by_name = {tensor.name: tensor for tensor in tensors}
    assert set(by_name) == set(arrays)
    assert by_name["model.layers.0.mlp.up_proj.weight"].file_index == 0
    assert by_name["lm_head.weight"].file_index == 1
    assert sum(tensor.n_bytes for tensor in tensors) == sum(a.nbytes for a in arrays.values())


def test_folder_without_index_uses_every_safetensors_file(tmp_path: Path) -> None:
    save_file({"b": np.zeros(2, dtype=np.float32)}, str(tmp_path / "b.safetensors"))
    save_file({"a": np.zeros(2, dtype=np.float32)}, str(tmp_path / "a.safetensors"))
    assert [path.name for path in safetensors_files(tmp_path)] == [
        "a.safetensors",
        "b.safetensors",
    ]


def test_missing_shard_is_named(tmp_path: Path) -> None:
    write_sharded(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"model-00002-of-00002\.safetensors is missing"):
        read_safetensors_folder(tmp_path)


@pytest.mark.parametrize(
    ("index", "fragment"),
    [
        ({"weight_map": {"w": "../outside.safetensors"}}, "not a file name"),
        ({"metadata": {}}, "no weight_map"),
        ("[", "not valid JSON"),
    ],
)
def test_bad_index_is_refused(tmp_path: Path, index: object, fragment: str) -> None:
    text = index if isinstance(index, str) else json.dumps(index)
    (tmp_path / "model.safetensors.index.json").write_text(text, encoding="utf-8")
    with pytest.raises(ModelFileError, match=fragment):
        read_safetensors_folder(tmp_path)


def test_folder_without_weights_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"no \*\.safetensors files"):
        read_safetensors_folder(tmp_path)
