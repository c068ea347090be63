"""``make_plan``: the one pure function from (model, machine, request) to a ``Plan``.

It assesses the settings asked for, evaluates the fitting moves, adopts the
cheapest settings change when the asked settings do not fit at all
(FITS_WITH_CHANGES), and, given several nodes, splits the model across them
when one is not enough (NEEDS_CLUSTER). Nothing here reads files, probes the
machine or logs: the estimator, the speed model and the catalog of smaller
models are passed in, so tests run on plain values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from yoyu.estimate.engine import VLLM_NAME
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.speed import SpeedPrediction, predict_speed
from yoyu.estimate.types import MemoryEstimate
from yoyu.i18n import Message, message_of
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.assess import Assessment, assess
from yoyu.plan.engine_defaults import defaults_note
from yoyu.plan.fit import device_budgets
from yoyu.plan.moves import Candidate, Catalog, fitting_moves
from yoyu.plan.multinode import node_names, node_spec, plan_nodes
from yoyu.plan.placement import EstimateFn, cpu_expert_blocks, n_layers_total
from yoyu.plan.types import (
    DeviceRow,
    NodeShare,
    Plan,
    PlanRequest,
    Reason,
    Risk,
    SpeedFigures,
    Verdict,
)
from yoyu.units import format_bytes

SpeedFn = Callable[[ModelSpec, MemoryEstimate, Machine], SpeedPrediction]
SETTINGS_MOVES = (
    "flash_attn", "reduce_ctx", "quantize_kv", "reduce_batch", "fewer_gpu_layers",
    "kv_pool", "fewer_seqs",  # vLLM's (plan.vllm_moves)
)  # fmt: skip
_RISK_ORDER = (Risk.SAFE, Risk.TIGHT, Risk.CAUTION, Risk.ABORT)
ONE_NODE_NOTE = message_of("the first node holds the whole model; no split across nodes is needed")


def make_plan(
    spec: ModelSpec,
    machine: Machine,
    request: PlanRequest,
    *,
    nodes: Sequence[Machine] | None = None,
    estimate: EstimateFn = estimate_memory,
    speed: SpeedFn | None = predict_speed,
    catalog: Catalog = (),
) -> Plan:
    """Plan ``spec`` on ``machine`` (or across ``nodes``, the first being the head).

    Args:
        catalog: models a "smaller model" move may propose, or a function called for
            them only when such a move is weighed (the CLI's reads the bundled catalog);
            empty means no such move.
    """
    asked = assess(spec, machine, request, request.settings, estimate)
    candidates = (
        fitting_moves(spec, machine, request, asked, estimate, catalog)
        if request.propose_moves
        else ()
    )
    if nodes and len(nodes) > 1 and not asked.fits:
        return _cluster_plan(spec, machine, request, asked, candidates, nodes, estimate, speed)
    adopted = _adoptable(asked, candidates)
    chosen = adopted.assessment if adopted and adopted.assessment else asked
    plan = _plan_from(spec, machine, chosen, asked, candidates, speed)
    defaults = (
        defaults_note(spec, machine, plan.estimate, estimate) if request.propose_moves else None
    )
    if defaults:
        plan = dataclasses.replace(plan, notes=(*plan.notes, defaults))
    if nodes and len(nodes) > 1:
        plan = dataclasses.replace(plan, notes=(*plan.notes, ONE_NODE_NOTE))
    if adopted is None:
        return plan
    others = tuple(c.move for c in candidates if c is not adopted)
    return dataclasses.replace(
        plan, verdict=Verdict.FITS_WITH_CHANGES, applied_move=adopted.move, moves=others
    )


def _machine_notes(machine: Machine) -> tuple[str, ...]:
    """What the plan assumed about the machine, when it is not a measurement."""
    assumed = machine.memory.assumed_in_use_bytes
    if assumed is None:
        return ()
    return (
        message_of(
            "assumed {size} already in use by the system and apps (the preset's typical "
            "desktop); give --free with your own figure",
            size=format_bytes(assumed),
        ),
    )


def _adoptable(asked: Assessment, candidates: Sequence[Candidate]) -> Candidate | None:
    """The cheapest change of settings that makes a model that does not fit, fit."""
    if asked.fits:
        return None
    return next(
        (
            candidate
            for candidate in candidates
            if candidate.move.action in SETTINGS_MOVES
            and candidate.assessment is not None
            and candidate.assessment.fits
        ),
        None,
    )


def _plan_from(
    spec: ModelSpec,
    machine: Machine,
    chosen: Assessment,
    asked: Assessment,
    candidates: Sequence[Candidate],
    speed: SpeedFn | None,
) -> Plan:
    estimate = chosen.placement.estimate
    return Plan(
        model=spec.name,
        machine=machine.name,
        verdict=chosen.verdict,
        risk=chosen.risk,
        settings=chosen.placement.settings,
        n_gpu_layers=chosen.placement.n_gpu_layers,
        n_layers_total=n_layers_total(spec),
        estimate=estimate,
        devices=device_rows(chosen),
        free_after_bytes=chosen.free_after_bytes,
        reasons=_reasons(asked, chosen),
        moves=tuple(candidate.move for candidate in candidates),
        predicted=_speed(spec, estimate, machine, speed) if chosen.fits else None,
        notes=(*_machine_notes(machine), *estimate.notes),
        risk_reason=chosen.risk_reason,
    )


def _reasons(asked: Assessment, chosen: Assessment) -> tuple[Reason, ...]:
    """Why the asked settings do not fit (or stop short of the GPU), then the chosen ones."""
    reasons = _as_asked(asked) + _one_more_layer(asked)
    if chosen is not asked:
        reasons += _one_more_layer(chosen)
    return reasons


def _one_more_layer(assessment: Assessment) -> tuple[Reason, ...]:
    """Why the search stopped: the GPU figures of one more offloaded layer (or of one
    block's experts fewer on the CPU)."""
    placement = assessment.placement
    experts_on_cpu = cpu_expert_blocks(assessment.spec, placement.settings)
    if experts_on_cpu:
        where = message_of(
            "with the MoE experts of {blocks} blocks on the CPU", blocks=experts_on_cpu - 1
        )
    else:
        layers = f"{placement.n_gpu_layers + 1}/{n_layers_total(assessment.spec)}"
        where = message_of("with {layers} layers on the GPU", layers=layers)
    return tuple(
        dataclasses.replace(reason, message=_at(where, reason))
        for reason in placement.limit_reasons
    )


def _at(where: Message, reason: Reason) -> Message:
    return message_of("{where}: {reason}", where=where, reason=reason.message)


def _as_asked(asked: Assessment) -> tuple[Reason, ...]:
    """The refusals of the asked settings, saying at which GPU layer count they were found."""
    if not asked.budget.gpus:
        return asked.placement.failures
    layers = f"{asked.placement.n_gpu_layers}/{n_layers_total(asked.spec)}"
    where = message_of("as asked, with {layers} layers on the GPU", layers=layers)
    return tuple(
        dataclasses.replace(reason, message=_at(where, reason))
        for reason in asked.placement.failures
    )


def device_rows(chosen: Assessment) -> tuple[DeviceRow, ...]:
    """One row per device: the estimate's components and what is left on its budget."""
    estimate = chosen.placement.estimate
    rows = []
    for device, owner in zip(
        estimate.devices, device_budgets(estimate, chosen.budget), strict=True
    ):
        pool_free = (
            chosen.free_after_bytes if owner.kind == "cpu" or chosen.budget.unified_memory else None
        )
        rows.append(
            DeviceRow(
                name=device.name,
                kind=device.kind,
                layers=len(device.layers),
                weights_bytes=device.weights_bytes + device.repack_bytes,
                kv_bytes=device.kv_bytes,
                compute_bytes=device.compute_bytes,
                output_bytes=device.output_bytes,
                engine_bytes=device.engine_bytes,
                overhead_bytes=device.overhead_bytes,
                total_bytes=device.total_bytes,
                usable_bytes=owner.usable_bytes,
                free_after_bytes=owner.usable_bytes - device.total_bytes
                if pool_free is None
                else pool_free,
            )
        )
    return tuple(rows)


def _speed(
    spec: ModelSpec, estimate: MemoryEstimate, machine: Machine, speed: SpeedFn | None
) -> SpeedFigures | None:
    if speed is None or estimate.settings.engine == VLLM_NAME:
        return None  # the speed model is llama.cpp's kernels; vLLM's is not modelled
    prediction = speed(spec, estimate, machine)
    return SpeedFigures(prediction.decode_tps, prediction.prefill_tps, prediction.bound)


# --- several nodes ------------------------------------------------------------


def _cluster_plan(
    spec: ModelSpec,
    machine: Machine,
    request: PlanRequest,
    asked: Assessment,
    candidates: Sequence[Candidate],
    nodes: Sequence[Machine],
    estimate: EstimateFn,
    speed: SpeedFn | None,
) -> Plan:
    """One node is not enough: split by layers and judge every node's share."""
    shares = plan_nodes(spec, nodes, request, request.settings, estimate)
    fits = all(share.fits for share in shares)
    local_moves = tuple(c.move for c in candidates if c.move.action != "cluster")
    plan = _plan_from(spec, machine, asked, asked, (), None)
    return dataclasses.replace(
        plan,
        verdict=Verdict.NEEDS_CLUSTER if fits else Verdict.DOES_NOT_FIT,
        risk=_worst_risk(share.risk for share in shares) if fits else Risk.ABORT,
        nodes=shares,
        reasons=plan.reasons + _share_reasons(shares),
        moves=() if fits else local_moves,
        free_after_bytes=min(share.free_after_bytes for share in shares),
        predicted=_cluster_speed(spec, shares, nodes, speed) if fits else None,
    )


def _share_reasons(shares: Sequence[NodeShare]) -> tuple[Reason, ...]:
    reasons = []
    for share in shares:
        for reason in share.failures:
            message = (
                f"{share.name} (layers {share.first_layer}-{share.last_layer}): {reason.message}"
            )
            reasons.append(
                dataclasses.replace(reason, device=f"{share.name}/{reason.device}", message=message)
            )
    return tuple(reasons)


def _worst_risk(risks: Iterable[Risk]) -> Risk:
    found = list(risks)
    return max(found, key=_RISK_ORDER.index) if found else Risk.ABORT


def _cluster_speed(
    spec: ModelSpec, shares: Sequence[NodeShare], nodes: Sequence[Machine], speed: SpeedFn | None
) -> SpeedFigures | None:
    """Nodes run their layers one after another: per-token times add up."""
    if speed is None or not shares:
        return None
    by_name = dict(zip(node_names(nodes), nodes, strict=True))  # a share's name is its node's
    predictions = [
        speed(share_spec(spec, share), share.estimate, by_name[share.name]) for share in shares
    ]
    slowest = min(predictions, key=lambda prediction: prediction.decode_tps)
    return SpeedFigures(
        decode_tps=_in_series([prediction.decode_tps for prediction in predictions]),
        prefill_tps=_in_series([prediction.prefill_tps for prediction in predictions]),
        bound=message_of("{bound}; nodes in series, network time not counted", bound=slowest.bound),
    )


def share_spec(spec: ModelSpec, share: NodeShare) -> ModelSpec:
    return node_spec(spec, share.first_layer, share.last_layer, share.role == "head")


def _in_series(rates: Sequence[float]) -> float:
    if any(rate <= 0 for rate in rates):
        return 0.0
    return 1.0 / sum(1.0 / rate for rate in rates)


def refusal_summary(plan: Plan) -> str:
    """One line that says why, in figures, for a plan that does not fit as asked."""
    if not plan.reasons:
        return ""
    first = plan.reasons[0]
    short = first.needed_bytes - first.available_bytes
    return f"{first.message}; {format_bytes(short)} short"
