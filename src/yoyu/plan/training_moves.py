"""Fitting moves for a training step, cheapest first, each assessed like the plan itself.

The order is the cost to the user, as for inference moves (``plan.moves``):
gradient checkpointing costs about a third more compute and nothing else; an
8-bit optimizer (bitsandbytes' AdamW8bit) costs next to nothing in quality; a
smaller batch with more accumulation steps keeps the effective batch and
costs speed; a 4-bit base (QLoRA) costs speed and a little quality; a lower
rank changes the adapter; a shorter sequence drops training text. Within a
kind the least drastic step that reaches the best outcome wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from yoyu.estimate.training_settings import TrainingSettings
from yoyu.plan.training_assess import TrainingAssessment
from yoyu.plan.types import Move, Verdict
from yoyu.units import format_bytes

Judge = Callable[[TrainingSettings], TrainingAssessment]
RANK_LADDER = (64, 32, 16, 8, 4)
MIN_SEQ = 128
# Moves that cost speed, not quality: a combination takes them all the way
MIN_SAVING = 0.01  # a combination takes a speed-only move that saves 1 % of the step or more
SPEED_ONLY_KINDS = ("grad_checkpointing", "optimizer_8bit", "reduce_batch", "qlora")
Option = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class TrainingCandidate:
    """A move with the assessment behind it, so the planner can adopt it."""

    move: Move
    assessment: TrainingAssessment


def training_moves(current: TrainingAssessment, judge: Judge) -> tuple[TrainingCandidate, ...]:
    """Every move that improves on ``current``, cheapest first; none when it is ideal."""
    if current.is_ideal:
        return ()
    found = [
        _best_step(action, current, judge, options(current.settings)) for action, options in KINDS
    ]
    alone = [(KIND_ORDER[c.move.action], c) for c in found if c is not None]
    combined = _combined(current, judge)
    ranked = [*alone, combined] if combined is not None else alone
    return tuple(candidate for _, candidate in sorted(ranked, key=lambda pair: pair[0]))


def _combined(current: TrainingAssessment, judge: Judge) -> tuple[float, TrainingCandidate] | None:
    """The moves in order, each on top of the ones before, until one reaches the best
    outcome (checkpointing + batch 1 + QLoRA is the usual answer). Its cost is its
    costliest part's: it comes before a single costlier move (a much shorter seq)."""
    labels: list[str] = []
    used: list[int] = []
    change: dict[str, Any] = {}
    step = current
    for action, options in KINDS:
        found = _best_step(action, step, judge, options(step.settings))
        if found is None and action in SPEED_ONLY_KINDS:
            found = _strongest(action, step, judge, options(step.settings))
        if found is None:
            continue
        labels.append(found.move.description.split(": ")[0])
        used.append(KIND_ORDER[action])
        change.update(found.move.settings_change)
        step = found.assessment
        if step.is_ideal:
            break
    if len(labels) < 2 or not step.is_ideal:
        return None
    return max(used) - 0.5, _candidate("combined", " + ".join(labels), change, step)


def _strongest(
    action: str, current: TrainingAssessment, judge: Judge, options: list[Option]
) -> TrainingCandidate | None:
    """A move that costs only speed, taken all the way when it lowers the bytes even
    though it does not change the verdict alone (it may with the next one)."""
    if not options:
        return None
    label, change = options[-1]
    result = judge(dataclasses.replace(current.settings, **change))
    if result.memory.device != current.memory.device:
        return None
    if result.memory.total_bytes > current.memory.total_bytes * (1 - MIN_SAVING):
        return None  # an 8-bit optimizer for a small adapter: not worth a dependency
    return _candidate(action, label, change, result)


def _checkpointing(settings: TrainingSettings) -> list[Option]:
    if settings.grad_checkpointing:
        return []
    return [("gradient checkpointing on", {"grad_checkpointing": True})]


def _eight_bit(settings: TrainingSettings) -> list[Option]:
    if settings.optimizer != "adamw":
        return []
    return [("optimizer AdamW -> 8-bit AdamW (bitsandbytes)", {"optimizer": "adamw8bit"})]


def _smaller_batches(settings: TrainingSettings) -> list[Option]:
    """Halve the batch, multiply the accumulation steps so the effective batch stays."""
    options, batch = [], settings.batch // 2
    while batch >= 1:
        accum = -(-settings.batch * settings.grad_accum // batch)
        label = f"batch {settings.batch} -> {batch} with gradient accumulation {accum}"
        options.append((label, {"batch": batch, "grad_accum": accum}))
        batch //= 2
    return options


def _four_bit_base(settings: TrainingSettings) -> list[Option]:
    if settings.method != "lora":
        return []
    return [("4-bit NF4 base weights (QLoRA)", {"method": "qlora"})]


def _lower_ranks(settings: TrainingSettings) -> list[Option]:
    return [
        (f"rank {settings.rank} -> {rank}", {"rank": rank})
        for rank in RANK_LADDER
        if rank < settings.rank
    ]


def _shorter_seqs(settings: TrainingSettings) -> list[Option]:
    options, seq = [], settings.seq // 2
    while seq >= MIN_SEQ:
        options.append((f"seq {settings.seq} -> {seq}", {"seq": seq}))
        seq //= 2
    return options


def _best_step(
    action: str, current: TrainingAssessment, judge: Judge, options: Iterable[Option]
) -> TrainingCandidate | None:
    """The first option (least drastic) that is ideal, else the best one that improves."""
    best: tuple[str, dict[str, Any], TrainingAssessment] | None = None
    for label, change in options:
        result = judge(dataclasses.replace(current.settings, **change))
        if best is None or result.rank() < best[2].rank():
            best = (label, change, result)
        if result.is_ideal:
            break
    if best is None or not (best[2].fits and best[2].rank() < current.rank()):
        return None
    return _candidate(action, *best)


def _candidate(
    action: str, label: str, change: dict[str, Any], result: TrainingAssessment
) -> TrainingCandidate:
    move = Move(
        action=action,
        description=f"{label}: {training_outcome(result)}",
        resulting_verdict=result.verdict,
        resulting_risk=result.risk,
        settings_change=change,
        total_bytes=result.memory.total_bytes,
        free_after_bytes=result.free_after_bytes,
    )
    return TrainingCandidate(move, result)


KINDS: tuple[tuple[str, Callable[[TrainingSettings], list[Option]]], ...] = (
    ("grad_checkpointing", _checkpointing),
    ("optimizer_8bit", _eight_bit),
    ("reduce_batch", _smaller_batches),
    ("qlora", _four_bit_base),
    ("reduce_rank", _lower_ranks),
    ("reduce_seq", _shorter_seqs),
)

KIND_ORDER = {action: index for index, (action, _) in enumerate(KINDS)}


def training_outcome(result: TrainingAssessment) -> str:
    """What an assessment means, in one phrase with its figures."""
    where = {
        Verdict.FITS: f"fits on {result.memory.device}",
        Verdict.CPU_ONLY: "trains on the CPU",
    }.get(result.verdict, "still does not fit")
    return (
        f"{where}, {format_bytes(result.memory.total_bytes)} in all, "
        f"{format_bytes(result.free_after_bytes)} of system memory left ({result.risk.value})"
    )
