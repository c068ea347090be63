"""``yoyu.toml``: the user's settings, one declaration, overridable by ``YOYU_*``.

A missing file means defaults. Unknown keys are an error naming the key, since
a typo that silently does nothing (``[model]`` for ``[models]``) is the worst
kind of configuration bug.

This module knows every section's *name* and owns ``[models]``; the package a
section belongs to parses its body (``guard`` reads ``[guard]``, the gateway
reads ``[backends]``, ``[aliases]``, ``[routes]``...) from ``read_document``,
so each feature declares its own keys next to the code that uses them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError
from yoyu.paths import config_dir

_KNOWN_KEYS: dict[str, set[str]] = {"models": {"paths"}}
# Sections whose keys their owning package checks (see ``read_document``).
OWNED_SECTIONS: dict[str, str] = {
    "guard": "yoyu.guard",
    "monitor": "yoyu.monitor",
    "server": "yoyu.gateway",
    "backends": "yoyu.gateway",
    "aliases": "yoyu.gateway",
    "routes": "yoyu.gateway",
    "served": "yoyu.gateway",
    "migrate": "yoyu.rollout",
}


@dataclass(frozen=True)
class Settings:
    """Everything read from ``yoyu.toml`` and the environment."""

    config_path: Path | None = None
    model_paths: tuple[Path, ...] = field(default=())


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """``YOYU_CONFIG`` if set, else ``yoyu.toml`` in the config folder."""
    environ = os.environ if env is None else env
    if environ.get("YOYU_CONFIG"):
        return Path(environ["YOYU_CONFIG"]).expanduser()
    return config_dir(environ) / "yoyu.toml"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the config file (if any) and apply ``YOYU_MODEL_PATHS`` on top."""
    environ = os.environ if env is None else env
    path, document = read_document(environ)
    models_section = document.get("models", {})
    raw_paths = models_section.get("paths", [])
    if not isinstance(raw_paths, list) or not all(isinstance(p, str) for p in raw_paths):
        raise ConfigError.from_message(
            '{path}: [models] paths must be a list of strings, e.g. paths = ["~/models"]',
            path=path,
        )
    env_paths = [p for p in environ.get("YOYU_MODEL_PATHS", "").split(os.pathsep) if p]
    model_paths = tuple(Path(p).expanduser() for p in [*raw_paths, *env_paths])
    return Settings(config_path=path if path.is_file() else None, model_paths=model_paths)


def read_document(env: Mapping[str, str] | None = None) -> tuple[Path, dict[str, Any]]:
    """The config file's path and parsed body (``{}`` when there is no file).

    Section names are checked here; keys inside an owned section are checked
    by the package that owns it.
    """
    path = config_path(env)
    document = _read_document(path) if path.is_file() else {}
    _reject_unknown_keys(document, path)
    return path, document


def _read_document(path: Path) -> dict[str, Any]:
    from yoyu.toml import TOMLDecodeError, load_toml  # the parser, only when there is a file

    try:
        return load_toml(path)
    except TOMLDecodeError as error:
        raise ConfigError.from_message(
            "{path}: not valid TOML ({error}); fix the file or remove it", path=path, error=error
        ) from None
    except OSError as error:
        raise ConfigError.from_message(
            "{path}: cannot be read ({reason})", path=path, reason=error.strerror
        ) from None


def _reject_unknown_keys(document: dict[str, Any], path: Path) -> None:
    for section, body in document.items():
        if section in OWNED_SECTIONS:
            continue
        if section not in _KNOWN_KEYS:
            known = ", ".join(f"[{name}]" for name in sorted({*_KNOWN_KEYS, *OWNED_SECTIONS}))
            raise ConfigError.from_message(
                "{path}: unknown section [{section}]; known sections: {known}",
                path=path, section=section, known=known,
            )  # fmt: skip
        if not isinstance(body, dict):
            raise ConfigError.from_message(
                "{path}: {section} must be a table, e.g. [{section}]", path=path, section=section
            )
        for key in body:
            if key not in _KNOWN_KEYS[section]:
                known = ", ".join(sorted(_KNOWN_KEYS[section]))
                raise ConfigError.from_message(
                    "{path}: unknown key {key!r} in [{section}]; known: {known}",
                    path=path, key=key, section=section, known=known,
                )  # fmt: skip
