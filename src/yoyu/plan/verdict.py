"""Verdict and risk: two words a user acts on, each from one figure.

The verdict says where the layers go; the risk says how much system memory is
left once they are there. System memory is what matters for risk: a GPU that
runs out fails the load cleanly, while RAM that runs out means swap, a frozen
desktop or the OOM killer taking the editor with it.
"""

from __future__ import annotations

from yoyu.plan.types import Risk, RiskThresholds, Verdict
from yoyu.units import MIB

# Swap this busy already means the machine is paging; a new model makes it worse.
SWAP_IN_USE_BYTES = 256 * MIB


def placement_verdict(
    n_gpu_layers: int, n_layers_total: int, has_gpu: bool, experts_on_cpu: bool = False
) -> Verdict:
    """FITS when every layer sits on the GPU (or a GPU-less machine holds it all);
    layers whose MoE experts stay on the CPU are a partial offload."""
    if not has_gpu:
        return Verdict.CPU_ONLY
    if n_gpu_layers >= n_layers_total and not experts_on_cpu:
        return Verdict.FITS
    return Verdict.PARTIAL_OFFLOAD if n_gpu_layers > 0 else Verdict.CPU_ONLY


def classify_risk(free_after_bytes: int, thresholds: RiskThresholds) -> Risk:
    """Safe from ``safe_bytes`` free, caution from ``caution_bytes``, abort below."""
    if free_after_bytes >= thresholds.safe_bytes:
        return Risk.SAFE
    if free_after_bytes >= thresholds.caution_bytes:
        return Risk.CAUTION
    return Risk.ABORT


def swap_raised_risk(risk: Risk, swap_used_bytes: int) -> Risk:
    """A machine already swapping is at least at caution: swap is danger, not room."""
    if swap_used_bytes >= SWAP_IN_USE_BYTES and risk is Risk.SAFE:
        return Risk.CAUTION
    return risk


def is_runnable(verdict: Verdict) -> bool:
    """Whether the verdict means the model loads on what the plan describes."""
    return verdict is not Verdict.DOES_NOT_FIT


# Better placements first: used to tell whether a move improves a plan.
VERDICT_RANK = {
    Verdict.FITS: 0,
    Verdict.FITS_WITH_CHANGES: 1,
    Verdict.PARTIAL_OFFLOAD: 2,
    Verdict.CPU_ONLY: 3,
    Verdict.NEEDS_CLUSTER: 4,
    Verdict.DOES_NOT_FIT: 5,
}

# Safer first: used to compare two assessments' risk.
RISK_RANK = {Risk.SAFE: 0, Risk.TIGHT: 1, Risk.CAUTION: 2, Risk.ABORT: 3}
