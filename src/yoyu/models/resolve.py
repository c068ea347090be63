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

Each reader, and the catalog, is imported when resolution reaches it: ``yoyu
plan model.gguf`` loads neither the Hugging Face reader nor the catalog's tables.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from pathlib import Path

from yoyu.config import Settings, load_settings
from yoyu.errors import ModelFileError, ModelNotFoundError
from yoyu.models.discover import (
    InstalledModel,
    find_installed_models,
    group_gguf_files,
)
from yoyu.models.ollama_store import (
    find_manifest,
    model_blob,
    ollama_models_dir,
    parse_manifest_file,
    parse_ollama_name,
)
from yoyu.models.spec import ModelSpec

GGUF_MAGIC = b"GGUF"


def resolve_model(
    ref: str, *, settings: Settings | None = None, env: Mapping[str, str] | None = None
) -> ModelSpec:
    """Read the model ``ref`` names (a path, an Ollama name, an installed or catalog name)."""
    environ = os.environ if env is None else env
    path = Path(ref).expanduser()
    if path.exists():
        return read_model_path(path)
    spec = _from_ollama_store(ref, ollama_models_dir(environ))
    if spec is not None:
        return spec
    installed = find_installed_models(settings or load_settings(environ), environ)
    match = next((model for model in installed if model.name == ref), None)
    if match is not None:
        return read_model_path(match.path)
    from yoyu.models.catalog import catalog_model

    spec = catalog_model(ref)
    if spec is not None:
        return spec
    raise _not_found(ref, ollama_models_dir(environ), installed)


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


def _from_ollama_store(ref: str, root: Path) -> ModelSpec | None:
    name = parse_ollama_name(ref)
    manifest_file = None if name is None else find_manifest(root, name)
    if name is None or manifest_file is None:
        return None
    manifest = parse_manifest_file(manifest_file, name)
    spec = read_gguf(model_blob(root, manifest))
    return dataclasses.replace(spec, name=name.display)


def _not_found(ref: str, ollama_root: Path, installed: list[InstalledModel]) -> ModelNotFoundError:
    from yoyu.models.catalog import catalog_suggestions

    close = catalog_suggestions(ref) or difflib.get_close_matches(
        ref, [model.name for model in installed], n=3, cutoff=0.6
    )
    if close:
        return ModelNotFoundError.from_message(
            "no model {ref!r}: not a file, not in the Ollama store at {root}, not installed "
            "elsewhere, not in the catalog (did you mean {close}?); run `yoyu models` to list "
            "installed models",
            ref=ref, root=ollama_root, close=", ".join(close),
        )  # fmt: skip
    return ModelNotFoundError.from_message(
        "no model {ref!r}: not a file, not in the Ollama store at {root}, not installed "
        "elsewhere, not in the catalog; run `yoyu models` to list installed models",
        ref=ref, root=ollama_root,
    )  # fmt: skip
