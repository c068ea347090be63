"""``make_training_plan``: a LoRA / QLoRA run judged before it starts.

The same shape of answer as an inference plan: a verdict, a risk with the
figure behind it, the reasons in figures when it does not fit, and fitting
moves each assessed like the plan itself. When the asked settings do not fit
and a move makes them fit, the plan adopts the cheapest (FITS_WITH_CHANGES)
and says which. Pure: the model, the machine and the settings come in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yoyu.estimate.training_settings import TrainingSettings
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.fit import device_budgets
from yoyu.plan.training_assess import TrainingAssessment, assess_training
from yoyu.plan.training_moves import TrainingCandidate, training_moves
from yoyu.plan.types import Move, PlanRequest, Reason, Risk, Verdict

QLORA_NOTE = (
    "QLoRA's 4-bit base: NF4 with double quantization, 4.127 bits a weight (Dettmers et al. "
    "2023), the rest in fp32 (prepare_model_for_kbit_training); measured through bitsandbytes' "
    "CPU backend (benchmarks/training_memory.py), not on CUDA"
)
METAL_QLORA_NOTE = (
    "bitsandbytes has no Metal backend: on Apple Silicon the 4-bit equivalent is mlx-lm's "
    "LoRA on a 4-bit MLX model (its bytes per weight are close; its activations are MLX's)"
)
GGUF_NOTE = (
    "a GGUF gives the architecture only: PEFT trains the 16-bit checkpoint of the same "
    "model, which is what the plan counts"
)
CPU_NOTE = "the step does not fit the GPU; on the CPU it runs, far slower"
CPU_FIGURES_NOTE = (
    "the process and allocator figures were measured with PyTorch's CPU wheel "
    "(benchmarks/training_memory.py); a CUDA build maps more libraries on the host"
)
ONE_GPU_NOTE = "planned on the first GPU only (no data or model parallelism)"


@dataclass(frozen=True)
class TrainingPlan:
    """The answer for a training run: where the step goes, how safely, and why."""

    model: str
    machine: str
    verdict: Verdict
    risk: Risk
    risk_reason: str
    settings: TrainingSettings
    assessment: TrainingAssessment
    reasons: tuple[Reason, ...] = ()
    moves: tuple[Move, ...] = ()
    applied_move: Move | None = None
    notes: tuple[str, ...] = ()

    @property
    def free_after_bytes(self) -> int:
        return self.assessment.free_after_bytes

    def to_dict(self) -> dict[str, Any]:
        memory = self.assessment.memory
        return {
            "kind": "training",
            "model": self.model,
            "machine": self.machine,
            "verdict": self.verdict.value,
            "risk": self.risk.value,
            "risk_reason": self.risk_reason,
            "settings": self.settings.to_dict(),
            "device": memory.device,
            "components": memory.to_dict(),
            "totals": {"total_bytes": memory.total_bytes},
            "devices": device_rows(self.assessment),
            "free_after_bytes": self.free_after_bytes,
            "reasons": [reason.to_dict() for reason in self.reasons],
            "moves": [move.to_dict() for move in self.moves],
            "applied_move": self.applied_move.to_dict() if self.applied_move else None,
            "notes": list(self.notes),
        }


def make_training_plan(
    spec: ModelSpec, machine: Machine, request: PlanRequest, settings: TrainingSettings
) -> TrainingPlan:
    """Plan ``settings`` for ``spec`` on ``machine``; adopt the cheapest fitting move if needed."""

    def judge(candidate: TrainingSettings) -> TrainingAssessment:
        return assess_training(spec, machine, request, candidate)

    asked = judge(settings)
    candidates = training_moves(asked, judge) if request.propose_moves else ()
    adopted = _adoptable(asked, candidates)
    chosen = adopted.assessment if adopted else asked
    verdict = Verdict.FITS_WITH_CHANGES if adopted else chosen.verdict
    return TrainingPlan(
        model=spec.name,
        machine=machine.name,
        verdict=verdict,
        risk=chosen.risk,
        risk_reason=chosen.risk_reason,
        settings=chosen.settings,
        assessment=chosen,
        reasons=asked.failures,
        moves=tuple(c.move for c in candidates if c is not adopted),
        applied_move=adopted.move if adopted else None,
        notes=_notes(spec, machine, chosen),
    )


def _adoptable(
    asked: TrainingAssessment, candidates: tuple[TrainingCandidate, ...]
) -> TrainingCandidate | None:
    """The cheapest move reaching the best outcome (on the GPU), else the cheapest that fits."""
    if asked.fits:
        return None
    ideal = (c for c in candidates if c.assessment.is_ideal)
    return next(ideal, None) or next((c for c in candidates if c.assessment.fits), None)


def _notes(spec: ModelSpec, machine: Machine, chosen: TrainingAssessment) -> tuple[str, ...]:
    notes = [chosen.memory.activation_formula]
    if chosen.settings.method == "qlora":
        notes.append(QLORA_NOTE)
        if chosen.memory.device.startswith("Metal"):
            notes.append(METAL_QLORA_NOTE)
    if spec.format == "gguf":
        notes.append(GGUF_NOTE)
    if chosen.verdict is Verdict.CPU_ONLY and machine.gpus:
        notes.append(CPU_NOTE)
    if len(machine.gpus) > 1:
        notes.append(ONE_GPU_NOTE)
    notes.append(CPU_FIGURES_NOTE)
    return tuple(notes)


def device_rows(assessment: TrainingAssessment) -> list[dict[str, Any]]:
    """Each device's bytes against what it may use (the system pool on unified memory)."""
    rows = []
    estimate, budget = assessment.estimate, assessment.budget
    for device, owner in zip(estimate.devices, device_budgets(estimate, budget), strict=True):
        pooled = owner.kind == "cpu" or budget.unified_memory
        free = assessment.free_after_bytes if pooled else owner.usable_bytes - device.total_bytes
        rows.append(
            {
                "name": device.name,
                "kind": device.kind,
                "total_bytes": device.total_bytes,
                "usable_bytes": owner.usable_bytes,
                "free_after_bytes": free,
            }
        )
    return rows
