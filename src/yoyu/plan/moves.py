"""Fitting moves: what to change when a model does not fit, cheapest first.

Each move is assessed with the estimator exactly like the plan itself, so it
carries the verdict and figures the user would get by taking it. The order is
the cost to the user: flash attention costs nothing (same output, no score
matrix of ctx x ubatch); a shorter context costs nothing until a prompt needs
it; a quantized KV cache costs a little quality; a smaller batch costs prompt
speed; fewer GPU layers cost decode speed; a smaller quant costs quality and
a download; a smaller model costs more quality; a remote model costs privacy
and money. Within a kind, the least drastic step that reaches the best
placement wins (the largest context, the finest quant).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from yoyu.estimate.engine import LLAMA_SERVER_NAME, VLLM_NAME, engine_profile
from yoyu.estimate.types import RunSettings
from yoyu.i18n import Message, message_of
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec, TensorInfo, summarize_tensors
from yoyu.plan.assess import Assessment, assess
from yoyu.plan.multinode import plan_nodes
from yoyu.plan.placement import (
    EstimateFn,
    cpu_expert_blocks,
    decode_tps,
    experts_phrase,
    n_layers_total,
)
from yoyu.plan.types import Move, PlanRequest, Risk, Verdict
from yoyu.plan.vllm_moves import vllm_moves
from yoyu.units import format_bytes

CTX_LADDER = (131072, 65536, 32768, 16384, 8192, 4096, 2048)
KV_LADDER = ("q8_0", "q4_0")  # a quantized V cache needs flash attention in llama.cpp
UBATCH_LADDER = (256, 128, 64)
MAX_CLUSTER_NODES = 8
# Average bits per weight of the quantized tensors in llama.cpp's mixes (a K-quant
# "_M" mix gives attn_v/ffn_down a larger type): approximate, hence "estimated".
QUANT_BITS = {"Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.7, "Q4_K_M": 4.85, "Q3_K_M": 3.9, "Q2_K": 3.2}
_FULL_PRECISION = {"F32", "F16", "BF16"}

Assess = Callable[[ModelSpec, PlanRequest, RunSettings], Assessment]
# Models a "smaller model" move may name, or a function giving them: the CLI's reads the
# bundled catalog, which only a model that does not fit as asked needs.
Catalog = Sequence[ModelSpec] | Callable[[], Sequence[ModelSpec]]


@dataclass(frozen=True)
class Candidate:
    """A move with the assessment behind it, so the planner can adopt it."""

    move: Move
    assessment: Assessment | None  # None for a remote model


def fitting_moves(
    spec: ModelSpec,
    machine: Machine,
    request: PlanRequest,
    current: Assessment,
    estimate: EstimateFn,
    catalog: Catalog = (),
) -> tuple[Candidate, ...]:
    """Every move that improves on ``current``, cheapest first; none when it is ideal."""
    if current.is_ideal:
        return ()

    def judge(model: ModelSpec, plan_request: PlanRequest, settings: RunSettings) -> Assessment:
        return assess(model, machine, plan_request, settings, estimate)

    if current.placement.settings.engine == VLLM_NAME:
        return _vllm_candidates(current, machine, request, judge)
    found = [
        _flash_attention(current, request, judge),
        _reduce_ctx(current, request, judge),
        _quantize_kv(current, request, judge),
        _reduce_batch(current, request, judge),
        _experts_on_cpu(current, machine, request, judge),
        _fewer_gpu_layers(current, request, judge),
        _smaller_quant(current, request, judge),
        _smaller_model(current, request, judge, catalog),
        _cluster(current, machine, request, estimate),
        _remote(),
    ]
    return tuple(candidate for candidate in found if candidate is not None)


def _vllm_candidates(
    current: Assessment, machine: Machine, request: PlanRequest, judge: Assess
) -> tuple[Candidate, ...]:
    """vLLM sizes a pool at start: its moves size the pool (``vllm_moves``); the model
    comes as a folder, so no smaller GGUF quant or llama.cpp cluster is offered."""

    def judge_settings(settings: RunSettings) -> Assessment:
        return judge(current.spec, request, settings)

    found = vllm_moves(current, machine, judge_settings)
    remote = _remote()
    return (*(_candidate(action, *move) for action, move in found), remote)


# --- settings of the same model ------------------------------------------------


def _flash_attention(current: Assessment, request: PlanRequest, judge: Assess) -> Candidate | None:
    """Flash attention never builds the ctx x ubatch score matrix: same output, less memory."""
    if current.placement.settings.flash_attn:
        return None
    return _best_step(
        "flash_attn",
        current,
        request,
        judge,
        [(message_of("flash attention on"), {"flash_attn": True})],
    )


def _reduce_ctx(current: Assessment, request: PlanRequest, judge: Assess) -> Candidate | None:
    n_ctx = current.placement.estimate.n_ctx
    options = [
        (message_of("ctx {old} -> {new}", old=n_ctx, new=ctx), {"n_ctx": ctx})
        for ctx in CTX_LADDER
        if ctx < n_ctx
    ]
    return _best_step("reduce_ctx", current, request, judge, options)


def _quantize_kv(current: Assessment, request: PlanRequest, judge: Assess) -> Candidate | None:
    settings = current.placement.settings
    smaller = (
        KV_LADDER[KV_LADDER.index(settings.type_k) + 1 :]
        if settings.type_k in KV_LADDER
        else KV_LADDER
    )
    options = [
        (
            message_of(
                "KV cache {old} -> {new} (with flash attention)", old=settings.type_k, new=kv_type
            ),
            {"type_k": kv_type, "type_v": kv_type, "flash_attn": True},
        )
        for kv_type in smaller
    ]
    return _best_step("quantize_kv", current, request, judge, options)


def _reduce_batch(current: Assessment, request: PlanRequest, judge: Assess) -> Candidate | None:
    settings = current.placement.settings
    options = [
        (message_of("ubatch {old} -> {new}", old=settings.n_ubatch, new=size), {"n_ubatch": size})
        for size in UBATCH_LADDER
        if size < settings.n_ubatch
    ]
    return _best_step("reduce_batch", current, request, judge, options)


def _experts_on_cpu(
    current: Assessment, machine: Machine, request: PlanRequest, judge: Assess
) -> Candidate | None:
    """A MoE model on an engine that offloads whole layers only (llama-cpp-python, Ollama):
    what llama-server would do with every layer on the GPU and some experts on the CPU."""
    settings = current.placement.settings
    if (
        not current.spec.is_moe
        or engine_profile(settings.engine).tensor_overrides
        or request.n_gpu_layers is not None
        or current.verdict is not Verdict.PARTIAL_OFFLOAD
    ):
        return None
    server = dataclasses.replace(
        _asked(current, request), engine=LLAMA_SERVER_NAME, swa_full=None, logits_all=False
    )
    result = judge(current.spec, request, server)
    blocks = cpu_expert_blocks(result.spec, result.placement.settings)
    if not blocks or not improves(result, current):
        return None
    change = {"engine": LLAMA_SERVER_NAME, "n_cpu_moe": blocks}
    predicted, now = (
        f"{decode_tps(current.spec, machine, found.placement):.0f}" for found in (result, current)
    )
    label = message_of(
        "{engine} -> llama-server (decode {predicted} tok/s predicted, {now} now)",
        engine=settings.engine, predicted=predicted, now=now,
    )  # fmt: skip
    return _candidate("experts_on_cpu", label, change, result)


def _fewer_gpu_layers(current: Assessment, request: PlanRequest, judge: Assess) -> Candidate | None:
    """Only meaningful when the user forced a layer count: let the search pick it."""
    if request.n_gpu_layers is None:
        return None
    automatic = dataclasses.replace(request, n_gpu_layers=None)
    result = judge(current.spec, automatic, _asked(current, request))
    layers = result.placement.n_gpu_layers
    if layers >= request.n_gpu_layers or not improves(result, current):
        return None
    label = message_of("gpu layers {old} -> {new}", old=request.n_gpu_layers, new=layers)
    return _candidate("fewer_gpu_layers", label, {"n_gpu_layers": layers}, result)


def _best_step(
    action: str,
    current: Assessment,
    request: PlanRequest,
    judge: Assess,
    options: Iterable[tuple[str, dict[str, Any]]],
) -> Candidate | None:
    """The first option (least drastic) that is ideal, else the best one that improves."""
    best: tuple[str, dict[str, Any], Assessment] | None = None
    for label, change in options:
        result = judge(
            current.spec, request, dataclasses.replace(_asked(current, request), **change)
        )
        if best is None or result.rank() < best[2].rank():
            best = (label, change, result)
        if result.is_ideal:
            break
    if best is None or not improves(best[2], current):
        return None
    return _candidate(action, *best)


def improves(result: Assessment, current: Assessment) -> bool:
    """A better verdict, a lower risk or more layers on the GPU; fewer bytes alone is no help."""
    return result.fits and result.rank() < current.rank()


def _asked(current: Assessment, request: PlanRequest) -> RunSettings:
    """The assessed settings without the placement's own choices (layers, split, the
    experts it kept on the CPU unless the request asked for them)."""
    return dataclasses.replace(
        current.placement.settings, n_gpu_layers=0, tensor_split=(),
        n_cpu_moe=request.settings.n_cpu_moe,
    )  # fmt: skip


# --- a different file or model ------------------------------------------------------


def _smaller_quant(current: Assessment, request: PlanRequest, judge: Assess) -> Candidate | None:
    spec = current.spec
    bits = quantized_bits_per_weight(spec)
    if bits is None or not spec.tensors:
        return None
    options = [(name, target) for name, target in QUANT_BITS.items() if target < bits - 0.3]
    best: Candidate | None = None
    for name, target in options:
        smaller = requantized(spec, name, target / bits)
        result = judge(smaller, request, _asked(current, request))
        label = message_of(
            "quant {old} -> {new} (estimated at {bits} bits per weight)",
            old=spec.quantization or "?", new=name, bits=target,
        )  # fmt: skip
        candidate = _candidate(
            "smaller_quant", label, {"model": smaller.name, "quantization": name}, result
        )
        if best is None or result.rank() < _rank(best):
            best = candidate
        if result.is_ideal:
            break
    return best if best is not None and improves(_assessed(best), current) else None


def quantized_bits_per_weight(spec: ModelSpec) -> float | None:
    """Average bits per weight of the block weights, None for a model of another scheme."""
    if spec.quantization not in QUANT_BITS and spec.quantization not in _FULL_PRECISION:
        return None
    weights = [tensor for tensor in spec.tensors if _is_block_weight(tensor)]
    params = sum(tensor.n_params for tensor in weights)
    return 8 * sum(tensor.n_bytes for tensor in weights) / params if params else None


def _is_block_weight(tensor: TensorInfo) -> bool:
    """The tensors a requantization shrinks: block matrices, not the F32 norms and routers."""
    return tensor.layer is not None and tensor.type_name != "F32"


def requantized(spec: ModelSpec, quantization: str, scale: float) -> ModelSpec:
    """``spec`` with its quantized block tensors scaled to another quant's size (an estimate)."""
    tensors = [_scaled(tensor, scale) for tensor in spec.tensors]
    summary = summarize_tensors(tensors, spec.n_layers, spec.n_experts, spec.n_experts_used)
    return dataclasses.replace(
        spec,
        name=f"{spec.name} {quantization}",
        quantization=quantization,
        tensors=tuple(tensors),
        layer_bytes=summary.layer_bytes,
        nonrepeating_bytes=summary.nonrepeating_bytes,
        tensor_bytes=summary.tensor_bytes,
        file_bytes=summary.tensor_bytes,
        type_bytes=summary.type_bytes,
    )


def _scaled(tensor: TensorInfo, scale: float) -> TensorInfo:
    if not _is_block_weight(tensor):
        return tensor
    return dataclasses.replace(tensor, n_bytes=round(tensor.n_bytes * scale))


def _smaller_model(
    current: Assessment, request: PlanRequest, judge: Assess, catalog: Catalog
) -> Candidate | None:
    best: Candidate | None = None
    models = catalog() if callable(catalog) else catalog
    for smaller in smaller_relatives(current.spec, models):
        result = judge(smaller, request, _asked(current, request))
        label = message_of(
            "a smaller model of the {relation}: {model}",
            relation=_relation(current.spec, smaller), model=smaller.name,
        )  # fmt: skip
        candidate = _candidate("smaller_model", label, {"model": smaller.name}, result)
        if result.fits and (best is None or result.rank() < _rank(best)):
            best = candidate
        if result.is_ideal:
            break
    return best if best is not None and improves(_assessed(best), current) else None


def smaller_relatives(spec: ModelSpec, catalog: Sequence[ModelSpec]) -> list[ModelSpec]:
    """Smaller catalog models of the same family (``deepseek-r1:32b`` -> ``:8b``), largest first.

    The family is the catalog name before the tag; a file whose name does not
    contain any family name falls back to models of the same architecture.
    """
    smaller = [model for model in catalog if model.params_total < spec.params_total * 9 // 10]
    family = [model for model in smaller if _family(model) in _normalized(spec.name)]
    relatives = family or [model for model in smaller if model.architecture == spec.architecture]
    return sorted(relatives, key=lambda model: -model.params_total)


def _relation(spec: ModelSpec, relative: ModelSpec) -> Message:
    if _family(relative) in _normalized(spec.name):
        return message_of("same family")
    return message_of("same architecture ({architecture})", architecture=relative.architecture)


def _family(model: ModelSpec) -> str:
    return _normalized(model.name.split(":")[0])


def _normalized(name: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", name.lower())


def _cluster(
    current: Assessment, machine: Machine, request: PlanRequest, estimate: EstimateFn
) -> Candidate | None:
    """How many machines like this one would hold the model, split by layers."""
    if current.fits:
        return None
    settings = _asked(current, request)
    for count in range(2, MAX_CLUSTER_NODES + 1):
        shares = plan_nodes(current.spec, [machine] * count, request, settings, estimate)
        if all(share.fits for share in shares):
            ranges = ", ".join(f"{share.first_layer}-{share.last_layer}" for share in shares)
            worst = min(shares, key=lambda share: share.free_after_bytes)
            move = Move(
                action="cluster",
                description=message_of(
                    "split across {count} machines like this one (layers {ranges}; "
                    "{size} on the fullest node, {free} free on it)",
                    count=count,
                    ranges=ranges,
                    size=format_bytes(worst.total_bytes),
                    free=format_bytes(worst.free_after_bytes),
                ),
                resulting_verdict=Verdict.NEEDS_CLUSTER,
                resulting_risk=worst.risk,
                settings_change={"nodes": count},
                total_bytes=sum(share.total_bytes for share in shares),
                free_after_bytes=worst.free_after_bytes,
            )
            return Candidate(move, None)
    return None


def _remote() -> Candidate:
    move = Move(
        action="remote",
        description=message_of(
            "send these requests to a remote OpenAI-compatible model instead "
            "(a fallback route in yoyu.toml); it uses no local memory"
        ),
        resulting_verdict=Verdict.FITS,
        resulting_risk=Risk.SAFE,
        settings_change={"route": "remote"},
    )
    return Candidate(move, None)


# --- shared -----------------------------------------------------------------


def _candidate(action: str, label: str, change: dict[str, Any], result: Assessment) -> Candidate:
    move = Move(
        action=action,
        description=message_of("{change}: {outcome}", change=label, outcome=outcome(result)),
        resulting_verdict=result.verdict,
        resulting_risk=result.risk,
        settings_change=change,
        total_bytes=result.placement.estimate.total_bytes,
        free_after_bytes=result.free_after_bytes,
        n_gpu_layers=result.placement.n_gpu_layers,
    )
    return Candidate(move, result)


def _rank(candidate: Candidate) -> tuple[int, int, int]:
    return _assessed(candidate).rank()


def _assessed(candidate: Candidate) -> Assessment:
    assert candidate.assessment is not None, "only remote and cluster moves lack an assessment"
    return candidate.assessment


def outcome(result: Assessment) -> Message:
    """What an assessment means, in one phrase with its figures."""
    return message_of(
        "{where}, {size} in all, {free} of system memory left ({risk})",
        where=_where(result), size=format_bytes(result.placement.estimate.total_bytes),
        free=format_bytes(result.free_after_bytes), risk=Message(result.risk.value),
    )  # fmt: skip


def _where(result: Assessment) -> Message:
    total = n_layers_total(result.spec)
    if result.verdict is Verdict.FITS:
        if result.budget.gpus:
            return message_of("all {total} layers on the GPU", total=total)
        return message_of("fits on the CPU")
    if result.verdict is Verdict.CPU_ONLY:
        return message_of("runs on the CPU only")
    if result.verdict is not Verdict.PARTIAL_OFFLOAD:
        return message_of("still does not fit")
    partial = message_of(
        "{layers}/{total} layers on the GPU", layers=result.placement.n_gpu_layers, total=total
    )
    experts = cpu_expert_blocks(result.spec, result.placement.settings)
    if experts:
        return message_of("{partial}, {experts}", partial=partial, experts=experts_phrase(experts))
    return partial
