"""The bounded GGUF reader: exact round trips of what gguf-py's GGUFWriter wrote,
split models found from any part, and a one-line ModelFileError (naming the file,
the problem and the byte offset) for every kind of broken or lying file."""

from __future__ import annotations

import math
import shutil
import struct
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q

from yoyu.errors import ModelFileError, ModelNotFoundError
from yoyu.models import gguf as gguf_reader
from yoyu.models.ggml_types import (
    GGML_TYPES,
    TensorShapeError,
    element_count,
    ggml_type_named,
    tensor_bytes,
)
from yoyu.models.gguf import ArrayInfo, GGUFFile, read_gguf_file
from yoyu.models.gguf_split import read_gguf_model_files

# -- raw GGUF bytes, for files no writer would produce ---------------------------------


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return u64(len(raw)) + raw


def kv(key: str, type_id: int, payload: bytes) -> bytes:
    return gstr(key) + u32(type_id) + payload


def kv_u32(key: str, value: int) -> bytes:
    return kv(key, 4, u32(value))


def tensor_info(name: str, dims: Sequence[int], type_id: int, offset: int) -> bytes:
    return gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(type_id) + u64(offset)


def gguf_bytes(
    kvs: Sequence[bytes] = (),
    tensors: Sequence[bytes] = (),
    *,
    version: int = 3,
    tensor_count: int | None = None,
    kv_count: int | None = None,
    data_bytes: int = 0,
) -> bytes:
    counts = u64(len(tensors) if tensor_count is None else tensor_count)
    counts += u64(len(kvs) if kv_count is None else kv_count)
    body = b"GGUF" + u32(version) + counts + b"".join(kvs) + b"".join(tensors)
    padding = b"\0" * (-len(body) % 32) if tensors else b""
    return body + padding + b"\0" * data_bytes


ARCH = kv("general.architecture", 8, gstr("llama"))
F32_ROW = tensor_info("blk.0.attn_norm.weight", [8], 0, 0)  # 32 bytes of F32


# -- files written by gguf-py -----------------------------------------------------------


def write_with_gguf_py(
    path: Path,
    add: Callable[[gguf.GGUFWriter], None],
    *,
    endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE,
) -> Path:
    writer = gguf.GGUFWriter(path, "llama", endianess=endianess)
    add(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def quantized(qtype: Q, ne: Sequence[int]) -> np.ndarray:
    """Zero bytes of the right size for a ggml-order shape, as GGUFWriter takes them."""
    block, type_size = GGML_QUANT_SIZES[qtype]
    byte_shape = (*reversed(ne[1:]), ne[0] // block * type_size)
    return np.zeros(byte_shape, dtype=np.uint8)


TENSORS: tuple[tuple[str, tuple[int, ...], Q], ...] = (
    ("token_embd.weight", (256, 40), Q.Q4_K),
    ("blk.0.attn_norm.weight", (256,), Q.F32),
    ("blk.0.attn_q.weight", (256, 256), Q.Q8_0),
    ("blk.0.ffn_down.weight", (512, 256), Q.Q6_K),
    ("blk.1.ffn_gate_exps.weight", (256, 64, 4), Q.MXFP4),
    ("blk.1.attn_k.weight", (64, 32), Q.F16),
    ("output.weight", (256, 40), Q.Q5_0),
)


def add_everything(writer: gguf.GGUFWriter) -> None:
    writer.add_name("Round Trip")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -100)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -30000)
    writer.add_uint32("t.u32", 4_000_000_000)
    writer.add_int32("t.i32", -2_000_000_000)
    writer.add_float32("t.f32", 0.25)
    writer.add_uint64("t.u64", 2**63 + 5)
    writer.add_int64("t.i64", -(2**62))
    writer.add_float64("t.f64", 1e-300)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "héllo, 世界")
    writer.add_array("t.ints", [3, 1, 4, 1, 5])
    writer.add_array("t.strs", ["a", "bc", ""])
    writer.add_array("t.bools", [True, False, True])
    writer.add_token_list([f"tok{i}" for i in range(5000)])
    writer.add_token_scores([0.5] * 3000)
    for name, ne, qtype in TENSORS:
        if qtype == Q.F32:
            writer.add_tensor(name, np.zeros(tuple(reversed(ne)), dtype=np.float32))
        elif qtype == Q.F16:
            writer.add_tensor(name, np.zeros(tuple(reversed(ne)), dtype=np.float16))
        else:
            writer.add_tensor(name, quantized(qtype, ne), raw_dtype=qtype)


@pytest.fixture
def round_trip(tmp_path: Path) -> GGUFFile:
    return read_gguf_file(write_with_gguf_py(tmp_path / "round.gguf", add_everything))


def test_every_metadata_value_type_reads_back(round_trip: GGUFFile) -> None:
    meta = round_trip.metadata
    assert meta["general.architecture"] == "llama"
    assert meta["general.name"] == "Round Trip"
    expected = {
        "t.u8": 200,
        "t.i8": -100,
        "t.u16": 60000,
        "t.i16": -30000,
        "t.u32": 4_000_000_000,
        "t.i32": -2_000_000_000,
        "t.f32": 0.25,
        "t.u64": 2**63 + 5,
        "t.i64": -(2**62),
        "t.f64": 1e-300,
        "t.bool": True,
        "t.str": "héllo, 世界",
        "t.ints": [3, 1, 4, 1, 5],
        "t.strs": ["a", "bc", ""],
        "t.bools": [True, False, True],
    }
    assert {key: meta[key] for key in expected} == expected
    assert type(meta["t.bool"]) is bool


def test_long_arrays_keep_only_their_type_and_length(round_trip: GGUFFile) -> None:
    # the token list alone also keeps its longest item: "tok4999", 7 bytes
    assert round_trip.metadata["tokenizer.ggml.tokens"] == ArrayInfo("string", 5000, 7)
    assert round_trip.metadata["tokenizer.ggml.scores"] == ArrayInfo("float32", 3000)
    assert len(round_trip.metadata["tokenizer.ggml.tokens"]) == 5000


def test_tensor_table_matches_what_was_written(round_trip: GGUFFile, tmp_path: Path) -> None:
    peer = gguf.GGUFReader(tmp_path / "round.gguf")
    assert [t.name for t in round_trip.tensors] == [name for name, _, _ in TENSORS]
    for tensor, (_, ne, qtype), theirs in zip(
        round_trip.tensors, TENSORS, peer.tensors, strict=True
    ):
        block, type_size = GGML_QUANT_SIZES[qtype]
        assert tensor.type_name == qtype.name
        assert tensor.shape == ne
        assert tensor.n_params == math.prod(ne)
        assert tensor.n_bytes == math.prod(ne) // block * type_size == int(theirs.n_bytes)
        assert tensor.offset == int(theirs.data_offset)
        assert tensor.offset % 32 == 0
        assert tensor.file_index == 0
    assert [t.layer for t in round_trip.tensors] == [None, 0, 0, 0, 1, 1, None]
    assert round_trip.version == 3
    assert round_trip.alignment == 32
    assert round_trip.file_bytes == (tmp_path / "round.gguf").stat().st_size
    assert round_trip.data_offset == round_trip.tensors[0].offset
    assert not round_trip.big_endian


@pytest.mark.parametrize("chunk_bytes", [8, 13, 100, 4099])
def test_tiny_read_chunks_give_the_same_header(
    round_trip: GGUFFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    """Every field, string and the stepped-over token list straddle chunk boundaries."""
    monkeypatch.setattr(gguf_reader, "CHUNK_BYTES", chunk_bytes)
    assert read_gguf_file(tmp_path / "round.gguf") == round_trip


def test_custom_alignment_places_tensors_like_gguf_py(tmp_path: Path) -> None:
    def add(writer: gguf.GGUFWriter) -> None:
        writer.add_custom_alignment(256)
        writer.data_alignment = 256
        writer.add_tensor("a.weight", np.zeros((3,), dtype=np.float32))
        writer.add_tensor("b.weight", np.zeros((5,), dtype=np.float32))

    path = write_with_gguf_py(tmp_path / "aligned.gguf", add)
    header = read_gguf_file(path)
    peer = gguf.GGUFReader(path)
    assert header.alignment == 256
    assert [t.offset for t in header.tensors] == [int(t.data_offset) for t in peer.tensors]
    assert [t.offset % 256 for t in header.tensors] == [0, 0]


def test_big_endian_file_reads_the_same_as_little_endian(tmp_path: Path) -> None:
    little = read_gguf_file(write_with_gguf_py(tmp_path / "le.gguf", add_everything))
    big = read_gguf_file(
        write_with_gguf_py(tmp_path / "be.gguf", add_everything, endianess=gguf.GGUFEndian.BIG)
    )
    assert big.big_endian
    assert big.metadata == little.metadata
    assert big.tensors == little.tensors
    assert big.version == little.version == 3


# -- the ggml type table ----------------------------------------------------------------


@pytest.mark.parametrize("qtype", list(Q), ids=lambda q: q.name)
def test_type_table_agrees_with_gguf_py(qtype: Q) -> None:
    ours = GGML_TYPES[qtype.value]
    assert ours.name == qtype.name
    assert ggml_type_named(qtype.name.lower()) == ours
    if qtype == Q.Q8_1:
        # gguf-py 0.19 still says 40 bytes; ggml's block_q8_1 is two halfs + 32 quants and
        # static_asserts sizeof == 36 (ggml/src/ggml-common.h), which is what ggml allocates.
        assert (ours.block_size, ours.block_bytes) == (32, 36)
    else:
        assert (ours.block_size, ours.block_bytes) == GGML_QUANT_SIZES[qtype]


def test_tensor_bytes_refuses_impossible_shapes() -> None:
    q4_k = GGML_TYPES[Q.Q4_K.value]
    assert tensor_bytes(q4_k, (512, 3)) == 2 * 3 * 144
    assert tensor_bytes(GGML_TYPES[Q.F32.value], ()) == 4
    with pytest.raises(TensorShapeError, match="block size 256"):
        tensor_bytes(q4_k, (100, 3))
    with pytest.raises(TensorShapeError, match="overflow"):
        element_count((2**40, 2**40))
    with pytest.raises(TensorShapeError, match="out of range"):
        element_count((2**64,))
    with pytest.raises(TensorShapeError, match="out of range"):
        element_count((-1,))


# -- split models -----------------------------------------------------------------------


def write_split(folder: Path, stem: str, n_tensors: int, per_part: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(folder / f"{stem}.gguf", "llama", split_max_tensors=per_part)
    writer.add_name(stem)
    for index in range(n_tensors):
        writer.add_tensor(f"blk.{index}.w", np.zeros((index + 1, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sorted(folder.glob(f"{stem}-*.gguf"))


def test_split_model_reads_the_same_from_any_part(tmp_path: Path) -> None:
    parts = write_split(tmp_path, "model", n_tensors=5, per_part=2)
    assert [p.name for p in parts] == [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    models = [read_gguf_model_files(part) for part in parts]
    for model in models:
        assert model.paths == tuple(parts)
        assert model.tensors == models[0].tensors
        assert model.stem == "model"
        assert model.file_bytes == sum(p.stat().st_size for p in parts)
        assert model.metadata["general.name"] == "model"
    tensors = models[0].tensors
    assert [t.name for t in tensors] == [f"blk.{i}.w" for i in range(5)]
    assert [t.file_index for t in tensors] == [0, 0, 1, 1, 2]
    for tensor in tensors:
        peer = gguf.GGUFReader(parts[tensor.file_index])
        theirs = next(t for t in peer.tensors if t.name == tensor.name)
        assert tensor.offset == int(theirs.data_offset)
        assert tensor.n_bytes == int(theirs.n_bytes)


def test_missing_part_is_named(tmp_path: Path) -> None:
    parts = write_split(tmp_path, "model", n_tensors=5, per_part=2)
    parts[1].unlink()
    with pytest.raises(ModelFileError) as caught:
        read_gguf_model_files(parts[2])
    assert_one_line(caught.value, "model-00002-of-00003.gguf", "missing")


def test_part_renamed_away_from_the_split_pattern_is_refused(tmp_path: Path) -> None:
    parts = write_split(tmp_path, "model", n_tensors=5, per_part=2)
    renamed = shutil.copy(parts[0], tmp_path / "model.gguf")
    with pytest.raises(ModelFileError) as caught:
        read_gguf_model_files(Path(renamed))
    assert_one_line(caught.value, "model.gguf", "part 1 of a 3-part split")


def test_parts_of_two_different_splits_are_refused(tmp_path: Path) -> None:
    ours = write_split(tmp_path / "a", "model", n_tensors=5, per_part=2)
    theirs = write_split(tmp_path / "b", "model", n_tensors=4, per_part=2)
    shutil.copy(theirs[1], ours[1])  # right name, but from a 2-part split
    with pytest.raises(ModelFileError) as caught:
        read_gguf_model_files(ours[0])
    assert_one_line(caught.value, "model-00002-of-00003.gguf", "split.count=2")


# -- broken and lying files -------------------------------------------------------------


def assert_one_line(error: Exception, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def read_bytes_as_gguf(tmp_path: Path, data: bytes, name: str = "bad.gguf") -> ModelFileError:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelFileError) as caught:
        read_gguf_file(path)
    assert name in str(caught.value)
    return caught.value


MALFORMED: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "wrong magic": (b"ABCD" + bytes(20), ("not a GGUF file (magic b'ABCD')",)),
    "lfs pointer": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 4\n",
        ("this is a Git LFS pointer, not the model; run git lfs pull",),
    ),
    "html page": (b"\n<!DOCTYPE html><html><body>Sign in</body></html>", ("HTML",)),
    "safetensors": (u64(19) + b'{"__metadata__":{}}', ("safetensors file",)),
    "ggjt": (b"tjgg" + u32(3) + bytes(16), ("pre-GGUF",)),
    "empty": (b"", ("empty",)),
    "tiny": (b"GG", ("not a GGUF file (magic b'GG')",)),
    "version 1": (gguf_bytes(version=1), ("GGUF version 1", "no longer supported", "byte 4:")),
    "unknown version": (gguf_bytes(version=99), ("unknown GGUF version 99", "byte 4:")),
    "array length 2^60": (
        gguf_bytes([ARCH, kv("x.arr", 9, u32(0) + u64(2**60))]),
        ("length of array 'x.arr' is 1152921504606846976", "byte 90:"),
    ),
    "string length 2^63": (
        gguf_bytes([kv("x.s", 8, u64(2**63) + b"abc")]),
        ("length of value of 'x.s' is 9223372036854775808", "byte 39:"),
    ),
    "tensor count 2^40": (
        gguf_bytes([ARCH], tensor_count=2**40),
        ("tensor count is 1099511627776", "byte 8:"),
    ),
    "metadata count 2^40": (gguf_bytes([ARCH], kv_count=2**40), ("metadata count", "byte 16:")),
    "1000 dimensions": (
        gguf_bytes([ARCH], [tensor_info("t", [1] * 1000, 0, 0)]),
        ("tensor 't' has 1000 dimensions", "byte 69:"),
    ),
    "dims overflow": (
        gguf_bytes([ARCH], [tensor_info("t", [2**40, 2**40], 0, 0)]),
        ("tensor 't' of type F32", "overflow"),
    ),
    "dim past int64": (
        gguf_bytes([ARCH], [tensor_info("t", [2**63 + 1], 0, 0)]),
        ("out of range",),
    ),
    "offset past end": (
        gguf_bytes([ARCH], [tensor_info("blk.0.w", [8], 0, 4096)], data_bytes=32),
        ("tensor 'blk.0.w' (32 bytes at data offset 4096) ends past the end of the file",),
    ),
    "data past end": (
        gguf_bytes([ARCH], [F32_ROW], data_bytes=31),
        ("ends past the end of the file", "truncated"),
    ),
    "misaligned offset": (
        gguf_bytes([ARCH], [tensor_info("t", [8], 0, 3)], data_bytes=64),
        ("data offset 3 is not a multiple of the alignment 32",),
    ),
    "unknown ggml type": (
        gguf_bytes([ARCH], [tensor_info("t", [8], 99, 0)], data_bytes=64),
        ("tensor 't' has unknown ggml type id 99",),
    ),
    "unknown value type": (
        gguf_bytes([ARCH, kv("x.v", 13, u32(1))]),
        ("'x.v' has unknown metadata value type 13", "byte 80:"),
    ),
    "nested array": (
        gguf_bytes([kv("x.a", 9, u32(9) + u64(1) + u32(4) + u64(1) + u32(7))]),
        ("'x.a' is an array of arrays",),
    ),
    "duplicate key": (gguf_bytes([ARCH, ARCH]), ("duplicate metadata key 'general.architecture'",)),
    "duplicate tensor": (
        gguf_bytes([ARCH], [F32_ROW, F32_ROW], data_bytes=64),
        ("duplicate tensor name 'blk.0.attn_norm.weight'",),
    ),
    "alignment not a power of two": (
        gguf_bytes([kv_u32("general.alignment", 48)]),
        ("general.alignment 48 is not a power of two",),
    ),
    "alignment zero": (gguf_bytes([kv_u32("general.alignment", 0)]), ("not a power of two",)),
    "alignment a string": (
        gguf_bytes([kv("general.alignment", 8, gstr("32"))]),
        ("general.alignment is '32', not an integer",),
    ),
    "row not a multiple of the block": (
        gguf_bytes([ARCH], [tensor_info("t", [100, 2], 12, 0)], data_bytes=1024),
        ("rows of 100 elements are not a multiple of Q4_K's block size 256",),
    ),
    "lying string inside a long array": (
        gguf_bytes([kv("x.toks", 9, u32(8) + u64(1100) + gstr("a") * 1099 + u64(2**40))]),
        ("a string in array 'x.toks' (of 1100) runs past the end of the file",),
    ),
    "array items beyond the file": (
        gguf_bytes([kv("x.f", 9, u32(6) + u64(5000) + bytes(100))]),
        ("length of array 'x.f' is 5000, more than the 100 bytes left",),
    ),
    "control characters in a key": (
        gguf_bytes([kv("bad\nkey", 13, b"")]),
        ("'bad\\nkey' has unknown metadata value type 13",),
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_file_gives_one_line_error(tmp_path: Path, case: str) -> None:
    data, fragments = MALFORMED[case]
    assert_one_line(read_bytes_as_gguf(tmp_path, data), *fragments)


def test_every_truncation_of_a_valid_file_is_refused(tmp_path: Path) -> None:
    full = write_with_gguf_py(tmp_path / "full.gguf", add_everything).read_bytes()
    header_end = read_gguf_file(tmp_path / "full.gguf").data_offset
    step = max(1, header_end // 400)  # ~400 cuts across magic, metadata and tensor table
    cuts = [*range(0, 64), *range(64, header_end, step), header_end, len(full) - 1]
    for cut in cuts:
        error = read_bytes_as_gguf(tmp_path, full[:cut], name="cut.gguf")
        assert "\n" not in str(error)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as caught:
        read_gguf_file(tmp_path)
    assert_one_line(caught.value, str(tmp_path), "is a directory")
    with pytest.raises(ModelNotFoundError) as missing:
        read_gguf_file(tmp_path / "nope.gguf")
    assert_one_line(missing.value, "nope.gguf", "no such file")


TIB = 1 << 40


@pytest.mark.parametrize(
    ("claim", "fragment"),
    [
        (gguf_bytes([ARCH], tensor_count=2**30), "over the sane maximum of 131072"),
        (gguf_bytes([ARCH], kv_count=2**30), "over the sane maximum of 65536"),
        (gguf_bytes([kv("x.s", 8, u64(2**35))]), "over the sane maximum of 16777216"),
        (gguf_bytes([kv("x.a", 9, u32(10) + u64(2**34))]), "over the sane maximum of 16777216"),
        (gguf_bytes([kv("x.a", 9, u32(8) + u64(2**30))]), "over the sane maximum of 16777216"),
    ],
    ids=["tensors", "keys", "string", "u64-array", "string-array"],
)
def test_claims_a_huge_file_could_hold_are_capped_without_allocating(
    tmp_path: Path, claim: bytes, fragment: str
) -> None:
    path = tmp_path / "huge.gguf"
    with path.open("wb") as sparse:
        sparse.write(claim)
        sparse.truncate(TIB)  # a hole: no disk used, but every length "fits"
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as caught:
            read_gguf_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_one_line(caught.value, "huge.gguf", fragment)
    assert peak < 8 << 20
