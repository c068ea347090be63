"""When a migration may go on: the ``[migrate]`` section, the flags, and the pure checks.

``[migrate]`` keys (every one optional)::

    min_available = "10 GiB"   # baseline available memory the preflight asks for
    smoke_continue = "4 GiB"   # available during the smoke test: at or above, go on
    smoke_stop = "2 GiB"       # below: stop and roll back; between: --accept-caution
    soak = "10m"               # soak duration
    caution_soak = "1m"        # the longest soak after a cautious smoke test
    max_tokens = 64            # most tokens per answer in smoke and soak

The two smoke floors default to the guard's caution and abort floors (4 and 2
GiB, shrinking with a small ``--budget`` the way the guard's do), so "breaches
the abort floor" means the same number in both places.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError, SettingsError
from yoyu.guard.policy import GuardPolicy, parse_size
from yoyu.runner.soak import parse_duration
from yoyu.units import GIB, format_bytes

DEFAULT_MIN_AVAILABLE_BYTES = 10 * GIB
DEFAULT_SOAK_S = 600.0
DEFAULT_CAUTION_SOAK_S = 60.0
DEFAULT_MAX_TOKENS = 64

CONTINUE = "continue"
CAUTION = "caution"
STOP = "stop"


@dataclass(frozen=True)
class MigrateThresholds:
    """The figures a migration is judged by; None floors follow the guard's."""

    min_available_bytes: int = DEFAULT_MIN_AVAILABLE_BYTES
    smoke_continue_bytes: int | None = None
    smoke_stop_bytes: int | None = None
    soak_s: float = DEFAULT_SOAK_S
    caution_soak_s: float = DEFAULT_CAUTION_SOAK_S
    max_tokens: int = DEFAULT_MAX_TOKENS
    budget_bytes: int | None = None
    accept_caution: bool = False

    def smoke_floors(self, policy: GuardPolicy, total_bytes: int) -> tuple[int, int]:
        """(continue, stop) in bytes: the configured ones, else the guard's caution and abort."""
        resolved = policy.resolve(total_bytes)
        go = self.smoke_continue_bytes or resolved.caution_bytes
        stop = self.smoke_stop_bytes or resolved.abort_bytes
        if stop > go:
            raise SettingsError(
                f"smoke_stop ({format_bytes(stop)}) is above smoke_continue "
                f"({format_bytes(go)}); lower --smoke-stop or raise --smoke-continue"
            )
        return go, stop

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MigrateThresholds:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class SmokeDecision:
    outcome: str  # CONTINUE, CAUTION (go on, short soak), STOP
    reason: str


def smoke_decision(
    min_available: int, continue_bytes: int, stop_bytes: int, accept_caution: bool
) -> SmokeDecision:
    """The smoke test's verdict from the least memory available while the model answered."""
    seen = format_bytes(min_available)
    if min_available >= continue_bytes:
        return SmokeDecision(
            CONTINUE, f"{seen} available at worst (>= {format_bytes(continue_bytes)})"
        )
    if min_available < stop_bytes:
        return SmokeDecision(
            STOP, f"{seen} available at worst, below the stop floor {format_bytes(stop_bytes)}"
        )
    floors = f"{format_bytes(stop_bytes)} and {format_bytes(continue_bytes)}"
    band = f"{seen} available at worst, between {floors}"
    if accept_caution:
        return SmokeDecision(CAUTION, f"{band}; going on with a short soak (--accept-caution)")
    return SmokeDecision(STOP, f"{band}; pass --accept-caution to go on with a short soak")


def baseline_check(available: int, minimum: int) -> tuple[bool, str]:
    ok = available >= minimum
    relation = ">=" if ok else "<"
    reason = f"{format_bytes(available)} available {relation} {format_bytes(minimum)} asked for"
    return ok, reason if ok else f"{reason}; close the largest consumers or lower --min-available"


def thresholds_from_config(
    section: Mapping[str, Any], origin: Path | str = "yoyu.toml"
) -> MigrateThresholds:
    """``[migrate]`` as thresholds; unknown keys and bad values raise ConfigError."""
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in _CONFIG_KEYS:
            known = ", ".join(sorted(_CONFIG_KEYS))
            raise ConfigError(f"{origin}: unknown key {key!r} in [migrate]; known: {known}")
        attribute, convert = _CONFIG_KEYS[key]
        try:
            changes[attribute] = convert(value)
        except (SettingsError, TypeError, ValueError) as error:
            raise ConfigError(f"{origin}: [migrate] {key} = {value!r}: {error}") from None
    return MigrateThresholds(**changes)


def with_flags(
    thresholds: MigrateThresholds,
    *,
    min_available: str | None = None,
    smoke_continue: str | None = None,
    smoke_stop: str | None = None,
    soak: str | None = None,
    budget: str | None = None,
    max_tokens: int | None = None,
    accept_caution: bool = False,
) -> MigrateThresholds:
    """The thresholds with command-line flags on top (None: keep the file's)."""
    changes: dict[str, Any] = {"accept_caution": accept_caution or thresholds.accept_caution}
    for attribute, flag, text in (
        ("min_available_bytes", "--min-available", min_available),
        ("smoke_continue_bytes", "--smoke-continue", smoke_continue),
        ("smoke_stop_bytes", "--smoke-stop", smoke_stop),
        ("budget_bytes", "--budget", budget),
    ):
        if text is not None:
            changes[attribute] = _flag_size(text, flag)
    if soak is not None:
        changes["soak_s"] = parse_duration(soak)
    if max_tokens is not None:
        changes["max_tokens"] = _positive_int(max_tokens)
    return dataclasses.replace(thresholds, **changes)


def _flag_size(text: str, flag: str) -> int:
    try:
        return _size(text)
    except SettingsError as error:
        raise SettingsError(f"{flag} {error}") from None


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError('expected a size such as "4 GiB"')
    size = parse_size(value if isinstance(value, str) else f"{value}B")
    if size <= 0:
        raise SettingsError("a size must be more than 0 bytes")
    return size


def _seconds(value: Any) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise TypeError('expected a duration such as "10m" or a number of seconds')
    return float(value)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SettingsError(f"max_tokens must be a whole number above 0, not {value!r}")
    return value


_CONFIG_KEYS: dict[str, tuple[str, Any]] = {
    "min_available": ("min_available_bytes", _size),
    "smoke_continue": ("smoke_continue_bytes", _size),
    "smoke_stop": ("smoke_stop_bytes", _size),
    "soak": ("soak_s", _seconds),
    "caution_soak": ("caution_soak_s", _seconds),
    "max_tokens": ("max_tokens", _positive_int),
}
