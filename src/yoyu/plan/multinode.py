"""Splitting one model's layers across several machines (llama.cpp RPC, exo).

Each node gets a contiguous range of blocks weighted by the memory it may
use, by llama.cpp's layer-split rule: block ``i`` goes to the first node whose
cumulative share exceeds ``i / n_layers``, so two equal nodes split a 61-layer
model into 0-30 and 31-60. The order is llama.cpp RPC's: the workers' devices
come first in ``--rpc`` order, the head's own device last ("add RPC servers
at the front of the list", src/llama.cpp), so the head holds the last blocks,
the output layer, and (on its CPU) the token embeddings. Each node's memory is
the estimator's figure for its own slice (its blocks, their KV cache, its
compute buffers), not a share of the whole.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from yoyu.estimate.types import RunSettings
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec, TensorInfo, summarize_tensors
from yoyu.plan.budget import machine_budget
from yoyu.plan.fit import system_free_after
from yoyu.plan.placement import EstimateFn, place
from yoyu.plan.types import NodeShare, PlanRequest
from yoyu.plan.verdict import classify_risk

_BLOCK_INDEX = re.compile(r"(^|\.)(blk|layers|h)\.(\d+)\.")


def split_layers(n_layers: int, weights: Sequence[int]) -> list[tuple[int, int] | None]:
    """(first, last) block of each node, or None for a node that gets no block."""
    total = sum(weights)
    if total <= 0:
        weights, total = [1] * len(weights), len(weights)
    cumulative, running = [], 0
    for weight in weights:
        running += max(0, weight)
        cumulative.append(running)
    owner = [_first_above(cumulative, layer * total, n_layers) for layer in range(n_layers)]
    return [_range_of(owner, node) for node in range(len(weights))]


def _first_above(cumulative: list[int], scaled_layer: int, n_layers: int) -> int:
    """Index of the first node whose cumulative share exceeds layer / n_layers (exact ints)."""
    return next(i for i, bound in enumerate(cumulative) if bound * n_layers > scaled_layer)


def _range_of(owner: list[int], node: int) -> tuple[int, int] | None:
    layers = [layer for layer, holder in enumerate(owner) if holder == node]
    return (layers[0], layers[-1]) if layers else None


def node_weight(machine: Machine, request: PlanRequest) -> int:
    """What a node may hold for the model: its GPUs' limits, else its system memory's."""
    budget = machine_budget(machine, request)
    if budget.gpus and not budget.unified_memory:
        return sum(max(0, gpu.limit_bytes) for gpu in budget.gpus)
    room = [budget.system.limit_bytes, *(gpu.limit_bytes for gpu in budget.gpus)]
    return max(0, min(room))


def plan_nodes(
    spec: ModelSpec,
    nodes: Sequence[Machine],
    request: PlanRequest,
    settings: RunSettings,
    estimate: EstimateFn,
) -> tuple[NodeShare, ...]:
    """Split ``spec`` over ``nodes`` (``nodes[0]`` is the head) and place each slice."""
    names = node_names(nodes)
    order = [*range(1, len(nodes)), 0]  # workers first, the head last (llama.cpp RPC)
    weights = [node_weight(nodes[index], request) for index in order]
    ranges = _head_keeps_a_layer(split_layers(spec.n_layers, weights))
    shares = []
    for index, layer_range in zip(order, ranges, strict=True):
        if layer_range is None:
            continue
        first, last = layer_range
        share_spec = node_spec(spec, first, last, holds_nonrepeating=index == 0)
        role = "head" if index == 0 else "worker"
        shares.append(
            _share(
                names[index],
                role,
                nodes[index],
                share_spec,
                (first, last),
                request,
                settings,
                estimate,
            )
        )
    return tuple(shares)


def _head_keeps_a_layer(ranges: list[tuple[int, int] | None]) -> list[tuple[int, int] | None]:
    """The head runs the output layer, so it keeps at least the last block."""
    if ranges[-1] is not None or len(ranges) < 2:
        return ranges
    donor = max(i for i, layer_range in enumerate(ranges) if layer_range is not None)
    first, last = ranges[donor]  # type: ignore[misc]
    ranges = list(ranges)
    ranges[donor] = (first, last - 1) if last > first else None
    ranges[-1] = (last, last)
    return ranges


def _share(
    name: str,
    role: str,
    node: Machine,
    share_spec: ModelSpec,
    layer_range: tuple[int, int],
    request: PlanRequest,
    settings: RunSettings,
    estimate: EstimateFn,
) -> NodeShare:
    budget = machine_budget(node, request)
    placement = place(share_spec, node, settings, budget, estimate)
    free_after = system_free_after(placement.estimate, budget)
    return NodeShare(
        name=name,
        machine=node.name,
        role=role,
        first_layer=layer_range[0],
        last_layer=layer_range[1],
        n_gpu_layers=placement.n_gpu_layers,
        total_bytes=placement.estimate.total_bytes,
        usable_bytes=budget.system.usable_bytes,
        free_after_bytes=free_after,
        risk=classify_risk(free_after, request.thresholds),
        estimate=placement.estimate,
        failures=placement.failures,
    )


def node_names(nodes: Sequence[Machine]) -> list[str]:
    """Machine names, numbered where the same description appears more than once."""
    counts = {name: [node.name for node in nodes].count(name) for name in {n.name for n in nodes}}
    seen: dict[str, int] = {}
    names = []
    for node in nodes:
        seen[node.name] = seen.get(node.name, 0) + 1
        names.append(f"{node.name}#{seen[node.name]}" if counts[node.name] > 1 else node.name)
    return names


def node_spec(spec: ModelSpec, first: int, last: int, holds_nonrepeating: bool) -> ModelSpec:
    """The slice of ``spec`` one node holds: blocks ``first..last`` renumbered from 0.

    The head (``holds_nonrepeating``) also keeps the token embeddings, the
    output norm and the output layer.
    """
    if not spec.tensors:
        return _sliced_without_table(spec, first, last, holds_nonrepeating)
    n_layers = last - first + 1
    kept = [
        _renumbered(tensor, first)
        for tensor in spec.tensors
        if (first <= tensor.layer <= last if tensor.layer is not None else holds_nonrepeating)
    ]
    summary = summarize_tensors(kept, n_layers, spec.n_experts, spec.n_experts_used)
    return dataclasses.replace(
        spec,
        n_layers=n_layers,
        layer_bytes=summary.layer_bytes,
        nonrepeating_bytes=summary.nonrepeating_bytes,
        tensor_bytes=summary.tensor_bytes,
        file_bytes=summary.tensor_bytes,
        params_total=summary.params_total,
        params_active=summary.params_active,
        type_bytes=summary.type_bytes,
        n_head_kv_layers=spec.n_head_kv_layers[first : last + 1],
        swa_layers=_swa_slice(spec, first, last),
        tensors=tuple(kept),
    )


def _sliced_without_table(
    spec: ModelSpec, first: int, last: int, holds_embeddings: bool
) -> ModelSpec:
    """Without a tensor table, the first node takes every non-repeating byte."""
    n_layers = last - first + 1
    layer_bytes = spec.layer_bytes[first : last + 1]
    nonrepeating = spec.nonrepeating_bytes if holds_embeddings else 0
    return dataclasses.replace(
        spec,
        n_layers=n_layers,
        layer_bytes=layer_bytes,
        nonrepeating_bytes=nonrepeating,
        tensor_bytes=sum(layer_bytes) + nonrepeating,
        file_bytes=sum(layer_bytes) + nonrepeating,
        params_total=spec.params_total * n_layers // max(1, spec.n_layers),
        params_active=spec.params_active * n_layers // max(1, spec.n_layers),
        n_head_kv_layers=spec.n_head_kv_layers[first : last + 1],
        swa_layers=_swa_slice(spec, first, last),
    )


def _swa_slice(spec: ModelSpec, first: int, last: int) -> tuple[int, ...]:
    return tuple(layer - first for layer in spec.swa_layers if first <= layer <= last)


def _renumbered(tensor: TensorInfo, first: int) -> TensorInfo:
    """Block ``first`` becomes block 0, in the index and in the name the estimator may read."""
    if tensor.layer is None or first == 0:
        return tensor
    new_layer = tensor.layer - first
    name = _BLOCK_INDEX.sub(
        lambda m: f"{m.group(1)}{m.group(2)}.{new_layer}.", tensor.name, count=1
    )
    return dataclasses.replace(tensor, name=name, layer=new_layer)
