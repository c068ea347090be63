"""The catalog's data files as parsed documents, with a parsed copy kept in the user's cache.

The catalog is TOML under version control (``catalog_data/*.toml``), and TOML is
parsed in pure Python: its 24 files take about 20 ms on two cores, more than the
rest of looking a name up, on every ``yoyu plan NAME``. So the documents parsed
once are kept as JSON (which the C decoder reads in well under a millisecond)
under ``<cache_dir>/catalog/``, named by the sha256 of every file's name and
bytes: a changed, added or removed file is a new name, never a stale copy, and
the data files stay the only source. The package folder may be read-only; the
copy lives in the user's cache, and where that cannot be written either, every
run parses the files as before. A copy that cannot be read or does not hold the
files it is named for is ignored.

TOML values map onto JSON one to one for what the catalog holds (strings,
integers, floats, booleans, arrays, tables; key order kept); a file holding a
date, which JSON has no type for, is simply not copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError
from yoyu.paths import cache_dir

CACHE_FOLDER = "catalog"
_FORMAT = "yoyu-catalog-documents-1"  # changes when what is stored changes

Document = dict[str, Any]


def catalog_documents(folder: Path, cache: Path | None = None) -> list[tuple[Path, Document]]:
    """Each ``*.toml`` file of ``folder`` in name order, parsed (from the cached copy when
    one matches the files' content); ``cache`` is the folder of copies (default: the
    user's cache directory's ``catalog``)."""
    paths = sorted(folder.glob("*.toml"))
    contents = [_read_bytes(path) for path in paths]
    copy = (cache or cache_dir() / CACHE_FOLDER) / f"{_digest(paths, contents)}.json"
    names = [path.name for path in paths]
    cached = _load_copy(copy, names)
    if cached is not None:
        return list(zip(paths, cached, strict=True))
    documents = [_parse(path, content) for path, content in zip(paths, contents, strict=True)]
    _store_copy(copy, names, documents)
    return list(zip(paths, documents, strict=True))


def _digest(paths: list[Path], contents: list[bytes]) -> str:
    digest = hashlib.sha256(_FORMAT.encode())
    for path, content in zip(paths, contents, strict=True):
        digest.update(f"\n{path.name}\n{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: the model catalog cannot be read ({error})") from None


def _parse(path: Path, content: bytes) -> Document:
    from yoyu.toml import TOMLDecodeError, parse_toml  # only when no copy matches

    try:
        return parse_toml(content)
    except (UnicodeDecodeError, TOMLDecodeError) as error:
        raise ConfigError(f"{path}: the model catalog cannot be read ({error})") from None


def _load_copy(copy: Path, names: list[str]) -> list[Document] | None:
    """The documents of a copy that holds exactly ``names``, else None."""
    try:
        stored = json.loads(copy.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("files") != names:
        return None
    documents = stored.get("documents")
    if not isinstance(documents, list) or len(documents) != len(names):
        return None
    if not all(isinstance(document, dict) for document in documents):
        return None
    return documents


def _store_copy(copy: Path, names: list[str], documents: list[Document]) -> None:
    """Write the copy atomically; a cache that cannot be written is no error."""
    try:
        text = json.dumps({"files": names, "documents": documents}, ensure_ascii=False)
    except (TypeError, ValueError):
        return  # a value JSON cannot hold (a TOML date): parse each time instead
    partial = copy.with_name(f"{copy.name}.{os.getpid()}.tmp")
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text, encoding="utf-8")
        partial.replace(copy)
        _remove_older_copies(copy)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def _remove_older_copies(kept: Path) -> None:
    """Copies of earlier catalog versions are never read again."""
    for old in kept.parent.glob("*.json"):
        if old != kept:
            old.unlink(missing_ok=True)
