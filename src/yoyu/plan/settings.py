"""``RunSettings`` from the names people and engines write.

The same settings arrive under several names: the command line's short ones
(``ctx``, ``kv_type``, ``gpu_layers``), Ollama's (``num_ctx``, ``num_gpu``),
llama-cpp-python's ``Llama`` keywords (``embedding``, ``n_seq_max``, KV
types as ggml ids) in a served model's ``settings`` table. Two readers:

- ``settings_from_mapping``: a file or table of memory settings only; an
  unknown key is an error that lists the known ones.
- ``settings_from_load_settings``: an engine's load settings, which also
  carry keys that do not change memory (``n_threads``, ``chat_format``,
  ``extra_argv``); those are left to the engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from yoyu.errors import SettingsError
from yoyu.estimate.engine import ENGINES
from yoyu.estimate.types import RunSettings
from yoyu.plan.emit.llama_cpp import GGML_TYPE_IDS

_ALIASES = {
    "ctx": "n_ctx", "num_ctx": "n_ctx", "batch": "n_batch", "num_batch": "n_batch",
    "ubatch": "n_ubatch", "parallel": "n_parallel", "num_parallel": "n_parallel",
    "gpu_layers": "n_gpu_layers", "num_gpu": "n_gpu_layers", "ngl": "n_gpu_layers",
    "mmap": "use_mmap", "use_mmap": "use_mmap",
    # llama-cpp-python Llama keywords and yoyu's load settings
    "embedding": "embeddings", "n_seq_max": "n_parallel", "cache_ram_mib": "prompt_cache_mib",
}  # fmt: skip
_BOTH_KV = ("kv_type", "cache_type")
_NOT_FOR_LLAMA_CPP = ("max_loaded_models", "keep_alive")
_FIELDS = frozenset(f.name for f in dataclasses.fields(RunSettings))
_GGML_TYPE_NAMES = {type_id: name for name, type_id in GGML_TYPE_IDS.items()}


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
            raise SettingsError.from_message(
                "unknown setting {key!r}; known settings: {known}", key=key, known=known
            )
        changes[name] = tuple(value) if isinstance(value, list) else value
    return _replaced(base, changes, values)


def settings_from_load_settings(values: Mapping[str, Any], base: RunSettings) -> RunSettings:
    """``base`` with the memory settings among an engine's load settings applied."""
    memory = {
        key: _kv_type_name(key, value) for key, value in values.items() if is_memory_setting(key)
    }
    return settings_from_mapping(memory, base)


def is_memory_setting(key: str) -> bool:
    """A setting the plan reads (and writes back in the engine's own names)."""
    return _ALIASES.get(key, key) in _FIELDS or key in _BOTH_KV


def with_serving_slots(settings: RunSettings, values: Mapping[str, Any]) -> RunSettings:
    """``settings`` with its engine's slots for serving, unless ``values`` name slots.

    A gateway's model answers several clients at once: on llama-server that is
    its own default, 4 slots sharing one cache of the whole context (so one
    long prompt still gets all of it, and the cache costs what one sequence's
    does). Naming ``parallel`` or ``kv_unified`` keeps the user's choice, as
    ``-np N`` alone turns the shared cache off in llama-server.
    """
    profile = ENGINES.get(settings.engine)
    if profile is None or profile.serving_slots == 1 or _names_slots(values):
        return settings
    return dataclasses.replace(settings, n_parallel=profile.serving_slots, kv_unified=True)


def _names_slots(values: Mapping[str, Any]) -> bool:
    return any(_ALIASES.get(key, key) in ("n_parallel", "kv_unified") for key in values)


def for_engine(settings: RunSettings, engine_kind: str) -> RunSettings:
    """``settings`` planned for the engine a backend starts (unchanged for engines the
    estimate has no profile of: Ollama's runner, a remote server)."""
    if engine_kind not in ENGINES or engine_kind == settings.engine:
        return settings
    return dataclasses.replace(settings, engine=engine_kind)


def _kv_type_name(key: str, value: Any) -> Any:
    """``Llama`` takes KV cache types as ggml ids (1 = f16); the estimate takes names."""
    if key in ("type_k", "type_v", *_BOTH_KV) and isinstance(value, int):
        if value not in _GGML_TYPE_NAMES:
            raise SettingsError(f"{key} {value} is not a KV cache type id; use a name like q8_0")
        return _GGML_TYPE_NAMES[value]
    return value


def _replaced(base: RunSettings, changes: dict[str, Any], values: Mapping[str, Any]) -> RunSettings:
    try:
        return dataclasses.replace(base, **changes)
    except TypeError as error:
        raise SettingsError(f"settings {dict(values)!r} are not valid: {error}") from None
