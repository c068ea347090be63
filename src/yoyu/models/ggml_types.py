"""The ggml tensor types: how many bytes a tensor of a given type and shape holds.

A GGUF tensor table gives each tensor a ggml type id and its dimensions; its
size on disk (and in memory, once loaded) follows from the type's block size
and bytes per block. yoyu keeps its own table instead of asking the ``gguf``
package because the byte figures must match ggml exactly (``gguf`` 0.19 still
sizes Q8_1 at 40 bytes where ggml's ``block_q8_1`` is 36), and because types
removed from llama.cpp must still be sized when an old file is inspected.

Sources: ``ggml/include/ggml.h`` (``enum ggml_type``) and the ``type_traits``
table in ``ggml/src/ggml.c`` (``blck_size``, ``type_size``), llama.cpp master.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

INT64_MAX = (1 << 63) - 1
"""ggml stores element counts as int64_t; a larger product is a lying header."""


class TensorShapeError(ValueError):
    """A shape that no ggml tensor can have; readers turn it into a ModelFileError."""


@dataclass(frozen=True)
class GGMLType:
    """One ggml type: ``block_size`` elements are stored in ``block_bytes`` bytes."""

    type_id: int
    name: str
    block_size: int
    block_bytes: int
    removed: bool = False  # gone from llama.cpp (it refuses such files), still sized here

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.block_bytes / self.block_size


_TYPE_ROWS: tuple[tuple[int, str, int, int], ...] = (
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    # 4 (Q4_2) and 5 (Q4_3) were removed before GGUF existed.
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
    (42, "Q2_0", 64, 18),
)

# Interleaved repacks of Q4_0 / IQ4_NL that early-2024 files carried; llama.cpp now
# repacks at load time and refuses these ids, but their blocks were plain Q4_0 /
# IQ4_NL blocks (32 elements in 18 bytes), so an old file can still be sized.
_REMOVED_ROWS: tuple[tuple[int, str, int, int], ...] = (
    (31, "Q4_0_4_4", 32, 18),
    (32, "Q4_0_4_8", 32, 18),
    (33, "Q4_0_8_8", 32, 18),
    (36, "IQ4_NL_4_4", 32, 18),
    (37, "IQ4_NL_4_8", 32, 18),
    (38, "IQ4_NL_8_8", 32, 18),
)

GGML_TYPES: dict[int, GGMLType] = {
    **{row[0]: GGMLType(*row) for row in _TYPE_ROWS},
    **{row[0]: GGMLType(*row, removed=True) for row in _REMOVED_ROWS},
}
"""Every ggml type id a GGUF file may name, keyed by id."""

_TYPES_BY_NAME = {ggml_type.name: ggml_type for ggml_type in GGML_TYPES.values()}


def ggml_type(type_id: int) -> GGMLType | None:
    """The type with this id, or None for an id no ggml version has used."""
    return GGML_TYPES.get(type_id)


def ggml_type_named(name: str) -> GGMLType | None:
    """The type with this name ("Q4_K", "mxfp4"), or None."""
    return _TYPES_BY_NAME.get(name.upper())


def element_count(shape: Sequence[int]) -> int:
    """Product of the dimensions, refusing what an int64_t could not hold."""
    count = 1
    for dim in shape:
        if dim < 0 or dim > INT64_MAX:
            raise TensorShapeError(f"dimension {dim} is out of range")
        count *= dim
        if count > INT64_MAX:
            raise TensorShapeError(f"dimensions {list(shape)} overflow a 64-bit element count")
    return count


def tensor_bytes(tensor_type: GGMLType, shape: Sequence[int]) -> int:
    """Bytes a tensor of this type and ggml-order shape (``ne[0]`` first) occupies.

    Quantized types pack whole rows into blocks, so the row length ``ne[0]``
    must be a multiple of the block size, as ggml itself requires.
    """
    count = element_count(shape)
    row_length = shape[0] if shape else 1
    if row_length % tensor_type.block_size:
        raise TensorShapeError(
            f"rows of {row_length} elements are not a multiple of "
            f"{tensor_type.name}'s block size {tensor_type.block_size}"
        )
    return count // tensor_type.block_size * tensor_type.block_bytes
