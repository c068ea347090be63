"""Split GGUF models: ``NAME-00001-of-00005.gguf`` and its siblings, read as one model.

llama.cpp's ``gguf-split`` (and gguf-py's writer) name the parts
``{prefix}-{i:05d}-of-{n:05d}.gguf`` with ``i`` from 1, give every part
``split.no`` (0-based), ``split.count`` and ``split.tensors.count``, and put
the model's metadata in the first part only. Each part has its own tensor
table whose offsets point into that part's data section. Given any one part,
this module finds the rest, checks that they agree, and merges the tables,
tagging each tensor with the index of the part that holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from yoyu.errors import ModelFileError
from yoyu.models.gguf import GGUFFile, MetadataValue, display_path, read_gguf_file
from yoyu.models.spec import TensorInfo

SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<number>\d{5})-of-(?P<count>\d{5})\.gguf$")
SPLIT_NO_KEY = "split.no"
SPLIT_COUNT_KEY = "split.count"
SPLIT_TENSORS_KEY = "split.tensors.count"


@dataclass(frozen=True)
class GGUFModelFiles:
    """Every file of one GGUF model (a single file, or all parts of a split)."""

    paths: tuple[Path | str, ...]  # local paths, or URLs for a model read over HTTP
    files: tuple[GGUFFile, ...]
    metadata: dict[str, MetadataValue]  # the first part's, which holds the model's metadata
    tensors: tuple[TensorInfo, ...]
    file_bytes: int
    stem: str  # file name without ".gguf" and without the "-00001-of-00005" suffix


def split_part_paths(path: Path) -> tuple[Path, ...] | None:
    """All part paths of the split model ``path`` names, or None for a plain file name."""
    names = split_part_names(path.name, display_path(path))
    return None if names is None else tuple(path.with_name(name) for name in names)


def split_part_names(name: str, source: str | None = None) -> tuple[str, ...] | None:
    """All part names of the split model whose part is called ``name``, or None when the
    name has no ``-0000i-of-0000N.gguf`` suffix (works the same for URLs and hub paths)."""
    match = SPLIT_NAME.match(name)
    if match is None:
        return None
    count = int(match["count"])
    number = int(match["number"])
    if count < 1 or not 1 <= number <= count:
        raise ModelFileError(
            f"{source or name}: the name says part {number} of {count}, which cannot be; "
            "restore the file names gguf-split gave the parts"
        )
    prefix = match["prefix"]
    return tuple(f"{prefix}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1))


def split_stem(name: str) -> str:
    """The model's name without ``.gguf`` and without a ``-0000i-of-0000N`` suffix."""
    match = SPLIT_NAME.match(name)
    return match["prefix"] if match else name.removesuffix(".gguf")


def read_gguf_model_files(path: Path) -> GGUFModelFiles:
    """Read a GGUF model from its file, or from any part of a split model."""
    part_paths = split_part_paths(path)
    if part_paths is None:
        single = (read_gguf_file(path),)
        return merge_gguf_parts((path,), single, split_stem(path.name), split=False)
    _require_all_present(part_paths)
    files = tuple(read_gguf_file(part, index) for index, part in enumerate(part_paths))
    return merge_gguf_parts(part_paths, files, split_stem(path.name), split=True)


def merge_gguf_parts(
    paths: tuple[Path | str, ...], files: tuple[GGUFFile, ...], stem: str, *, split: bool
) -> GGUFModelFiles:
    """One model from its read parts, checking that they agree: the same checks whether
    the parts were read from this disk or over HTTP. ``split``: the name was a part's
    (``-0000i-of-0000N.gguf``); a plain name must not hold a part of a split model."""
    if not split:
        _refuse_unnamed_part(files[0])
        return _merge(paths, files, stem)
    for index, part in enumerate(files):
        _check_part(part, index, len(files))
    merged = _merge(paths, files, stem)
    _check_tensor_total(merged)
    return merged


def _require_all_present(part_paths: tuple[Path, ...]) -> None:
    missing = [part for part in part_paths if not part.exists()]
    if missing:
        number = part_paths.index(missing[0]) + 1
        others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelFileError(
            f"{display_path(missing[0])}: part {number} of {len(part_paths)} of this split "
            f"model is missing{others}; download every part into the same folder"
        )


def _split_int(part: GGUFFile, key: str) -> int | None:
    value = part.metadata.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelFileError(
            f"{display_path(part.path)}: metadata {key} is {value!r}, not an integer"
        )
    return value


def _refuse_unnamed_part(part: GGUFFile) -> None:
    """A part renamed away from the -0000i-of-0000N pattern cannot find its siblings."""
    count = _split_int(part, SPLIT_COUNT_KEY)
    if count is not None and count > 1:
        number = (_split_int(part, SPLIT_NO_KEY) or 0) + 1
        raise ModelFileError(
            f"{display_path(part.path)}: this is part {number} of a {count}-part split model, "
            "but its name does not end in -0000i-of-0000N.gguf; restore the original file names"
        )


def _check_part(part: GGUFFile, index: int, count: int) -> None:
    if count == 1 and _split_int(part, SPLIT_COUNT_KEY) is None:
        return  # "-00001-of-00001" written without split keys: a plain file
    claimed_count = _split_int(part, SPLIT_COUNT_KEY)
    claimed_no = _split_int(part, SPLIT_NO_KEY)
    if claimed_count != count or claimed_no != index:
        raise ModelFileError(
            f"{display_path(part.path)}: named as part {index + 1} of {count} but its metadata "
            f"says split.no={claimed_no}, split.count={claimed_count}; the parts come from "
            "different models or were renamed"
        )


def _merge(paths: tuple[Path | str, ...], files: tuple[GGUFFile, ...], stem: str) -> GGUFModelFiles:
    tensors = tuple(tensor for part in files for tensor in part.tensors)
    return GGUFModelFiles(
        paths=paths,
        files=files,
        metadata=files[0].metadata,
        tensors=tensors,
        file_bytes=sum(part.file_bytes for part in files),
        stem=stem,
    )


def _check_tensor_total(model: GGUFModelFiles) -> None:
    first = model.files[0]
    claimed = _split_int(first, SPLIT_TENSORS_KEY)
    if claimed is not None and claimed != len(model.tensors):
        raise ModelFileError(
            f"{display_path(first.path)}: split.tensors.count says {claimed} tensors but the "
            f"{len(model.files)} parts hold {len(model.tensors)}; a part is from another model"
        )
    names: set[str] = set()
    for tensor in model.tensors:
        if tensor.name in names:
            part = model.paths[tensor.file_index]
            raise ModelFileError(
                f"{display_path(part)}: tensor {tensor.name!r} also appears in an earlier part; "
                "the parts come from different models"
            )
        names.add(tensor.name)
