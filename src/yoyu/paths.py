"""Where yoyu keeps the user's files; every location can be moved by environment.

``YOYU_HOME`` moves everything at once (tests point it at a temporary folder);
otherwise the XDG variables are honoured, falling back to ``~/.config/yoyu``
and ``~/.local/share/yoyu``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """Folder of ``yoyu.toml`` and user machine presets (``machines/*.toml``)."""
    environ = _environ(env)
    if environ.get("YOYU_HOME"):
        return Path(environ["YOYU_HOME"]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "yoyu"


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Folder of the run store and audit logs."""
    environ = _environ(env)
    if environ.get("YOYU_HOME"):
        return Path(environ["YOYU_HOME"]).expanduser() / "data"
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "yoyu"


def run_store_path(env: Mapping[str, str] | None = None) -> Path:
    """The run store's SQLite file (``yoyu.monitor.store``), named here so that asking
    whether there is one (``yoyu plan``'s history) does not import the store."""
    return data_dir(env) / "runs.sqlite"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Folder of what yoyu can fetch again (remote GGUF headers): safe to delete."""
    environ = _environ(env)
    if environ.get("YOYU_HOME"):
        return Path(environ["YOYU_HOME"]).expanduser() / "cache"
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "yoyu"
