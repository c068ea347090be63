"""A MODEL argument that is not a path: steps 2 to 4 of ``yoyu.models.resolve``.

An Ollama name with a manifest in the store, then the name of an installed
model as ``yoyu models`` lists it, then a catalog entry; otherwise a
``ModelNotFoundError`` that says what was tried and suggests close names.
Kept apart from reading a path, which needs none of it: ``yoyu plan
model.gguf`` loads neither the Ollama store, the user's settings, the scan of
installed models nor the catalog (imported only when the lookup reaches it).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from pathlib import Path

from yoyu.config import Settings, load_settings
from yoyu.errors import ModelNotFoundError
from yoyu.models.discover import InstalledModel, find_installed_models
from yoyu.models.ollama_store import (
    find_manifest,
    model_blob,
    ollama_models_dir,
    parse_manifest_file,
    parse_ollama_name,
)
from yoyu.models.resolve import read_gguf, read_model_path
from yoyu.models.spec import ModelSpec


def resolve_name(
    ref: str, *, settings: Settings | None = None, env: Mapping[str, str] | None = None
) -> ModelSpec:
    """The model ``ref`` names in the Ollama store, among the installed models or in the
    catalog, in that order."""
    environ = os.environ if env is None else env
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
