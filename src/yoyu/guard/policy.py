"""What the guard watches for and how patient it is: one ``GuardPolicy``, from defaults,
``[guard]`` in ``yoyu.toml`` and flags, resolved to plain byte counts at start.

Floors are on *available* memory (MemAvailable, or a container's limit): the
guard cautions below ``caution`` and stops the guarded tree below ``abort``.
Each is a byte count or a percentage of the capacity, which is all of RAM, or
the ``budget`` when one is set: ``budget = "1 GiB"`` makes the guard act as if
only 1 GiB had been available when it started (for tests, and for keeping
headroom on purpose), so memory taken by anyone since then counts against it.

The default floors, 4 GiB and 2 GiB, shrink to half and a quarter of the
capacity on small machines and budgets, so a default guard never starts in
alarm. ``[guard]`` keys::

    caution = "4 GiB"          # or "15%"
    abort = "2 GiB"            # or "8%"; must be below caution
    budget = "8 GiB"           # optional
    swap_growth = "1 GiB"      # swap used grown by this since start: caution
    gpu_free_floor = "512 MiB" # optional: any GPU with less free: caution
    psi_some = 40.0            # /proc/pressure/memory some avg10 (%): caution
    psi_full = 60.0            # full avg10 (%): abort (systemd-oomd's default limit)
    macos_pressure = "critical"  # the level that aborts ("warn" or "critical")
    grace = 5.0                # seconds from SIGTERM (or unload) to SIGKILL
    lead_time = 1.0            # act when the trend reaches abort within this
    interval = 0.02            # seconds between samples while memory moves or loads
    idle_interval = 0.25       # seconds between samples while all is still (= interval: off)
    protected = ["my-agent"]   # process names never signalled (added to the defaults)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError, SettingsError
from yoyu.units import GIB, MIB

DEFAULT_CAUTION_BYTES = 4 * GIB
DEFAULT_ABORT_BYTES = 2 * GIB
DEFAULT_SWAP_GROWTH_BYTES = 1 * GIB
DEFAULT_PSI_SOME = 40.0
DEFAULT_PSI_FULL = 60.0
DEFAULT_GRACE_S = 5.0
DEFAULT_LEAD_TIME_S = 1.0
DEFAULT_INTERVAL_S = 0.02  # 50 Hz: a 4 GiB/s ramp moves 80 MiB between samples
DEFAULT_IDLE_INTERVAL_S = 0.25  # 4 Hz while nothing moves, far from the floors (see pace.py)
MACOS_LEVELS = ("normal", "warn", "critical")

# Never signalled: editors, terminals, agents and the session around them. Matched
# against the process name (Linux truncates it to 15 characters, as in /proc/PID/comm).
DEFAULT_PROTECTED: frozenset[str] = frozenset(
    {
        # editors and IDEs
        "code", "code-insiders", "codium", "cursor", "zed", "subl", "sublime_text",
        "vim", "nvim", "gvim", "emacs", "nano", "hx", "helix", "idea", "pycharm",
        "goland", "clion", "webstorm", "rustrover",
        # terminals and multiplexers
        "gnome-terminal-", "gnome-terminal", "konsole", "xterm", "alacritty", "kitty",
        "wezterm", "wezterm-gui", "foot", "tilix", "terminator", "ghostty", "Ghostty",
        "iTerm2", "Terminal", "tmux", "tmux: server", "screen", "sshd", "mosh-server",
        # agents
        "claude",
        # the session itself
        "systemd", "init", "launchd", "Xorg", "Xwayland", "gnome-shell", "kwin_x11",
        "kwin_wayland", "plasmashell", "WindowServer", "loginwindow", "Finder", "Dock",
    }
)  # fmt: skip

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_UNITS = {"": 1, "k": 1024, "m": MIB, "g": GIB, "t": 1024 * GIB}
SIZE_HINT = 'write e.g. "2 GiB", "512MiB", "1.5G" or a percentage like "10%"'


@dataclass(frozen=True)
class Floor:
    """An amount of available memory: ``bytes`` exactly, or ``percent`` of the capacity."""

    bytes: int | None = None
    percent: float | None = None

    def resolve(self, capacity_bytes: int) -> int:
        if self.bytes is not None:
            return self.bytes
        return round(capacity_bytes * (self.percent or 0.0) / 100)

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else f"{self.bytes} B"


@dataclass(frozen=True)
class GuardPolicy:
    """Thresholds and timings as the user wrote them; ``resolve`` turns them into bytes."""

    caution: Floor | None = None  # None: the default (4 GiB, at most half the capacity)
    abort: Floor | None = None  # None: the default (2 GiB, at most a quarter)
    budget_bytes: int | None = None
    budget_of_tree: bool = False  # the budget is the guarded tree's alone, not the machine's
    swap_growth_bytes: int | None = DEFAULT_SWAP_GROWTH_BYTES
    gpu_free_floor_bytes: int | None = None
    psi_some: float | None = DEFAULT_PSI_SOME
    psi_full: float | None = DEFAULT_PSI_FULL
    macos_pressure: str = "critical"
    grace_s: float = DEFAULT_GRACE_S
    lead_time_s: float = DEFAULT_LEAD_TIME_S
    interval_s: float = DEFAULT_INTERVAL_S
    idle_interval_s: float = DEFAULT_IDLE_INTERVAL_S
    protected: frozenset[str] = field(default=DEFAULT_PROTECTED)

    def resolve(self, total_bytes: int) -> Thresholds:
        """Byte floors for a machine with ``total_bytes`` (the budget wins when set)."""
        capacity = self.budget_bytes if self.budget_bytes is not None else total_bytes
        caution = _floor_or_default(self.caution, DEFAULT_CAUTION_BYTES, capacity, 2)
        abort = _floor_or_default(self.abort, DEFAULT_ABORT_BYTES, capacity, 4)
        if abort >= caution:
            raise SettingsError(
                f"the abort floor ({abort} B) must be below the caution floor ({caution} B); "
                "lower --abort or raise --caution"
            )
        if caution >= capacity:
            raise SettingsError(
                f"the caution floor ({caution} B) is not below the {capacity} B the guard "
                "watches over; lower --caution or raise --budget"
            )
        return Thresholds(
            capacity_bytes=capacity,
            caution_bytes=caution,
            abort_bytes=abort,
            kill_bytes=abort // 2,
            swap_growth_bytes=self.swap_growth_bytes,
            gpu_free_floor_bytes=self.gpu_free_floor_bytes,
            psi_some=self.psi_some,
            psi_full=self.psi_full,
            macos_abort_level=self.macos_pressure,
            grace_s=self.grace_s,
            lead_time_s=self.lead_time_s,
        )


@dataclass(frozen=True)
class Thresholds:
    """The policy in plain numbers: what ``decide`` compares observations with.

    ``kill_bytes`` (half the abort floor, earlyoom's KILL_PERCENT rule) cuts the
    grace period short: below it a process that was sent SIGTERM is killed now.
    """

    capacity_bytes: int
    caution_bytes: int
    abort_bytes: int
    kill_bytes: int
    swap_growth_bytes: int | None = None
    gpu_free_floor_bytes: int | None = None
    psi_some: float | None = None
    psi_full: float | None = None
    macos_abort_level: str = "critical"
    grace_s: float = DEFAULT_GRACE_S
    lead_time_s: float = DEFAULT_LEAD_TIME_S


def _floor_or_default(floor: Floor | None, default: int, capacity: int, divisor: int) -> int:
    if floor is not None:
        return floor.resolve(capacity)
    return min(default, capacity // divisor)


def parse_size(text: str) -> int:
    """Bytes from "2 GiB", "512MiB", "1.5G" (binary units); SettingsError otherwise."""
    match = _SIZE.match(text)
    if match is None:
        raise SettingsError(f"{text!r} is not a size; {SIZE_HINT}")
    number, unit = match.groups()
    return round(float(number) * _UNITS[unit.lower()])


def parse_floor(text: str) -> Floor:
    """A floor from "2 GiB" or "10%"; SettingsError naming the text otherwise."""
    percent = _PERCENT.match(text)
    if percent is None:
        return Floor(bytes=parse_size(text))
    value = float(percent.group(1))
    if not 0 < value < 100:
        raise SettingsError(f"{text!r} is not a percentage between 0 and 100; {SIZE_HINT}")
    return Floor(percent=value)


def with_overrides(
    policy: GuardPolicy,
    *,
    caution: str | None = None,
    abort: str | None = None,
    budget: str | None = None,
    grace_s: float | None = None,
) -> GuardPolicy:
    """The policy with the command-line flags applied on top (None: keep)."""
    changes: dict[str, Any] = {}
    if caution is not None:
        changes["caution"] = _flag(parse_floor, caution, "--caution")
    if abort is not None:
        changes["abort"] = _flag(parse_floor, abort, "--abort")
    if budget is not None:
        changes["budget_bytes"] = _flag(lambda t: _positive_size(t, "it"), budget, "--budget")
    if grace_s is not None:
        changes["grace_s"] = _non_negative(grace_s, "--grace")
    return replace(policy, **changes)


def policy_from_config(section: Mapping[str, Any], origin: Path | str = "yoyu.toml") -> GuardPolicy:
    """A policy from the ``[guard]`` table; unknown keys and bad values raise ConfigError."""
    unknown = sorted(set(section) - set(_CONFIG_KEYS))
    if unknown:
        known = ", ".join(sorted(_CONFIG_KEYS))
        raise ConfigError(f"{origin}: unknown key {unknown[0]!r} in [guard]; known: {known}")
    changes: dict[str, Any] = {}
    for key, value in section.items():
        attribute, convert = _CONFIG_KEYS[key]
        try:
            changes[attribute] = convert(value)
        except (SettingsError, TypeError, ValueError) as error:
            raise ConfigError(f"{origin}: [guard] {key} = {value!r}: {error}") from None
    policy = replace(GuardPolicy(), **changes)
    if "protected" in changes:
        policy = replace(policy, protected=DEFAULT_PROTECTED | changes["protected"])
    return policy


def _flag(parse: Any, text: str, name: str) -> Any:
    """``parse(text)`` with the flag's name in front of any error."""
    try:
        return parse(text)
    except SettingsError as error:
        raise SettingsError(f"{name} {error}") from None


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError('expected a string such as "2 GiB" or a byte count')
    return f"{value}" if isinstance(value, str) else f"{value}B"


def _positive_size(value: Any, name: str) -> int:
    size = parse_size(_text(value))
    if size <= 0:
        raise SettingsError(f"{name} must be more than 0 bytes")
    return size


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SettingsError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def _percent(value: Any) -> float:
    number = _non_negative(value, "a PSI threshold")
    if number > 100:
        raise SettingsError("a PSI threshold is a percentage of time, 0 to 100")
    return number


def _macos_level(value: Any) -> str:
    if value not in MACOS_LEVELS[1:]:
        raise ValueError('expected "warn" or "critical"')
    return str(value)


def _names(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise TypeError('expected a list of process names, e.g. ["my-agent"]')
    return frozenset(value)


def _interval(value: Any, name: str = "interval") -> float:
    seconds = _non_negative(value, name)
    if not 0.001 <= seconds <= 10:
        raise SettingsError(f"{name} must be between 0.001 and 10 seconds")
    return seconds


_CONFIG_KEYS: dict[str, tuple[str, Any]] = {
    "caution": ("caution", lambda v: parse_floor(_text(v))),
    "abort": ("abort", lambda v: parse_floor(_text(v))),
    "budget": ("budget_bytes", lambda v: _positive_size(v, "budget")),
    "swap_growth": ("swap_growth_bytes", lambda v: parse_size(_text(v))),
    "gpu_free_floor": ("gpu_free_floor_bytes", lambda v: parse_size(_text(v))),
    "psi_some": ("psi_some", _percent),
    "psi_full": ("psi_full", _percent),
    "macos_pressure": ("macos_pressure", _macos_level),
    "grace": ("grace_s", lambda v: _non_negative(v, "grace")),
    "lead_time": ("lead_time_s", lambda v: _non_negative(v, "lead_time")),
    "interval": ("interval_s", _interval),
    "idle_interval": ("idle_interval_s", lambda v: _interval(v, "idle_interval")),
    "protected": ("protected", _names),
}
