"""Remote GGUF headers kept on disk, so planning the same file again reads no bytes.

An entry is the prefix of the file that was fetched (the header and tensor
table, rounded up to a read-ahead window) under ``<cache_dir>/gguf-headers/``,
named by the sha256 of the file's identity and its etag: the Hub's etag of an
LFS file is its sha256 and a web server's changes with the content, so a
changed file is a new entry and never a stale one. A file without an etag is
not cached (nothing would tell a changed file from the old one).

Beside the bytes, a small JSON says what they are (name, etag, size, length);
an entry that disagrees with the file it is asked for is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

_FOLDER = "gguf-headers"


@dataclass(frozen=True)
class CacheKey:
    """What one cached header belongs to: a file (its stable name) at one etag and size."""

    identity: str  # hf://ORG/REPO/PATH for Hub files, the URL otherwise
    etag: str
    size: int

    @property
    def digest(self) -> str:
        text = f"{self.identity}\n{self.etag}\n{self.size}"
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class HeaderCache:
    """The folder of cached headers (``yoyu.paths.cache_dir() / gguf-headers``)."""

    root: Path

    @classmethod
    def under(cls, cache_dir: Path) -> HeaderCache:
        return cls(cache_dir / _FOLDER)

    def load(self, key: CacheKey) -> bytearray | None:
        """The cached prefix, or None when there is none or it does not match ``key``."""
        meta_path, data_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            data = data_path.read_bytes()
        except (OSError, ValueError):
            return None
        expected = {"identity": key.identity, "etag": key.etag, "size": key.size}
        found = {name: meta.get(name) for name in expected}
        if found != expected or meta.get("length") != len(data):
            return None
        return bytearray(data)

    def store(self, key: CacheKey, prefix: bytes) -> None:
        """Write the entry (bytes first, then the JSON that vouches for them), atomically."""
        meta_path, data_path = self._paths(key)
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"identity": key.identity, "etag": key.etag, "size": key.size, "length": len(prefix)}
        _write_atomically(data_path, prefix)
        _write_atomically(meta_path, json.dumps(meta).encode())

    def _paths(self, key: CacheKey) -> tuple[Path, Path]:
        stem = self.root / key.digest
        return stem.with_suffix(".json"), stem.with_suffix(".head")


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(path)
