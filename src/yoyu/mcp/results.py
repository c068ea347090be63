"""What the MCP tools answer: plain dataclasses the SDK turns into output schemas.

Each carries a ``summary`` line for the model reading the result, beside the
figures (bytes as ``int``, like everywhere inside yoyu) for a program.
"""

from __future__ import annotations

from dataclasses import dataclass

from yoyu.gateway.residency import ResidentInfo
from yoyu.gateway.service import InstalledEntry, ModelEntry
from yoyu.guard.policy import Thresholds
from yoyu.monitor.types import SystemSample


@dataclass(frozen=True)
class GenerateResult:
    """An answer, and which served model really gave it (after aliases and fallbacks)."""

    text: str
    model: str
    requested: str
    backend: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int
    elapsed_s: float
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelsResult:
    """Served models (loaded or not, size, plan verdict), routes, aliases, and files found."""

    summary: str
    default_model: str | None
    served: tuple[ModelEntry, ...]
    installed: tuple[InstalledEntry, ...]


@dataclass(frozen=True)
class SwitchResult:
    """The alias's new target, the old one, and whether the target is loaded now."""

    summary: str
    alias: str
    previous: str | None
    target: str
    loaded: bool


@dataclass(frozen=True)
class BackendReport:
    """One backend: does it answer, how fast, and which models it holds."""

    name: str
    ok: bool
    detail: str
    remote: bool
    cooling_down: bool
    latency_s: float | None
    loaded: tuple[str, ...] | None  # None: not asked (remote, or not answering)


@dataclass(frozen=True)
class HealthResult:
    summary: str
    backends: tuple[BackendReport, ...]


@dataclass(frozen=True)
class MemoryResult:
    """The monitor's reading now, the floor admission keeps, and the guard's thresholds."""

    summary: str
    available_bytes: int
    total_bytes: int
    floor_bytes: int
    budget_bytes: int | None
    held_bytes: int
    loaded: tuple[ResidentInfo, ...]
    system: SystemSample
    guard: Thresholds | None
    guard_error: str | None = None  # why the guard's thresholds do not resolve on this machine
