"""One model, one machine, one set of settings: placement, verdict and risk together.

The planner assesses the settings asked for; every fitting move is assessed
the same way, so a move's verdict and figures are exactly what the plan would
say if the user took it.
"""

from __future__ import annotations

from dataclasses import dataclass

from yoyu.estimate.types import RunSettings
from yoyu.i18n import Message, message_of
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.budget import MachineBudget, machine_budget
from yoyu.plan.fit import crowded_device, system_free_after
from yoyu.plan.placement import (
    EstimateFn,
    Placement,
    cpu_expert_blocks,
    n_layers_total,
    place,
)
from yoyu.plan.types import PlanRequest, Risk, Verdict
from yoyu.plan.verdict import (
    RISK_RANK,
    VERDICT_RANK,
    classify_risk,
    placement_verdict,
    swap_raised_risk,
)
from yoyu.units import format_bytes


@dataclass(frozen=True)
class Assessment:
    """A placement with its verdict, risk and the system memory left after it."""

    spec: ModelSpec
    placement: Placement
    budget: MachineBudget
    verdict: Verdict
    risk: Risk
    free_after_bytes: int
    risk_reason: str | Message = ""

    @property
    def fits(self) -> bool:
        return self.verdict is not Verdict.DOES_NOT_FIT

    @property
    def is_ideal(self) -> bool:
        """Every layer where it runs fastest, with safe headroom: nothing left to improve."""
        best = Verdict.FITS if self.budget.gpus else Verdict.CPU_ONLY
        return self.verdict is best and self.risk is Risk.SAFE

    def rank(self) -> tuple[int, int, int]:
        """Sort key, better first: verdict, risk, more GPU layers (bytes alone do not count,
        so among equals the least drastic change wins)."""
        return (VERDICT_RANK[self.verdict], RISK_RANK[self.risk], -self.placement.n_gpu_layers)


def assess(
    spec: ModelSpec,
    machine: Machine,
    request: PlanRequest,
    settings: RunSettings,
    estimate: EstimateFn,
) -> Assessment:
    """Place ``spec`` with ``settings`` and judge the result."""
    budget = machine_budget(machine, request)
    placement = place(spec, machine, settings, budget, estimate, request.n_gpu_layers)
    free_after = system_free_after(placement.estimate, budget)
    if not placement.fits:
        return Assessment(spec, placement, budget, Verdict.DOES_NOT_FIT, Risk.ABORT, free_after)
    experts_on_cpu = cpu_expert_blocks(spec, placement.settings) > 0
    verdict = placement_verdict(
        placement.n_gpu_layers, n_layers_total(spec), bool(budget.gpus), experts_on_cpu
    )
    risk = swap_raised_risk(classify_risk(free_after, request.thresholds), budget.swap_used_bytes)
    reason: str | Message = message_of(
        "{free} of system memory free after load", free=format_bytes(free_after)
    )
    crowded = crowded_device(placement.estimate, budget, request.thresholds.gpu_margin_bytes)
    if crowded is not None and RISK_RANK[risk] < RISK_RANK[Risk.TIGHT]:
        risk, reason = Risk.TIGHT, crowded
    return Assessment(spec, placement, budget, verdict, risk, free_after, reason)
