"""Reading TOML on every supported Python (tomllib arrived in 3.11)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


def parse_toml(content: bytes) -> dict[str, Any]:
    """Parse TOML bytes (UTF-8, as ``tomllib.load`` reads a file)."""
    document: dict[str, Any] = tomllib.loads(content.decode("utf-8"))
    return document


def load_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; the caller turns TOMLDecodeError into its own YoyuError."""
    with path.open("rb") as handle:
        document: dict[str, Any] = tomllib.load(handle)
    return document
