"""The plan's prediction for a run, and the engine settings that carry it out.

A run loads exactly what the plan describes (``plan.settings`` with the GPU
layer count it chose), so the predicted figures printed beside the measured
ones are about the same configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yoyu.errors import DoesNotFitError
from yoyu.estimate.types import RunSettings
from yoyu.i18n import Message, message_of
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.emit.llama_cpp import engine_load_settings
from yoyu.plan.planner import make_plan
from yoyu.plan.types import Plan, PlanRequest, RiskThresholds, Verdict
from yoyu.units import format_bytes


@dataclass(frozen=True)
class Prediction:
    """What the plan expects: bytes per component, on GPUs, speed, verdict."""

    verdict: str
    risk: str
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    output_bytes: int
    engine_bytes: int
    overhead_bytes: int
    total_bytes: int
    gpu_bytes: int
    free_after_bytes: int
    decode_tps: float | None
    prefill_tps: float | None
    settings: RunSettings

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "risk": self.risk,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes,
            "output_bytes": self.output_bytes,
            "engine_bytes": self.engine_bytes,
            "overhead_bytes": self.overhead_bytes,
            "total_bytes": self.total_bytes,
            "gpu_bytes": self.gpu_bytes,
            "free_after_bytes": self.free_after_bytes,
            "decode_tps": _rounded(self.decode_tps),
            "prefill_tps": _rounded(self.prefill_tps),
        }


def predict(
    spec: ModelSpec,
    machine: Machine,
    settings: RunSettings,
    n_gpu_layers: int | None = None,
    *,
    force: bool = False,
    free_bytes: int | None = None,
    thresholds: RiskThresholds | None = None,
) -> Prediction:
    """Plan ``spec`` as asked (no fitting moves); refuse what does not fit unless ``force``.

    ``free_bytes`` plans as if only that much memory were free (``--budget``),
    ``thresholds`` replaces the plan's free-memory floors (the guard's).
    """
    request = PlanRequest(
        settings=settings, n_gpu_layers=n_gpu_layers, propose_moves=False,
        ram_free_bytes=free_bytes, thresholds=thresholds or RiskThresholds(),
    )  # fmt: skip
    plan = make_plan(spec, machine, request)
    if plan.verdict is Verdict.DOES_NOT_FIT and not force:
        raise DoesNotFitError.from_message(
            "the plan says {model} does not fit on {machine} at ctx {ctx}: {shortfall}; "
            "lower --ctx, or pass --force to try anyway",
            model=spec.name, machine=machine.name, ctx=plan.estimate.n_ctx,
            shortfall=_shortfall(plan),
        )  # fmt: skip
    return prediction_of(plan)


def _shortfall(plan: Plan) -> str | Message:
    """The first reason with its figures, else the total the plan needs."""
    if plan.reasons:
        return plan.reasons[0].message
    return message_of("{size} needed", size=format_bytes(plan.estimate.total_bytes))


def prediction_of(plan: Plan) -> Prediction:
    totals = plan.to_dict()["totals"]
    gpu_bytes = sum(row.total_bytes for row in plan.devices if row.kind == "gpu")
    return Prediction(
        verdict=plan.verdict.value,
        risk=plan.risk.value,
        weights_bytes=totals["weights_bytes"],
        kv_bytes=totals["kv_bytes"],
        compute_bytes=totals["compute_bytes"],
        output_bytes=totals["output_bytes"],
        engine_bytes=totals["engine_bytes"],
        overhead_bytes=totals["overhead_bytes"],
        total_bytes=totals["total_bytes"],
        gpu_bytes=gpu_bytes,
        free_after_bytes=plan.free_after_bytes,
        decode_tps=plan.predicted.decode_tps if plan.predicted else None,
        prefill_tps=plan.predicted.prefill_tps if plan.predicted else None,
        settings=plan.settings,
    )


def engine_settings(settings: RunSettings, seed: int | None = None) -> dict[str, Any]:
    """The backend's load settings (``Llama`` names plus the engine's own) for ``settings``."""
    kwargs = engine_load_settings(settings)
    if seed is not None:
        kwargs["seed"] = seed
    return kwargs


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
