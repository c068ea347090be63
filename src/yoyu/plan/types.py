"""What a plan asks and what it answers.

``PlanRequest`` carries the settings the user asked for and the safety rules
(reserve, risk thresholds, memory overrides); ``Plan`` carries the decision,
the per-device figures it rests on, and, when it refuses, the reasons in
figures (gpustack's filters return survivors *and* why the rest were
rejected; a plan does the same). Every result serializes with ``to_dict`` to
the JSON contract of ``docs/schema/plan.schema.json``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from yoyu.errors import SettingsError
from yoyu.estimate.types import MemoryEstimate, RunSettings
from yoyu.i18n import Message
from yoyu.units import GIB


class Verdict(str, enum.Enum):
    """Where the model runs, for the settings the plan ends up with."""

    FITS = "FITS"  # every layer on the GPU (or the CPU on a machine without one)
    FITS_WITH_CHANGES = "FITS_WITH_CHANGES"  # the asked settings do not fit; a change does
    PARTIAL_OFFLOAD = "PARTIAL_OFFLOAD"  # some layers on the GPU, the rest on the CPU
    CPU_ONLY = "CPU_ONLY"  # no layer on a GPU
    NEEDS_CLUSTER = "NEEDS_CLUSTER"  # too big for one node, fits split across the nodes
    DOES_NOT_FIT = "DOES_NOT_FIT"


class Risk(str, enum.Enum):
    """How much memory is left after the load (swap counts as danger, not room).

    ``tight``: system memory is fine but a device is within the headroom
    llama.cpp's ``--fit`` keeps free on each device (1 GiB): a Metal working
    set at 99.5 % loads, with nothing to spare for anything else on the GPU.
    """

    SAFE = "safe"
    TIGHT = "tight"
    CAUTION = "caution"
    ABORT = "abort"


@dataclass(frozen=True)
class RiskThresholds:
    """Free memory after load: at least ``safe_bytes`` is safe, below ``caution_bytes`` abort."""

    safe_bytes: int = 4 * GIB
    caution_bytes: int = 2 * GIB
    gpu_margin_bytes: int = 1 * GIB  # kept free on each GPU; llama.cpp's --fit target is 1024 MiB

    def __post_init__(self) -> None:
        if not 0 <= self.caution_bytes <= self.safe_bytes:
            raise SettingsError("risk thresholds need 0 <= caution <= safe free memory")
        if self.gpu_margin_bytes < 0:
            raise SettingsError("the GPU margin must not be negative")


@dataclass(frozen=True)
class PlanRequest:
    """The settings asked for and the rules the plan keeps.

    ``n_gpu_layers`` None lets the planner pick the largest count that fits;
    ``ram_free_bytes`` / ``gpu_free_bytes`` replace what the machine reports
    (a preset describes an idle box; ``--free 11GiB`` describes a busy one).
    """

    settings: RunSettings = field(default_factory=RunSettings)
    n_gpu_layers: int | None = None
    reserve_bytes: int = 0  # kept for the OS and apps on top of the risk thresholds
    thresholds: RiskThresholds = field(default_factory=RiskThresholds)
    ram_free_bytes: int | None = None
    gpu_free_bytes: int | None = None  # applied to every GPU
    propose_moves: bool = True

    def __post_init__(self) -> None:
        for label, value in (
            ("reserve", self.reserve_bytes),
            ("free memory", self.ram_free_bytes),
            ("GPU free memory", self.gpu_free_bytes),
        ):
            if value is not None and value < 0:
                raise SettingsError(f"{label} must not be negative, not {value} bytes")
        if self.n_gpu_layers is not None and self.n_gpu_layers < 0:
            raise SettingsError.from_message(
                "gpu layers must be 0 or more, not {value}", value=self.n_gpu_layers
            )


@dataclass(frozen=True)
class Reason:
    """One figure-backed reason: what needs how much where, against what it has."""

    device: str
    needed_bytes: int
    available_bytes: int
    message: str | Message  # English in JSON, the user's language at the CLI

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "needed_bytes": self.needed_bytes,
            "available_bytes": self.available_bytes,
            "message": str(self.message),
        }


@dataclass(frozen=True)
class Move:
    """A change that makes the model fit (or fit better), already evaluated.

    ``settings_change`` holds the ``RunSettings`` fields it changes (plus
    ``model`` for a different model or quant); the figures are the
    estimator's for the changed settings, not a guess.
    """

    action: str  # "reduce_ctx", "quantize_kv", "reduce_batch", "fewer_gpu_layers", ...
    description: str
    resulting_verdict: Verdict
    resulting_risk: Risk | None
    settings_change: dict[str, Any]
    total_bytes: int | None = None  # memory of the changed plan; None for a remote model
    free_after_bytes: int | None = None
    n_gpu_layers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "description": str(self.description),
            "resulting_verdict": self.resulting_verdict.value,
            "resulting_risk": self.resulting_risk.value if self.resulting_risk else None,
            "settings_change": dict(self.settings_change),
            "total_bytes": self.total_bytes,
            "free_after_bytes": self.free_after_bytes,
            "n_gpu_layers": self.n_gpu_layers,
        }


@dataclass(frozen=True)
class NodeShare:
    """One machine's slice of a model split by layers across nodes, with its own estimate."""

    name: str
    machine: str  # the machine description it was planned against
    role: str  # "head" (runs the server, holds embeddings and output) or "worker"
    first_layer: int
    last_layer: int
    n_gpu_layers: int  # of this node's share (its blocks, plus the output on the last node)
    total_bytes: int
    usable_bytes: int  # system memory (unified on a Mac) the node may use
    free_after_bytes: int
    risk: Risk
    estimate: MemoryEstimate
    failures: tuple[Reason, ...] = ()

    @property
    def n_layers(self) -> int:
        return self.last_layer - self.first_layer + 1

    @property
    def fits(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "machine": self.machine,
            "role": self.role,
            "first_layer": self.first_layer,
            "last_layer": self.last_layer,
            "n_layers": self.n_layers,
            "n_gpu_layers": self.n_gpu_layers,
            "total_bytes": self.total_bytes,
            "usable_bytes": self.usable_bytes,
            "free_after_bytes": self.free_after_bytes,
            "risk": self.risk.value,
            "fits": self.fits,
            "devices": [device.to_dict() for device in self.estimate.devices],
            "reasons": [reason.to_dict() for reason in self.failures],
        }


@dataclass(frozen=True)
class DeviceRow:
    """One device of the plan as the table and the JSON show it."""

    name: str
    kind: str
    layers: int
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    output_bytes: int
    engine_bytes: int
    overhead_bytes: int
    total_bytes: int
    usable_bytes: int
    free_after_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SpeedFigures:
    """Predicted speed and what limits it ("memory bandwidth of CUDA0", "CPU compute")."""

    decode_tps: float
    prefill_tps: float
    bound: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "decode_tps": round(self.decode_tps, 2),
            "prefill_tps": round(self.prefill_tps, 2),
            "bound": str(self.bound),
        }


@dataclass(frozen=True)
class Plan:
    """The answer: where the model goes, with which settings, how safe, and why.

    ``settings`` are the ones to run with (the asked ones, or the cheapest
    move's when the verdict is FITS_WITH_CHANGES, then ``applied_move`` says
    which); ``reasons`` explain, in figures, every refusal on the way.
    """

    model: str
    machine: str
    verdict: Verdict
    risk: Risk
    settings: RunSettings
    n_gpu_layers: int
    n_layers_total: int  # blocks + the output layer, llama.cpp's count for "all layers"
    estimate: MemoryEstimate
    devices: tuple[DeviceRow, ...]
    free_after_bytes: int  # system memory (RAM, or unified memory) left after the load
    reasons: tuple[Reason, ...] = ()
    moves: tuple[Move, ...] = ()
    applied_move: Move | None = None
    nodes: tuple[NodeShare, ...] = ()
    predicted: SpeedFigures | None = None
    notes: tuple[str, ...] = ()
    risk_reason: str | Message = ""  # the figure behind the risk word, for the user

    @property
    def kv_type(self) -> str:
        return self.settings.type_k

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "machine": self.machine,
            "verdict": self.verdict.value,
            "risk": self.risk.value,
            "risk_reason": str(self.risk_reason),
            "ctx": self.estimate.n_ctx,
            "kv_type": self.kv_type,
            "n_gpu_layers": self.n_gpu_layers,
            "n_layers_total": self.n_layers_total,
            "settings": self.settings.to_dict(),
            "totals": _totals(self.estimate),
            "devices": [device.to_dict() for device in self.devices],
            "free_after_bytes": self.free_after_bytes,
            "nodes": [node.to_dict() for node in self.nodes],
            "predicted": self.predicted.to_dict() if self.predicted else None,
            "reasons": [reason.to_dict() for reason in self.reasons],
            "moves": [move.to_dict() for move in self.moves],
            "applied_move": self.applied_move.to_dict() if self.applied_move else None,
            "notes": [str(note) for note in self.notes],
        }


def _totals(estimate: MemoryEstimate) -> dict[str, int]:
    return {
        "weights_bytes": estimate.total("weights_bytes") + estimate.total("repack_bytes"),
        "kv_bytes": estimate.total("kv_bytes"),
        "compute_bytes": estimate.total("compute_bytes"),
        "output_bytes": estimate.total("output_bytes"),
        "engine_bytes": estimate.total("engine_bytes"),
        "overhead_bytes": estimate.total("overhead_bytes"),
        "total_bytes": estimate.total_bytes,
    }


__all__ = [
    "DeviceRow",
    "Move",
    "NodeShare",
    "Plan",
    "PlanRequest",
    "Reason",
    "Risk",
    "RiskThresholds",
    "SpeedFigures",
    "Verdict",
]
