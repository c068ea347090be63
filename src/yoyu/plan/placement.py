"""Where the layers go on one machine: full GPU, partial offload or CPU only.

The GPU layer count is searched over the estimator, not guessed from file
size: each candidate count is estimated with the real settings and checked
against the budget, and the largest count whose GPUs keep their margin wins
(llama.cpp's ``--fit`` does the same with dry-run loads). GPU memory grows
with every offloaded layer, so a binary search needs about log2(layers)
estimates. Several GPUs share the offloaded layers in proportion to what each
may hold, as llama.cpp's default split does.

A mixture-of-experts model has a better partial placement than fewer layers:
every layer on the GPU with the routed experts of the first N blocks on the
CPU (llama-server's ``--n-cpu-moe N``; llama.cpp's own ``--fit`` tries it
before it drops layers). A token reads only the experts it is routed to, so
the CPU's share of each token is small while attention and the shared parts
stay on the GPU. When the engine can place tensors (llama-server) and the
settings leave the choice open, both searches run and the placement with the
faster predicted decode wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from yoyu.estimate.engine import engine_profile
from yoyu.estimate.speed import predict_speed
from yoyu.estimate.types import MemoryEstimate, RunSettings
from yoyu.estimate.weights import cpu_expert_blocks as cpu_expert_blocks  # re-exported to plan
from yoyu.i18n import Message, message_of
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.budget import MachineBudget, split_by_free_memory
from yoyu.plan.fit import fit_failures, gpu_pairs
from yoyu.plan.types import Reason

EstimateFn = Callable[[ModelSpec, Machine, RunSettings], MemoryEstimate]


@dataclass(frozen=True)
class Placement:
    """One evaluated layer count: its settings, its estimate, and why it does not fit (if so).

    ``limit_reasons`` say why one more layer would not fit on the GPU, so a
    partial offload explains where it stopped.
    """

    settings: RunSettings
    estimate: MemoryEstimate
    n_gpu_layers: int
    failures: tuple[Reason, ...]
    limit_reasons: tuple[Reason, ...] = ()

    @property
    def fits(self) -> bool:
        return not self.failures


def n_layers_total(spec: ModelSpec) -> int:
    """Blocks plus the output layer: the ``n_gpu_layers`` that puts everything on the GPU."""
    return spec.n_layers + 1


def place(
    spec: ModelSpec,
    machine: Machine,
    settings: RunSettings,
    budget: MachineBudget,
    estimate: EstimateFn,
    forced_gpu_layers: int | None = None,
) -> Placement:
    """The best placement for ``settings``: forced layer count, CPU only, or searched."""
    settings = dataclasses.replace(settings, tensor_split=split_by_free_memory(budget.gpus))
    if not budget.gpus:
        return evaluate(spec, machine, settings, budget, estimate, 0)
    if forced_gpu_layers is not None:
        layers = min(forced_gpu_layers, n_layers_total(spec))
        return evaluate(spec, machine, settings, budget, estimate, layers)
    by_layers = search_gpu_layers(spec, machine, settings, budget, estimate)
    if by_layers.n_gpu_layers == n_layers_total(spec) or not may_move_experts(spec, settings):
        return by_layers
    by_experts = search_cpu_experts(spec, machine, settings, budget, estimate)
    if by_experts is None or decode_tps(spec, machine, by_experts) <= decode_tps(
        spec, machine, by_layers
    ):
        return by_layers
    return by_experts


def may_move_experts(spec: ModelSpec, settings: RunSettings) -> bool:
    """A MoE model, an engine that places tensors, and no expert count chosen already."""
    places_tensors = engine_profile(settings.engine).tensor_overrides
    return spec.is_moe and places_tensors and not settings.n_cpu_moe


def search_cpu_experts(
    spec: ModelSpec,
    machine: Machine,
    settings: RunSettings,
    budget: MachineBudget,
    estimate: EstimateFn,
) -> Placement | None:
    """Every layer on the GPU with the fewest blocks' experts on the CPU that lets the GPUs
    keep their margin (binary search: each block's experts moved frees GPU memory);
    None when even every block's experts on the CPU is too much for them."""
    total = n_layers_total(spec)

    def with_experts_on_cpu(blocks: int) -> Placement:
        moved = dataclasses.replace(settings, n_cpu_moe=blocks)
        return evaluate(spec, machine, moved, budget, estimate, total)

    low, high = 0, spec.n_layers  # invariant: `low` blocks overfill a GPU, `high` do not
    best = with_experts_on_cpu(high)
    if _gpu_failures(best, budget):
        return None
    over: Placement | None = None
    while high - low > 1:
        middle = (low + high) // 2
        candidate = with_experts_on_cpu(middle)
        if _gpu_failures(candidate, budget):
            low, over = middle, candidate
        else:
            high, best = middle, candidate
    over = over or with_experts_on_cpu(low)
    return dataclasses.replace(best, limit_reasons=_gpu_failures(over, budget))


def experts_phrase(blocks: int) -> Message:
    """The placement's expert offload in words, with the flag that asks for it."""
    if blocks == 1:
        return message_of("MoE experts of the first block on the CPU (--n-cpu-moe 1)")
    return message_of("MoE experts of the first {n} blocks on the CPU (--n-cpu-moe {n})", n=blocks)


def decode_tps(spec: ModelSpec, machine: Machine, placement: Placement) -> float:
    return predict_speed(spec, placement.estimate, machine).decode_tps


def evaluate(
    spec: ModelSpec,
    machine: Machine,
    settings: RunSettings,
    budget: MachineBudget,
    estimate: EstimateFn,
    n_gpu_layers: int,
) -> Placement:
    """Estimate one layer count and check it against every device's budget."""
    layered = dataclasses.replace(settings, n_gpu_layers=n_gpu_layers)
    memory = estimate(spec, machine, layered)
    # the estimate's settings: what it resolved (vLLM's pool in bytes) is what is launched
    return Placement(memory.settings, memory, n_gpu_layers, fit_failures(memory, budget))


def search_gpu_layers(
    spec: ModelSpec,
    machine: Machine,
    settings: RunSettings,
    budget: MachineBudget,
    estimate: EstimateFn,
) -> Placement:
    """Largest layer count whose GPUs stay under their limits (binary search)."""
    total = n_layers_total(spec)
    full = evaluate(spec, machine, settings, budget, estimate, total)
    if not _gpu_failures(full, budget):
        return full
    best: Placement | None = None
    over = full
    low, high = 0, total  # invariant: `high` overfills a GPU; `low` is the best count so far
    while high - low > 1:
        middle = (low + high) // 2
        candidate = evaluate(spec, machine, settings, budget, estimate, middle)
        if _gpu_failures(candidate, budget):
            high, over = middle, candidate
        else:
            low, best = middle, candidate
    if best is None:
        best = evaluate(spec, machine, settings, budget, estimate, 0)
    return dataclasses.replace(best, limit_reasons=_gpu_failures(over, budget))


def _gpu_failures(placement: Placement, budget: MachineBudget) -> tuple[Reason, ...]:
    gpu_names = {device.name for device, _ in gpu_pairs(placement.estimate, budget)}
    return tuple(reason for reason in placement.failures if reason.device in gpu_names)
