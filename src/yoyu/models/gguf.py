"""A bounded reader for one GGUF file's header: metadata and tensor table, never weights.

GGUF (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) starts with
magic, version, tensor count and metadata count, then the metadata key/value
pairs, then one info record per tensor (name, dims, ggml type, offset), then
the aligned data section. Everything yoyu needs sits before the data, so the
reader walks that prefix with a cursor over 1 MiB chunks and stops.

Two things shape the code:

- **A header may lie.** Every count and length is checked against the bytes
  left in the file and against a sane maximum before anything is read or
  allocated (as ollama's ``checkedLength`` does), so a claimed array of 2^60
  items or a 2^63-byte string fails at once with a one-line ``ModelFileError``
  naming the file, the problem and the byte offset.
- **Big models have big vocabularies.** The tokenizer's token and merge lists
  (160k+ strings each for Kimi K2) are most of a header; only their length
  matters here, so long arrays are stepped over without building a single
  Python string and kept as ``ArrayInfo(item_type, count)``.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias

from yoyu.errors import ModelFileError, ModelNotFoundError
from yoyu.i18n import Message, message_of
from yoyu.models.ggml_types import GGMLType, TensorShapeError, ggml_type, tensor_bytes
from yoyu.models.spec import TensorInfo, layer_of

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32  # ggml's GGUF_DEFAULT_ALIGNMENT, used when general.alignment is absent
GGML_MAX_DIMS = 4

CHUNK_BYTES = 1 << 20
MAX_KEY_BYTES = 1 << 16
TOKENS_KEY = "tokenizer.ggml.tokens"
MAX_STRING_BYTES = 1 << 24  # chat templates are the longest real strings (tens of KiB)
MAX_TENSOR_NAME_BYTES = 1 << 12  # ggml itself stops at 64
MAX_ARRAY_ITEMS = 1 << 24  # real vocabularies and merge lists stay under 1M
MAX_KV_COUNT = 1 << 16
MAX_TENSOR_COUNT = 1 << 17
KEEP_ARRAY_ITEMS = 1024  # longer arrays are stepped over and kept as ArrayInfo

_MIN_KV_BYTES = 8 + 4 + 1  # empty key length, value type, one-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # empty name, n_dims, type, offset
_CORRUPT = message_of("the file is corrupt; download or convert it again")
_TRUNCATED = message_of("the file is truncated (an interrupted download?); download it again")


class ByteStream(Protocol):
    """What the reader needs of a file: seek to an offset, read bytes from there
    (an open local file, or a remote file fetched by HTTP Range requests)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep (token lists, merges): its type and length,
    and for the token list its longest item in bytes (a prompt of N bytes is at least
    N / longest tokens: a bound the gateway checks before any engine sees a prompt)."""

    item_type: str
    count: int
    longest_item_bytes: int = 0

    def __len__(self) -> int:
        return self.count


MetadataScalar: TypeAlias = "int | float | bool | str"
MetadataValue: TypeAlias = "MetadataScalar | list[MetadataScalar] | ArrayInfo"


@dataclass(frozen=True)
class GGUFFile:
    """One GGUF file's header. Tensor shapes are in ggml order (``ne[0]``, the row
    length, first), as llama.cpp prints them; tensor offsets are absolute."""

    path: Path | str  # a local path, or the URL of a file read over HTTP
    version: int
    metadata: dict[str, MetadataValue]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    file_bytes: int
    alignment: int
    big_endian: bool = False


@dataclass(frozen=True)
class _ValueType:
    name: str
    code: str  # struct format character; "" for string and array
    size: int  # bytes per value; 0 for string and array


_VALUE_TYPES: dict[int, _ValueType] = {
    0: _ValueType("uint8", "B", 1),
    1: _ValueType("int8", "b", 1),
    2: _ValueType("uint16", "H", 2),
    3: _ValueType("int16", "h", 2),
    4: _ValueType("uint32", "I", 4),
    5: _ValueType("int32", "i", 4),
    6: _ValueType("float32", "f", 4),
    7: _ValueType("bool", "?", 1),
    8: _ValueType("string", "", 0),
    9: _ValueType("array", "", 0),
    10: _ValueType("uint64", "Q", 8),
    11: _ValueType("int64", "q", 8),
    12: _ValueType("float64", "d", 8),
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class _RawTensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLType
    n_params: int
    n_bytes: int
    relative_offset: int
    info_at: int  # where its info record starts, for messages


def read_gguf_file(path: Path, file_index: int = 0) -> GGUFFile:
    """Read the header and tensor table of one ``.gguf`` file (one shard of a split model)."""
    _check_is_file(path)
    try:
        with path.open("rb") as stream:
            file_bytes = os.fstat(stream.fileno()).st_size
            return read_gguf_stream(stream, path, file_bytes, file_index)
    except OSError as error:
        raise ModelFileError.from_message(
            "{path}: cannot read the file ({reason})",
            path=display_path(path),
            reason=error.strerror,
        ) from None


def read_gguf_stream(
    stream: ByteStream,
    source: Path | str,
    file_bytes: int,
    file_index: int = 0,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> GGUFFile:
    """Read a GGUF header from any seekable byte stream of ``file_bytes`` bytes.

    The seam for files that are not on this disk: the reader only seeks and
    reads (1 MiB at a time, from the start), so a stream that fetches those
    ranges over HTTP gets the same checks and the same ``GGUFFile`` as a local
    file. ``source`` names the file in messages and in ``GGUFFile.path``;
    ``chunk_bytes`` is how much the reader asks for at a time (a remote stream
    asks for less and reads ahead itself, so a 7 KiB shard header costs 64 KiB).
    """
    return _HeaderReader(stream, source, file_bytes, chunk_bytes).read(file_index)


def _check_is_file(path: Path) -> None:
    if not path.exists():
        raise ModelNotFoundError.from_message("{path}: no such file", path=display_path(path))
    if path.is_dir():
        raise ModelFileError.from_message(
            "{path}: is a directory, not a GGUF file; give the path of a .gguf file",
            path=display_path(path),
        )
    if not path.is_file():
        raise ModelFileError.from_message("{path}: is not a regular file", path=display_path(path))


def display_path(path: Path | str) -> str:
    """The path as one printable line, whatever characters its name holds."""
    text = str(path)
    return text if text.isprintable() else ascii(text)


def identify_foreign_file(head: bytes) -> Message | None:
    """Name what a non-GGUF file looks like, from its first bytes, or None."""
    stripped = head.lstrip().lower()
    if head.startswith(b"version https://git-lfs"):
        return message_of("this is a Git LFS pointer, not the model; run git lfs pull")
    if stripped.startswith((b"<!doctype html", b"<html", b"<?xml")):
        return message_of(
            "this is an HTML/XML page (a failed or login-walled download?), not the model"
        )
    if len(head) >= 10 and head[8:10] == b'{"':
        return message_of(
            "this is a safetensors file, not GGUF; give yoyu its folder (config.json + weights)"
        )
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg"):
        return message_of(
            "this is a pre-GGUF GGML/GGJT file; convert it to GGUF with a current llama.cpp"
        )
    if head.startswith(b"PK\x03\x04"):
        return message_of("this is a zip archive (a PyTorch checkpoint?), not a GGUF file")
    return None


class _HeaderReader:
    """A cursor over the file that keeps at most one chunk (or one string) in memory."""

    def __init__(
        self, stream: ByteStream, path: Path | str, file_bytes: int, chunk_bytes: int = CHUNK_BYTES
    ) -> None:
        self.stream = stream
        self.chunk_bytes = chunk_bytes
        self.path = path
        self.file_bytes = file_bytes
        self.pos = 0
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.endian = "<"
        self.structs: dict[str, struct.Struct] = {}

    # -- errors ---------------------------------------------------------------

    def fail(self, what: str | Message, at: int, advice: Message = _CORRUPT) -> ModelFileError:
        return ModelFileError.from_message(
            "{path}: byte {at}: {what}; {advice}",
            path=display_path(self.path), at=at, what=what, advice=advice,
        )  # fmt: skip

    # -- primitive reads ------------------------------------------------------

    def need(self, n_bytes: int, what: str) -> None:
        """Make ``[pos, pos + n_bytes)`` readable from ``buf``, or fail as truncated."""
        end = self.pos + n_bytes
        if end > self.file_bytes:
            ends = message_of(
                "the file ends ({size} bytes) inside the {what}", size=self.file_bytes, what=what
            )
            raise self.fail(ends, self.pos, _TRUNCATED)
        if self.base <= self.pos and end <= self.base + len(self.buf):
            return
        self.stream.seek(self.pos)
        data = self.stream.read(max(n_bytes, self.chunk_bytes))
        if len(data) < n_bytes:
            raise self.fail(f"{what}: the file shrank while being read", self.pos, _TRUNCATED)
        self.buf, self.base = data, self.pos

    def skip(self, n_bytes: int, what: str) -> None:
        if self.pos + n_bytes > self.file_bytes:
            raise self.fail(
                f"{what} claims {n_bytes} bytes but only {self.file_bytes - self.pos} remain",
                self.pos,
            )
        self.pos += n_bytes

    def unpack(self, code: str, what: str) -> int | float | bool:
        packer = self.structs.get(code)
        if packer is None:
            packer = self.structs[code] = struct.Struct(self.endian + code)
        self.need(packer.size, what)
        value: int | float | bool = packer.unpack_from(self.buf, self.pos - self.base)[0]
        self.pos += packer.size
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("I", what))

    def u64(self, what: str) -> int:
        return int(self.unpack("Q", what))

    def count(self, what: str, limit: int, min_item_bytes: int) -> int:
        """A count or length, refused when the bytes left could not hold it."""
        at = self.pos
        value = self.u64(what)
        room = (self.file_bytes - self.pos) // max(min_item_bytes, 1)
        if value > room:
            raise self.fail(
                message_of(
                    "{what} is {value}, more than the {left} bytes left in the file can hold",
                    what=what,
                    value=value,
                    left=self.file_bytes - self.pos,
                ),
                at,
            )
        if value > limit:
            raise self.fail(f"{what} is {value}, over the sane maximum of {limit}", at)
        return value

    def string(self, what: str, limit: int) -> str:
        length = self.count(f"length of {what}", limit, 1)
        self.need(length, what)
        start = self.pos - self.base
        self.pos += length
        return self.buf[start : start + length].decode("utf-8", errors="replace")

    # -- the file -------------------------------------------------------------

    def read(self, file_index: int) -> GGUFFile:
        version = self.read_preamble()
        tensor_count = self.count("tensor count", MAX_TENSOR_COUNT, _MIN_TENSOR_INFO_BYTES)
        kv_count = self.count("metadata count", MAX_KV_COUNT, _MIN_KV_BYTES)
        metadata, alignment = self.read_metadata(kv_count)
        raw_tensors = [self.read_tensor_info() for _ in range(tensor_count)]
        data_offset = -(-self.pos // alignment) * alignment
        tensors = tuple(self.place(raw_tensors, data_offset, alignment, file_index))
        return GGUFFile(
            path=self.path,
            version=version,
            metadata=metadata,
            tensors=tensors,
            data_offset=data_offset,
            file_bytes=self.file_bytes,
            alignment=alignment,
            big_endian=self.endian == ">",
        )

    def read_preamble(self) -> int:
        """Check magic and version; pick the byte order from the version field."""
        self.stream.seek(0)
        head = self.stream.read(64)
        if not head:
            raise ModelFileError.from_message(
                "{path}: the file is empty; download it again", path=display_path(self.path)
            )
        if head[:4] != GGUF_MAGIC:
            what = identify_foreign_file(head) or message_of(
                "not a GGUF file (magic {magic!r}); give yoyu a .gguf model", magic=head[:4]
            )
            raise ModelFileError.from_message(
                "{path}: {what}", path=display_path(self.path), what=what
            )
        self.pos = 4
        version = self.u32("GGUF version")
        if version == 1:
            raise self.fail(
                message_of("GGUF version 1 is no longer supported (llama.cpp dropped it in 2023)"),
                4,
                message_of("convert the model again with a current llama.cpp"),
            )
        if version in SUPPORTED_VERSIONS:
            return version
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in SUPPORTED_VERSIONS:
            self.endian, self.structs = ">", {}
            return swapped
        raise self.fail(
            message_of(
                "unknown GGUF version {version} (yoyu reads versions 2 and 3)", version=version
            ),
            4,
            message_of("the file is corrupt or from a newer format; update yoyu or re-convert it"),
        )

    def read_metadata(self, kv_count: int) -> tuple[dict[str, MetadataValue], int]:
        metadata: dict[str, MetadataValue] = {}
        alignment = DEFAULT_ALIGNMENT
        for index in range(kv_count):
            at = self.pos
            key = self.string(f"metadata key #{index}", MAX_KEY_BYTES)
            if key in metadata:
                raise self.fail(f"duplicate metadata key {key!r}", at)
            value_at = self.pos
            metadata[key] = self.read_value(key)
            if key == "general.alignment":
                alignment = self.check_alignment(metadata[key], value_at)
        return metadata, alignment

    def check_alignment(self, value: MetadataValue, at: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"general.alignment is {value!r}, not an integer", at)
        if value <= 0 or value & (value - 1):
            raise self.fail(f"general.alignment {value} is not a power of two", at)
        return value

    def value_type(self, what: str) -> _ValueType:
        at = self.pos
        type_id = self.u32(f"value type of {what}")
        value_type = _VALUE_TYPES.get(type_id)
        if value_type is None:
            raise self.fail(f"{what} has unknown metadata value type {type_id}", at)
        return value_type

    def read_value(self, key: str) -> MetadataValue:
        value_type = self.value_type(repr(key))
        if value_type.name == "string":
            return self.string(f"value of {key!r}", MAX_STRING_BYTES)
        if value_type.name == "array":
            return self.read_array(key)
        return self.unpack(value_type.code, f"value of {key!r}")

    def read_array(self, key: str) -> list[MetadataScalar] | ArrayInfo:
        at = self.pos
        item_type = self.value_type(f"items of {key!r}")
        if item_type.name == "array":
            raise self.fail(f"{key!r} is an array of arrays, which GGUF readers refuse", at)
        min_item_bytes = item_type.size or 8
        count = self.count(f"length of array {key!r}", MAX_ARRAY_ITEMS, min_item_bytes)
        if count > KEEP_ARRAY_ITEMS:
            longest = self.step_over_array(key, item_type, count, at)
            return ArrayInfo(item_type.name, count, longest)
        if item_type.name == "string":
            return [self.string(f"item of {key!r}", MAX_STRING_BYTES) for _ in range(count)]
        packer = struct.Struct(f"{self.endian}{count}{item_type.code}")
        self.need(packer.size, f"array {key!r}")
        items: list[MetadataScalar] = list(packer.unpack_from(self.buf, self.pos - self.base))
        self.pos += packer.size
        return items

    def step_over_array(self, key: str, item_type: _ValueType, count: int, at: int) -> int:
        """Step over the array; the longest item's bytes (for strings: the token list's)."""
        if item_type.size:
            self.skip(count * item_type.size, f"array {key!r}")
            return 0
        if key == TOKENS_KEY:
            return self.step_over_tokens(count, at)
        self.step_over_strings(key, count, at)
        return 0

    def step_over_tokens(self, count: int, at: int) -> int:
        """``step_over_strings`` for the token list, keeping the longest length (slower:
        one comparison per item, so only for this one array)."""
        length_of = struct.Struct(self.endian + "Q").unpack_from
        longest, start = 0, 0
        while start < count:
            self.need(8, f"item {start} of array {TOKENS_KEY!r}")
            buf, rel = self.buf, self.pos - self.base
            index = start
            try:
                for index in range(start, count):  # noqa: B007 -- read after the loop
                    length = length_of(buf, rel)[0]
                    rel += 8 + length
                    if length > longest:
                        longest = length
                index = count
            except (struct.error, OverflowError):
                pass  # rel is where item `index` starts, beyond this chunk
            start = index
            self.pos = self.base + rel
            if self.pos > self.file_bytes:
                raise self.fail(f"a token (of {count}) runs past the end of the file", at)
        return longest

    def step_over_strings(self, key: str, count: int, at: int) -> None:
        """Walk ``count`` length-prefixed strings, looking only at the lengths.

        The inner loop is the hot path of the whole reader (two 160k-string
        lists in a Kimi K2 header), so it runs on the raw buffer and lets
        ``struct.error`` mark the end of the chunk instead of checking bounds
        on every item; ``need`` then refills from the item it stopped at.
        """
        length_of = struct.Struct(self.endian + "Q").unpack_from
        start = 0
        while start < count:
            self.need(8, f"item {start} of array {key!r}")
            buf, rel = self.buf, self.pos - self.base
            index = start
            try:
                for index in range(start, count):  # noqa: B007 -- read after the loop
                    rel += 8 + length_of(buf, rel)[0]
                index = count
            except (struct.error, OverflowError):
                pass  # rel is where item `index` starts, beyond this chunk
            start = index
            self.pos = self.base + rel
            if self.pos > self.file_bytes:
                raise self.fail(
                    f"a string in array {key!r} (of {count}) runs past the end of the file", at
                )

    def read_tensor_info(self) -> _RawTensor:
        at = self.pos
        name = self.string("tensor name", MAX_TENSOR_NAME_BYTES)
        n_dims = self.u32(f"dimension count of tensor {name!r}")
        if n_dims > GGML_MAX_DIMS:  # 0 is a scalar, as in gguf.cpp
            raise self.fail(f"tensor {name!r} has {n_dims} dimensions (ggml allows 4)", at)
        shape = tuple(self.u64(f"dimensions of tensor {name!r}") for _ in range(n_dims))
        type_id = self.u32(f"type of tensor {name!r}")
        relative_offset = self.u64(f"offset of tensor {name!r}")
        tensor_type = ggml_type(type_id)
        if tensor_type is None:
            raise self.fail(f"tensor {name!r} has unknown ggml type id {type_id}", at)
        try:
            n_bytes = tensor_bytes(tensor_type, shape)
        except TensorShapeError as error:
            raise self.fail(f"tensor {name!r} of type {tensor_type.name}: {error}", at) from None
        n_params = math.prod(shape)  # tensor_bytes has checked it fits an int64
        return _RawTensor(name, shape, tensor_type, n_params, n_bytes, relative_offset, at)

    def place(
        self, raw_tensors: list[_RawTensor], data_offset: int, alignment: int, file_index: int
    ) -> Iterator[TensorInfo]:
        """Turn info records into TensorInfo, checking each lies aligned inside the file."""
        seen: set[str] = set()
        data_bytes = self.file_bytes - data_offset
        for raw in raw_tensors:
            if raw.name in seen:
                raise self.fail(f"duplicate tensor name {raw.name!r}", raw.info_at)
            seen.add(raw.name)
            if raw.relative_offset % alignment:
                raise self.fail(
                    f"tensor {raw.name!r} data offset {raw.relative_offset} is not a multiple "
                    f"of the alignment {alignment}",
                    raw.info_at,
                )
            if raw.relative_offset + raw.n_bytes > data_bytes:
                raise self.fail(
                    message_of(
                        "tensor {name!r} ({size} bytes at data offset {offset}) ends past the "
                        "end of the file",
                        name=raw.name,
                        size=raw.n_bytes,
                        offset=raw.relative_offset,
                    ),
                    raw.info_at,
                    _TRUNCATED,
                )
            yield TensorInfo(
                name=raw.name,
                type_name=raw.ggml_type.name,
                shape=raw.shape,
                n_params=raw.n_params,
                n_bytes=raw.n_bytes,
                layer=layer_of(raw.name),
                file_index=file_index,
                offset=data_offset + raw.relative_offset,
            )
