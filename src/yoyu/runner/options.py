"""What a run is asked to do: the model, its memory settings, and how to settle.

Settings may also come from a TOML file (``yoyu profile --compare A.toml
B.toml``); its keys are ``RunSettings`` field names or the short names the
command line uses (``ctx``, ``batch``, ``kv_type``, ``gpu_layers``...), plus
Ollama-style ``num_ctx`` / ``num_parallel`` / ``num_gpu``
(``yoyu.plan.settings``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yoyu.errors import ConfigError, SettingsError
from yoyu.estimate.types import RunSettings
from yoyu.plan.settings import settings_from_mapping
from yoyu.plan.types import RiskThresholds
from yoyu.units import MIB

# The engine field is set to the engine the backend really starts (ModelRun.open),
# and with it the sliding-window cache size that engine asks for.
DEFAULT_SETTINGS = RunSettings(n_ctx=4096)


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
    runs a model the plan says does not fit; ``free_bytes`` plans as if only
    that much memory were free (the guard's ``--budget``) and ``thresholds``
    keeps the guard's floors free, so a run the budget cannot hold is refused
    before an engine starts.
    """

    model: str
    settings: RunSettings = DEFAULT_SETTINGS
    n_gpu_layers: int | None = None
    force: bool = False
    free_bytes: int | None = None
    thresholds: RiskThresholds | None = None  # None: the plan's defaults
    rate_hz: float = 10.0
    settle: SettlePolicy = field(default_factory=SettlePolicy)
    label: str = ""


def settings_from_file(path: Path, base: RunSettings = DEFAULT_SETTINGS) -> RunSettings:
    """Settings from a TOML file of ``key = value`` lines (or a ``[settings]`` table)."""
    from yoyu.toml import TOMLDecodeError, load_toml  # the parser, only when a file is read

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
