"""Judge one LoRA / QLoRA training step on a machine: where it runs, verdict, risk.

A training step runs on one device: the first GPU when the step fits there
(its budget is the same one inference plans use, so an Apple Silicon GPU is
held to the Metal working set inside unified memory), else the CPU. The
components become a ``MemoryEstimate`` with one row per device, so the fit
check, the system memory left and the risk words are the inference planner's
own (``plan.fit``, ``plan.verdict``): a training plan and a serving plan can
never judge the same bytes differently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from yoyu.estimate.training import TrainingMemory, estimate_training
from yoyu.estimate.training_settings import TrainingSettings
from yoyu.estimate.types import DeviceMemory, MemoryEstimate, RunSettings
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.budget import CPU_DEVICE, MachineBudget, machine_budget
from yoyu.plan.fit import crowded_device, fit_failures, system_free_after
from yoyu.plan.types import PlanRequest, Reason, Risk, Verdict
from yoyu.plan.verdict import (
    RISK_RANK,
    VERDICT_RANK,
    classify_risk,
    placement_verdict,
    swap_raised_risk,
)
from yoyu.units import format_bytes


@dataclass(frozen=True)
class TrainingAssessment:
    """A training step placed on one device, with its verdict, risk and the figures."""

    settings: TrainingSettings
    memory: TrainingMemory
    estimate: MemoryEstimate  # the same bytes as device rows, for the shared fit checks
    budget: MachineBudget
    verdict: Verdict
    risk: Risk
    free_after_bytes: int
    risk_reason: str
    failures: tuple[Reason, ...] = ()  # why the first GPU (or the CPU) could not hold it

    @property
    def fits(self) -> bool:
        return self.verdict is not Verdict.DOES_NOT_FIT

    @property
    def is_ideal(self) -> bool:
        """On the GPU (on the CPU of a machine without one), with safe headroom."""
        best = Verdict.FITS if self.budget.gpus else Verdict.CPU_ONLY
        return self.verdict is best and self.risk is Risk.SAFE

    def rank(self) -> tuple[int, int]:
        """Sort key, better first: verdict, then risk."""
        return (VERDICT_RANK[self.verdict], RISK_RANK[self.risk])


def assess_training(
    spec: ModelSpec, machine: Machine, request: PlanRequest, settings: TrainingSettings
) -> TrainingAssessment:
    """The first GPU when the step fits there, else the CPU; the GPU's refusal is kept."""
    budget = machine_budget(machine, request)
    if not budget.gpus:
        return judge_on(spec, settings, CPU_DEVICE, budget, request)
    on_gpu = judge_on(spec, settings, budget.gpus[0].name, budget, request)
    if on_gpu.fits:
        return on_gpu
    on_cpu = judge_on(spec, settings, CPU_DEVICE, budget, request)
    if not on_cpu.fits:
        return on_gpu
    return dataclasses.replace(on_cpu, failures=on_gpu.failures)


def judge_on(
    spec: ModelSpec,
    settings: TrainingSettings,
    device: str,
    budget: MachineBudget,
    request: PlanRequest,
) -> TrainingAssessment:
    """Estimate the step on ``device`` and judge it with the inference planner's rules."""
    memory = estimate_training(spec, settings, device)
    estimate = as_memory_estimate(memory, settings)
    failures = fit_failures(estimate, budget)
    free_after = system_free_after(estimate, budget)
    reason = f"{format_bytes(free_after)} of system memory free during the step"
    if failures:
        return TrainingAssessment(
            settings, memory, estimate, budget, Verdict.DOES_NOT_FIT, Risk.ABORT, free_after,
            reason, failures,
        )  # fmt: skip
    verdict = placement_verdict(int(device != CPU_DEVICE), 1, bool(budget.gpus))
    risk = swap_raised_risk(classify_risk(free_after, request.thresholds), budget.swap_used_bytes)
    crowded = crowded_device(estimate, budget, request.thresholds.gpu_margin_bytes)
    if crowded is not None and RISK_RANK[risk] < RISK_RANK[Risk.TIGHT]:
        risk, reason = Risk.TIGHT, crowded
    return TrainingAssessment(settings, memory, estimate, budget, verdict, risk, free_after, reason)


def as_memory_estimate(memory: TrainingMemory, settings: TrainingSettings) -> MemoryEstimate:
    """The step as device rows: weights and training state, activations and logits, framework.

    On a GPU the process itself stays on the host (a CPU row); on the CPU it is
    already in the framework figure.
    """
    state = memory.base_weights_bytes + memory.adapter_bytes + memory.gradient_bytes
    state += memory.optimizer_bytes
    kind = "cpu" if memory.device == CPU_DEVICE else "gpu"
    devices = [
        DeviceMemory(
            name=memory.device,
            kind=kind,
            weights_bytes=state,
            compute_bytes=memory.activation_bytes + memory.logits_bytes,
            overhead_bytes=memory.framework_bytes,
        )
    ]
    if memory.host_bytes:
        devices.insert(0, DeviceMemory(CPU_DEVICE, "cpu", overhead_bytes=memory.host_bytes))
    return MemoryEstimate(RunSettings(), settings.seq, None, tuple(devices))
