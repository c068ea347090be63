"""Fuzzing the GGUF reader: whatever the bytes, the only outcomes are a ModelSpec or
a one-line ModelFileError (no other exception, no hang, no huge allocation).

The seed is a small but complete model written by gguf-py (metadata of several
types, a long token list that takes the fast skipping path, quantized tensors);
hypothesis truncates it, overwrites bytes, plants lying counts and lengths, and
builds headers from random bytes.
"""

from __future__ import annotations

import struct
from datetime import timedelta
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yoyu.errors import ModelFileError
from yoyu.models.gguf import read_gguf_file
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.models.spec import ModelSpec

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
INTERESTING = [
    0,
    1,
    2,
    3,
    4,
    31,
    255,
    2**16,
    2**31,
    2**32 - 1,
    2**32,
    2**40,
    2**60,
    2**63,
    2**64 - 1,
]


def write_seed(path: Path) -> None:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("seed")
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv([2, 1])
    writer.add_feed_forward_length(128)
    writer.add_context_length(256)
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_array("general.tags", ["a", "b"])
    writer.add_token_list([f"t{i}" for i in range(1100)])  # > 1024: stepped over
    writer.add_token_types([1] * 1100)
    writer.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float16))
    writer.add_tensor("blk.0.attn_norm.weight", np.zeros((64,), dtype=np.float32))
    writer.add_tensor(
        "blk.1.attn_q.weight",
        np.zeros((64, 68), dtype=np.uint8),
        raw_dtype=gguf.GGMLQuantizationType.Q8_0,
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int, int]:
    """The seed's bytes, where its tensor table ends, and where its last tensor ends."""
    path = tmp_path_factory.mktemp("seed") / "seed.gguf"
    write_seed(path)
    header = read_gguf_file(path)
    last = max(header.tensors, key=lambda t: t.offset)
    return path.read_bytes(), header.data_offset, last.offset + last.n_bytes


def read_outcome(path: Path, data: bytes) -> ModelSpec | ModelFileError:
    path.write_bytes(data)
    try:
        return read_gguf_model(path)
    except ModelFileError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message, message
        assert path.name in message
        return error


def test_seed_reads(tmp_path: Path, seed: tuple[bytes, int, int]) -> None:
    outcome = read_outcome(tmp_path / "seed.gguf", seed[0])
    assert isinstance(outcome, ModelSpec)
    assert (outcome.n_layers, outcome.vocab_size, outcome.n_head_kv_layers) == (2, 1100, (2, 1))


@FUZZ
@given(st.data())
def test_truncation(tmp_path: Path, seed: tuple[bytes, int, int], data: st.DataObject) -> None:
    seed_bytes, _, tensors_end = seed
    cut = data.draw(st.integers(0, len(seed_bytes) - 1))
    outcome = read_outcome(tmp_path / "cut.gguf", seed_bytes[:cut])
    if cut < tensors_end:
        assert isinstance(outcome, ModelFileError)


@FUZZ
@given(st.data())
def test_overwritten_bytes(
    tmp_path: Path, seed: tuple[bytes, int, int], data: st.DataObject
) -> None:
    seed_bytes, header_end, _ = seed
    mutated = bytearray(seed_bytes)
    edits = data.draw(
        st.lists(st.tuples(st.integers(0, header_end - 1), st.integers(0, 255)), max_size=8)
    )
    for position, value in edits:
        mutated[position] = value
    read_outcome(tmp_path / "flipped.gguf", bytes(mutated))


@FUZZ
@given(st.data())
def test_lying_counts_and_lengths(
    tmp_path: Path, seed: tuple[bytes, int, int], data: st.DataObject
) -> None:
    seed_bytes, header_end, _ = seed
    mutated = bytearray(seed_bytes)
    width = data.draw(st.sampled_from([4, 8]))
    position = data.draw(st.integers(4, header_end - width))
    value = data.draw(st.sampled_from(INTERESTING) | st.integers(0, 2**64 - 1))
    mutated[position : position + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
    read_outcome(tmp_path / "lying.gguf", bytes(mutated))


@FUZZ
@given(version=st.sampled_from([2, 3]), body=st.binary(max_size=600))
def test_random_header_after_magic(tmp_path: Path, version: int, body: bytes) -> None:
    read_outcome(tmp_path / "random.gguf", b"GGUF" + struct.pack("<I", version) + body)


@FUZZ
@given(
    key_length=st.integers(0, 2**64 - 1),
    value_type=st.integers(0, 20),
    length=st.sampled_from(INTERESTING) | st.integers(0, 2**64 - 1),
    tail=st.binary(max_size=64),
)
def test_random_lengths_in_one_key_value(
    tmp_path: Path, key_length: int, value_type: int, length: int, tail: bytes
) -> None:
    key = b"general.architecture"
    kv = struct.pack("<Q", min(key_length, 2**64 - 1)) + key + struct.pack("<I", value_type)
    kv += struct.pack("<Q", length) + tail
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    read_outcome(tmp_path / "kv.gguf", header + kv)
