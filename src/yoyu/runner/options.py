"""What a run is asked to do: the model, its memory settings, and how to settle.

Settings may also come from a TOML file (``yoyu profile --compare A.toml
B.toml``); its keys are ``RunSettings`` field names or the short names the
command line uses (``ctx``, ``batch``, ``kv_type``, ``gpu_layers``...), plus
Ollama-style ``num_ctx`` / ``num_parallel`` / ``num_gpu``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError, SettingsError
from yoyu.estimate.types import RunSettings
from yoyu.toml import TOMLDecodeError, load_toml
from yoyu.units import MIB

# llama-cpp-python's server always runs with swa_full=True (its library default),
# and it is the managed backend's default engine: predict what will really run.
DEFAULT_SETTINGS = RunSettings(n_ctx=4096, swa_full=True)

_ALIASES = {
    "ctx": "n_ctx", "num_ctx": "n_ctx", "batch": "n_batch", "num_batch": "n_batch",
    "ubatch": "n_ubatch", "parallel": "n_parallel", "num_parallel": "n_parallel",
    "gpu_layers": "n_gpu_layers", "num_gpu": "n_gpu_layers", "ngl": "n_gpu_layers",
    "mmap": "use_mmap", "use_mmap": "use_mmap",
}  # fmt: skip
_BOTH_KV = ("kv_type", "cache_type")
_NOT_FOR_LLAMA_CPP = ("max_loaded_models", "keep_alive")
_FIELDS = {f.name for f in dataclasses.fields(RunSettings)}


@dataclass(frozen=True)
class SettlePolicy:
    """When memory counts as settled after an answer (see ``yoyu.monitor.stabilize``)."""

    tolerance_bytes: int = 1 * MIB
    window_s: float = 1.0
    cap_s: float = 15.0


@dataclass(frozen=True)
class RunConfig:
    """One run: which model, with which settings, sampled how often, settled how.

    ``n_gpu_layers`` None lets the planner pick (the most that fit); ``force``
    runs a model the plan says does not fit.
    """

    model: str
    settings: RunSettings = DEFAULT_SETTINGS
    n_gpu_layers: int | None = None
    force: bool = False
    rate_hz: float = 10.0
    settle: SettlePolicy = field(default_factory=SettlePolicy)
    label: str = ""


def settings_from_mapping(values: Mapping[str, Any], base: RunSettings) -> RunSettings:
    """``base`` with the keys of ``values`` applied (short names and aliases accepted)."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key in _NOT_FOR_LLAMA_CPP:
            raise SettingsError(
                f"{key} is an Ollama daemon setting; the managed llama.cpp backend runs one "
                "model per engine, so remove it or compare ctx, KV type, batch or GPU layers"
            )
        if key in _BOTH_KV:
            changes["type_k"] = changes["type_v"] = value
            continue
        name = _ALIASES.get(key, key)
        if name not in _FIELDS:
            known = ", ".join(sorted({*_FIELDS, *_ALIASES, *_BOTH_KV}))
            raise SettingsError(f"unknown setting {key!r}; known settings: {known}")
        changes[name] = tuple(value) if isinstance(value, list) else value
    try:
        return dataclasses.replace(base, **changes)
    except TypeError as error:
        raise SettingsError(f"settings {dict(values)!r} are not valid: {error}") from None


def settings_from_file(path: Path, base: RunSettings = DEFAULT_SETTINGS) -> RunSettings:
    """Settings from a TOML file of ``key = value`` lines (or a ``[settings]`` table)."""
    try:
        document = load_toml(path)
    except (OSError, TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read settings ({error}); give a TOML file") from None
    body = document.get("settings", document)
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: [settings] must be a table of key = value lines")
    try:
        return settings_from_mapping(body, base)
    except SettingsError as error:
        raise SettingsError(f"{path}: {error}") from None
