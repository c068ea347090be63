"""Ollama's model store on disk: names -> manifests -> the GGUF blob.

Layout, as Ollama itself writes and reads it (ollama/ollama):

- Root: ``$OLLAMA_MODELS``, else ``~/.ollama/models`` (``envconfig.Models()``;
  Linux service installs run as the ``ollama`` user, whose home is
  ``/usr/share/ollama``, so their root is ``/usr/share/ollama/.ollama/models``).
- Names: ``[host/][namespace/]model[:tag]``, missing parts filled from
  ``registry.ollama.ai/library/?:latest`` (``types/model/name.go``, ``ParseName``
  and ``FillDefault``); parts are ``[A-Za-z0-9_.-]``, no ``.`` in a namespace.
- Manifest of a name: ``<root>/manifests/<host>/<namespace>/<model>/<tag>``
  (``manifest/paths.go``, ``PathForName`` -> ``Name.Filepath``), a JSON
  ``{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
  "config": {...}, "layers": [{"mediaType", "digest", "size"}, ...]}``
  (``manifest/manifest.go``, ``WriteManifest``). Listing globs
  ``manifests/*/*/*/*`` (``Manifests()``).
- Layers by media type: ``application/vnd.ollama.image.model`` (the GGUF),
  ``.projector`` (vision tower), ``.adapter``, ``.params``, ``.template``,
  ``.system``, ``.license``, ``.messages`` (``server/images.go``, ``GetModel``).
- Blob of a digest ``sha256:<64 hex>``: ``<root>/blobs/sha256-<64 hex>``
  (``manifest/paths.go``, ``BlobsPath``: only digests matching
  ``^sha256[:-][0-9a-fA-F]{64}$`` are accepted, ``:`` becomes ``-``).

This module reads that layout and nothing else; it never talks to the Ollama
server (``backends/`` does).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.errors import ModelFileError, ModelNotFoundError
from yoyu.models.json_file import read_json_object

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
MAX_MANIFEST_BYTES = 1024 * 1024

# Allowed characters per part, from types/model/name.go (isValidByteFor): a namespace
# may not contain "."; a host may carry a port.
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,349}(?::[0-9]{1,5})?$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$")
_MODEL_OR_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_DIGEST_PATTERN = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")


@dataclass(frozen=True)
class OllamaName:
    """A fully qualified model name; ``display`` is the short form ``ollama list`` prints."""

    host: str
    namespace: str
    model: str
    tag: str

    @property
    def display(self) -> str:
        if self.host != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def relative_path(self) -> Path:
        return Path(self.host, self.namespace, self.model, self.tag)


@dataclass(frozen=True)
class OllamaLayer:
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class OllamaManifest:
    """One manifest file; ``size`` is what ``ollama list`` shows (layers plus config)."""

    name: OllamaName
    path: Path
    layers: tuple[OllamaLayer, ...]
    config_size: int
    format: str | None

    @property
    def size(self) -> int:
        return self.config_size + sum(layer.size for layer in self.layers)

    @property
    def model_layer(self) -> OllamaLayer | None:
        return next((layer for layer in self.layers if layer.media_type == MODEL_MEDIA_TYPE), None)


def ollama_models_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$OLLAMA_MODELS`` if set, else ``~/.ollama/models`` (Ollama's ``envconfig.Models``)."""
    environ = os.environ if env is None else env
    configured = environ.get("OLLAMA_MODELS", "").strip().strip("\"'")
    if configured:
        return Path(configured).expanduser()
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".ollama" / "models"


def parse_ollama_name(ref: str) -> OllamaName | None:
    """Fill ``ref`` to host/namespace/model:tag like Ollama does, or None if it is not a name."""
    text = ref.removeprefix("https://").removeprefix("http://")
    parts = text.split("/")
    if not 1 <= len(parts) <= 3 or ".." in text:
        return None
    model, _, tag = parts[-1].partition(":")
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    host = parts[0] if len(parts) == 3 else DEFAULT_HOST
    name = OllamaName(host=host, namespace=namespace, model=model, tag=tag or DEFAULT_TAG)
    return name if _is_valid_name(name) else None


def _is_valid_name(name: OllamaName) -> bool:
    return bool(
        _HOST.match(name.host)
        and _NAMESPACE.match(name.namespace)
        and _MODEL_OR_TAG.match(name.model)
        and _MODEL_OR_TAG.match(name.tag)
    )


def manifest_path(root: Path, name: OllamaName) -> Path:
    return root / "manifests" / name.relative_path()


def blob_path(root: Path, digest: str) -> Path:
    """Where Ollama keeps the blob of ``digest``; anything but a sha256 digest is refused."""
    match = _DIGEST_PATTERN.match(digest)
    if match is None:
        raise ModelFileError(
            f"layer digest {digest!r} is not sha256:<64 hex>; the manifest is corrupt"
        )
    return root / "blobs" / f"sha256-{match.group(1)}"


def find_manifest(root: Path, name: OllamaName) -> Path | None:
    """The manifest file for ``name``; names match case-insensitively, as in Ollama."""
    exact = manifest_path(root, name)
    if exact.is_file():
        return exact
    parts = (name.host, name.namespace, name.model, name.tag)
    lowered = OllamaName(*(part.lower() for part in parts))
    folded = manifest_path(root, lowered)
    return folded if folded.is_file() else None


def read_manifest(root: Path, name: OllamaName) -> OllamaManifest:
    """Read the manifest of ``name``; a missing one is a ModelNotFoundError naming the path."""
    path = find_manifest(root, name)
    if path is None:
        raise ModelNotFoundError(
            f"{name.display}: no Ollama manifest at {manifest_path(root, name)}; "
            f"run `ollama pull {name.display}` or `yoyu models` to list installed models"
        )
    return parse_manifest_file(path, name)


def parse_manifest_file(path: Path, name: OllamaName) -> OllamaManifest:
    document = read_json_object(path, max_bytes=MAX_MANIFEST_BYTES, what="an Ollama manifest")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise ModelFileError(f"{path}: Ollama manifest has no layers list")
    config = document.get("config")
    return OllamaManifest(
        name=name,
        path=path,
        layers=tuple(_layer(path, entry) for entry in layers),
        config_size=_size(config.get("size")) if isinstance(config, dict) else 0,
        format=document.get("format") if isinstance(document.get("format"), str) else None,
    )


def model_blob(root: Path, manifest: OllamaManifest) -> Path:
    """The GGUF blob a manifest points at; no model layer or a missing blob is a ModelFileError."""
    layer = manifest.model_layer
    if layer is None:
        kinds = ", ".join(sorted({entry.media_type for entry in manifest.layers})) or "none"
        raise ModelFileError(
            f"{manifest.path}: manifest of {manifest.name.display} has no {MODEL_MEDIA_TYPE} "
            f"layer (layers: {kinds})"
        )
    path = blob_path(root, layer.digest)
    if not path.is_file():
        raise ModelFileError(
            f"{path}: blob of {manifest.name.display} is missing; "
            f"run `ollama pull {manifest.name.display}` to restore it"
        )
    return path


def list_manifests(root: Path) -> list[OllamaManifest]:
    """Every readable manifest under ``root``; broken ones are skipped, as ``ollama list`` does."""
    manifests: list[OllamaManifest] = []
    for path in sorted((root / "manifests").glob("*/*/*/*")):
        if not path.is_file():
            continue
        host, namespace, model, tag = path.relative_to(root / "manifests").parts
        try:
            manifests.append(parse_manifest_file(path, OllamaName(host, namespace, model, tag)))
        except ModelFileError:
            continue
    return manifests


def _layer(path: Path, entry: Any) -> OllamaLayer:
    if not isinstance(entry, dict) or not isinstance(entry.get("mediaType"), str):
        raise ModelFileError(f"{path}: Ollama manifest layer without a mediaType")
    digest = entry.get("digest")
    return OllamaLayer(
        media_type=entry["mediaType"],
        digest=digest if isinstance(digest, str) else "",
        size=_size(entry.get("size")),
    )


def _size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
