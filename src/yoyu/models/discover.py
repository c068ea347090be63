"""Which models are on this machine: the Ollama store, the Hugging Face cache,
LM Studio's folder and the folders named in ``yoyu.toml``.

Discovery only stats files and reads small JSON (Ollama manifests, HF
``refs/main`` and ``config.json``); it never opens a weights file, so listing a
disk full of 100 GB models stays instant. Reading a model is ``resolve``'s job.

Where each tool keeps its files:

- Ollama: see ``ollama_store`` (``$OLLAMA_MODELS`` or ``~/.ollama/models``).
- Hugging Face hub cache (huggingface_hub ``constants.py``): ``$HF_HUB_CACHE``,
  else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
  ``~/.cache/huggingface/hub``; one ``models--<org>--<name>`` folder per repo with
  ``refs/main`` naming the revision under ``snapshots/<rev>/`` (files there are
  symlinks into ``blobs/``, so ``stat`` gives the real size).
- LM Studio: ``~/.lmstudio/models`` (0.3+) and the older ``~/.cache/lm-studio/models``,
  laid out ``<publisher>/<repo>/<file>.gguf`` (MLX models as HF folders there).
- ``[models] paths``: GGUF files, or folders searched a few levels deep for GGUF
  files and Hugging Face folders.

Split GGUFs (``name-00001-of-00005.gguf``) are listed once, at their first shard,
with the size of all shards; ``mmproj-*.gguf`` vision projectors are not models.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.config import Settings
from yoyu.errors import ModelFileError
from yoyu.models.ollama_store import blob_path, list_manifests, ollama_models_dir

SPLIT_GGUF = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
MAX_SCAN_DEPTH = 3
_SMALL_JSON_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class InstalledModel:
    """One model found on disk; ``path`` is what ``yoyu inspect`` accepts."""

    name: str
    source: str  # "ollama", "hf-cache", "lmstudio", "path"
    path: Path
    size_bytes: int
    format: str  # "gguf", "safetensors", "mlx"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "format": self.format,
        }


@dataclass(frozen=True)
class GgufGroup:
    """One GGUF model: a single file, or every shard of a split one."""

    first: Path
    stem: str
    files: tuple[Path, ...]

    @property
    def size_bytes(self) -> int:
        return sum(file_size(path) for path in self.files)


def find_installed_models(
    settings: Settings, env: Mapping[str, str] | None = None
) -> list[InstalledModel]:
    """Every model in the known stores and the configured paths, each path listed once."""
    environ = os.environ if env is None else env
    found = [
        *_ollama_models(ollama_models_dir(environ)),
        *_hf_cache_models(hf_cache_dir(environ)),
        *_lmstudio_models(lmstudio_dirs(environ)),
        *_configured_models(settings.model_paths),
    ]
    return _unique_by_path(found)


def hf_cache_dir(env: Mapping[str, str]) -> Path:
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(variable):
            return Path(env[variable]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    cache_home = env.get("XDG_CACHE_HOME") or str(_home(env) / ".cache")
    return Path(cache_home).expanduser() / "huggingface" / "hub"


def lmstudio_dirs(env: Mapping[str, str]) -> list[Path]:
    home = _home(env)
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


def group_gguf_files(paths: Iterable[Path]) -> list[GgufGroup]:
    """Group GGUF files into models: split shards together, projectors left out."""
    groups: dict[tuple[Path, str], list[Path]] = {}
    for path in sorted(paths):
        if path.name.lower().startswith("mmproj"):
            continue
        match = SPLIT_GGUF.match(path.name)
        key = f"{match['stem']}#{match['count']}" if match else path.name
        groups.setdefault((path.parent, key), []).append(path)
    return [
        GgufGroup(first=files[0], stem=_gguf_stem(files[0]), files=tuple(files))
        for files in groups.values()
    ]


def split_siblings(path: Path) -> list[Path]:
    """All shards of the split model ``path`` belongs to (just ``path`` if not split)."""
    match = SPLIT_GGUF.match(path.name)
    if match is None:
        return [path]
    pattern = f"{match['stem']}-[0-9][0-9][0-9][0-9][0-9]-of-{match['count']}.gguf"
    return sorted(path.parent.glob(pattern)) or [path]


def is_hf_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def hf_folder_format(folder: Path) -> str:
    """Return "mlx" when config.json carries mlx-lm's quantization block, else "safetensors"."""
    config_path = folder / "config.json"
    try:
        if config_path.stat().st_size > _SMALL_JSON_BYTES:
            return "safetensors"
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "safetensors"
    is_mlx = isinstance(config, dict) and isinstance(config.get("quantization"), dict)
    return "mlx" if is_mlx else "safetensors"


def file_size(path: Path) -> int:
    """Size through symlinks (HF cache), 0 for a dangling link or vanished file."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or str(Path.home()))


def _gguf_stem(path: Path) -> str:
    match = SPLIT_GGUF.match(path.name)
    return match["stem"] if match else path.stem


def _ollama_models(root: Path) -> Iterator[InstalledModel]:
    for manifest in list_manifests(root):
        layer = manifest.model_layer
        if layer is None:
            continue
        try:
            path = blob_path(root, layer.digest)
        except ModelFileError:
            continue
        model_format = manifest.format or "gguf"
        yield InstalledModel(manifest.name.display, "ollama", path, manifest.size, model_format)


def _hf_cache_models(root: Path) -> Iterator[InstalledModel]:
    for repo_dir in sorted(root.glob("models--*")):
        snapshot = _current_snapshot(repo_dir)
        if snapshot is None:
            continue
        repo_name = repo_dir.name.removeprefix("models--").replace("--", "/")
        yield from _folder_models(snapshot, repo_name, "hf-cache", recursive=True)


def _current_snapshot(repo_dir: Path) -> Path | None:
    """The revision ``refs/main`` names, else the most recently written snapshot."""
    try:
        revision = (repo_dir / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        revision = ""
    if revision and (repo_dir / "snapshots" / revision).is_dir():
        return repo_dir / "snapshots" / revision
    snapshots = [path for path in (repo_dir / "snapshots").glob("*") if path.is_dir()]
    return max(snapshots, key=lambda path: path.stat().st_mtime, default=None)


def _lmstudio_models(roots: list[Path]) -> Iterator[InstalledModel]:
    for root in roots:
        for repo_dir in sorted(path for path in root.glob("*/*") if path.is_dir()):
            repo_name = repo_dir.relative_to(root).as_posix()
            yield from _folder_models(repo_dir, repo_name, "lmstudio", recursive=False)


def _folder_models(
    folder: Path, repo_name: str, source: str, *, recursive: bool
) -> Iterator[InstalledModel]:
    """An HF folder as one model, plus each GGUF model inside it."""
    if is_hf_folder(folder):
        size = sum(file_size(path) for path in folder.glob("*.safetensors"))
        yield InstalledModel(repo_name, source, folder, size, hf_folder_format(folder))
    ggufs = folder.rglob("*.gguf") if recursive else folder.glob("*.gguf")
    for group in group_gguf_files(ggufs):
        name = f"{repo_name}/{group.first.relative_to(folder).as_posix()}"
        yield InstalledModel(name, source, group.first, group.size_bytes, "gguf")


def _configured_models(paths: Iterable[Path]) -> Iterator[InstalledModel]:
    for path in paths:
        if path.is_file() and path.suffix.lower() == ".gguf":
            for group in group_gguf_files(split_siblings(path)):
                yield InstalledModel(group.stem, "path", group.first, group.size_bytes, "gguf")
        elif path.is_dir():
            yield from _scan_folder(path, MAX_SCAN_DEPTH)


def _scan_folder(folder: Path, depth: int) -> Iterator[InstalledModel]:
    if is_hf_folder(folder):
        size = sum(file_size(path) for path in folder.glob("*.safetensors"))
        yield InstalledModel(folder.name, "path", folder, size, hf_folder_format(folder))
        return
    for group in group_gguf_files(folder.glob("*.gguf")):
        yield InstalledModel(group.stem, "path", group.first, group.size_bytes, "gguf")
    if depth > 0:
        for child in _subfolders(folder):
            yield from _scan_folder(child, depth - 1)


def _subfolders(folder: Path) -> list[Path]:
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return []
    return [child for child in children if child.is_dir() and not child.name.startswith(".")]


def _unique_by_path(models: list[InstalledModel]) -> list[InstalledModel]:
    """Drop a file found twice (a configured path inside a store); Ollama tags that share
    a blob stay, since each name is its own entry in ``ollama list``."""
    seen: set[str] = set()
    unique: list[InstalledModel] = []
    for model in models:
        key = model.name if model.source == "ollama" else os.path.realpath(model.path)
        if key not in seen:
            seen.add(key)
            unique.append(model)
    return unique
