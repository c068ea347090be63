"""The user's MODEL argument -> a ``ModelSpec``, whatever the argument names.

Tried in order, first match wins:

1. an existing path: a GGUF file or any shard of a split one, an Ollama blob
   (a GGUF without the suffix), a Hugging Face folder (or its config.json or a
   safetensors file in it), or a folder holding exactly one GGUF model;
2. an Ollama name (``qwen3:8b``, ``user/model:tag``) with a manifest in the store;
3. the name of an installed model as ``yoyu models`` lists it (HF cache
   ``org/name``, LM Studio ``publisher/repo/file.gguf``, configured paths);
4. a catalog entry (an estimate for a model not downloaded yet).

Otherwise ``ModelNotFoundError`` says what was tried, suggests close names and
how to list models. Files that exist but are broken raise ``ModelFileError``
rather than falling through to a catalog estimate of the same name.

A path is read here, each reader imported when its kind of file comes; a name
is looked up by ``yoyu.models.names``, imported only for one. ``yoyu plan
model.gguf`` so loads neither the Ollama store, the installed-model scan, the
Hugging Face reader nor the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from yoyu.errors import ModelFileError
from yoyu.models.spec import ModelSpec

if TYPE_CHECKING:
    from yoyu.config import Settings

GGUF_MAGIC = b"GGUF"


def resolve_model(
    ref: str, *, settings: Settings | None = None, env: Mapping[str, str] | None = None
) -> ModelSpec:
    """Read the model ``ref`` names (a path, an Ollama name, an installed or catalog name)."""
    path = Path(ref).expanduser()
    if path.exists():
        return read_model_path(path)
    from yoyu.models.names import resolve_name

    return resolve_name(ref, settings=settings, env=env)


def read_model_path(path: Path) -> ModelSpec:
    """Read a model file or folder, choosing the reader by content, not by name."""
    if path.is_dir():
        return _read_folder(path)
    if path.suffix.lower() == ".gguf" or _has_gguf_magic(path):
        return read_gguf(path)
    if path.suffix.lower() == ".safetensors" or path.name == "config.json":
        return read_hf_folder(path.parent)
    raise ModelFileError.from_message(
        "{path}: not a model file (no GGUF magic, not safetensors); "
        "give a .gguf file, a Hugging Face folder or an Ollama name",
        path=path,
    )


def read_gguf(path: Path) -> ModelSpec:
    """The GGUF reader, imported here so the rest of resolution works without it."""
    from yoyu.models.gguf_spec import read_gguf_model

    return read_gguf_model(path)


def read_hf_folder(folder: Path) -> ModelSpec:
    """The Hugging Face reader (config.json and safetensors headers), imported here likewise."""
    from yoyu.models.hf_model import read_hf_model

    return read_hf_model(folder)


def _read_folder(folder: Path) -> ModelSpec:
    if (folder / "config.json").is_file():
        return read_hf_folder(folder)
    from yoyu.models.discover import group_gguf_files  # with the Ollama store: for a folder

    groups = group_gguf_files(folder.glob("*.gguf"))
    if len(groups) == 1:
        return read_gguf(groups[0].first)
    if groups:
        names = ", ".join(group.first.name for group in groups[:5])
        raise ModelFileError.from_message(
            "{folder}: holds {count} GGUF models ({names}); name one file",
            folder=folder, count=len(groups), names=names,
        )  # fmt: skip
    raise ModelFileError.from_message(
        "{folder}: no config.json and no .gguf file; not a model folder", folder=folder
    )


def _has_gguf_magic(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError as error:
        raise ModelFileError.from_message(
            "{path}: cannot be read ({reason})", path=path, reason=error.strerror
        ) from None
