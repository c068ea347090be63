"""What runs on a machine: every catalog model in every quant, placed, sized and ranked.

``rank_catalog`` is a pure function of (catalog entries, machine, request): the
CLI (``yoyu fit``), the MCP ``fit_models`` tool and the dashboard's "What fits
here" call it with their own machine and filters and ``fit_request``'s settings.
For each model and quant it answers the questions ``yoyu plan`` answers for one,
with the same estimator and placement search:

1. the best placement at the base context (``--min-ctx``, else 4096, capped at the
   model's own): all on the GPU, the MoE experts of some blocks on the CPU, some
   layers on the CPU, or CPU only (``placement.place``);
2. the largest context that keeps that placement and the headroom: the GPUs keep
   their margin and system memory stays "safe" (binary search over powers of two
   up to the model's trained context, one estimate each since the layers are fixed);
3. predicted decode and prefill speed at the base context (``estimate.speed``).

A model whose file alone exceeds everything the machine may use is refused from
its size, without an estimate, and fine-tunes that share their base's tensor table
(``catalog.table_key``) share its row but for their names: that keeps the whole
catalog (about 300 model and quant pairs, some 220 tables) well under a second.

Ranking, best first: models that run before those that do not; among those that
run, the ones that decode at ``USABLE_DECODE_TPS`` or more with a safe risk; then
the larger model (parameters), the finer quant (bytes), the faster decode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.speed import SpeedPrediction, predict_speed
from yoyu.estimate.types import MemoryEstimate, RunSettings
from yoyu.machine.types import Machine
from yoyu.models.catalog import CatalogEntry, compact_spec, spec_name, table_key
from yoyu.models.spec import ModelSpec
from yoyu.plan.assess import Assessment, assess
from yoyu.plan.budget import MachineBudget, machine_budget
from yoyu.plan.placement import EstimateFn, cpu_expert_blocks, n_layers_total
from yoyu.plan.types import PlanRequest, Risk, Verdict
from yoyu.units import format_bytes

FIT_ENGINE = "llama-server"  # places tensors, so a MoE's experts may stay on the CPU
BASE_CTX = 4096  # the context every model is placed at, unless --min-ctx asks for more
MIN_LADDER_CTX = 2048
USABLE_DECODE_TPS = 10.0  # below this a chat reads slower than a person does
SpeedFn = Callable[[ModelSpec, MemoryEstimate, Machine], SpeedPrediction]
SpecFn = Callable[[CatalogEntry, str], ModelSpec]
KeyFn = Callable[[CatalogEntry, str], Hashable]


@dataclass(frozen=True)
class FitFilters:
    """Which catalog models and quants to consider."""

    family: str | None = None  # the Ollama family name (``qwen3``), case-insensitive
    use: str | None = None  # chat, code, reasoning, embedding, vision
    min_ctx: int = 0  # a model must hold at least this many tokens
    max_size_bytes: int | None = None  # the download (the derived file size)
    all_quants: bool = True  # every published quant; False: the untagged name's only

    def admits(self, entry: CatalogEntry) -> bool:
        if self.family and entry.family.lower() != self.family.lower():
            return False
        if self.use and self.use not in entry.uses:
            return False
        return entry.architecture.context_length >= self.min_ctx


@dataclass(frozen=True)
class FitRow:
    """One model in one quant on the machine: where it goes, how much context, how fast."""

    model: str  # the name to pass to ``yoyu plan`` / ``yoyu run``
    family: str
    uses: tuple[str, ...]
    quant: str
    params_total: int
    params_active: int
    file_bytes: int
    verdict: Verdict
    risk: Risk
    placement: str  # in words: "all on the GPU", "MoE experts of 12 blocks on the CPU", ...
    n_gpu_layers: int
    n_layers_total: int
    n_cpu_moe: int
    ctx: int  # the largest context that keeps the placement and the headroom (0: none)
    total_bytes: int  # every device's need at ``ctx``
    gpu_bytes: int
    decode_tps: float
    prefill_tps: float
    reason: str

    @property
    def runs(self) -> bool:
        return self.verdict is not Verdict.DOES_NOT_FIT

    @property
    def usable(self) -> bool:
        return self.runs and self.risk is Risk.SAFE and self.decode_tps >= USABLE_DECODE_TPS

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(verdict=self.verdict.value, risk=self.risk.value, uses=list(self.uses))
        return {**data, "runs": self.runs, "usable": self.usable}


@dataclass(frozen=True)
class FitReport:
    """The ranked rows, and what was asked."""

    machine: str
    base_ctx: int
    filters: FitFilters
    rows: tuple[FitRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "base_ctx": self.base_ctx,
            "filters": dataclasses.asdict(self.filters),
            "runs": sum(row.runs for row in self.rows),
            "models": [row.to_dict() for row in self.rows],
        }


def fit_request(
    ram_free_bytes: int | None = None, gpu_free_bytes: int | None = None
) -> PlanRequest:
    """The request every front door ranks with: ``FIT_ENGINE``'s settings, and the free
    memory the user gave (None: what the machine reports), so the CLI, the MCP tool and
    the dashboard rank alike."""
    return PlanRequest(
        settings=RunSettings(engine=FIT_ENGINE),
        ram_free_bytes=ram_free_bytes,
        gpu_free_bytes=gpu_free_bytes,
    )


def rank_catalog(
    entries: Sequence[CatalogEntry],
    machine: Machine,
    request: PlanRequest,
    filters: FitFilters = FitFilters(),
    *,
    estimate: EstimateFn = estimate_memory,
    speed: SpeedFn = predict_speed,
    spec_of: SpecFn = compact_spec,
    key_of: KeyFn = table_key,
) -> FitReport:
    """Every admitted (model, quant) on ``machine``, ranked best first.

    ``key_of`` names what decides ``spec_of``'s spec besides the model's name: pairs with
    the same key (fine-tunes of one base, in one quant) are placed, sized and timed once,
    and share everything but their names."""
    budget = machine_budget(machine, request)
    rows = []
    fitted: dict[Hashable, FitRow] = {}  # by what decides the spec: fine-tunes share a row
    for entry in entries:
        if not filters.admits(entry):
            continue
        for quant in entry.quants if filters.all_quants else (entry.default_quant,):
            spec = spec_of(entry, quant)
            if filters.max_size_bytes is not None and spec.file_bytes > filters.max_size_bytes:
                continue
            key = key_of(entry, quant)
            shared = fitted.get(key)
            if shared is None:
                row = fitted[key] = _fit_one(
                    entry, quant, spec, machine, request, budget, filters, estimate, speed
                )
            else:
                row = dataclasses.replace(shared, **_identity(entry, quant, spec))
            rows.append(row)
    rows.sort(key=_rank_key)
    return FitReport(machine.name, BASE_CTX, filters, tuple(rows))


def _rank_key(row: FitRow) -> tuple[bool, bool, int, int, float]:
    return (not row.runs, not row.usable, -row.params_total, -row.file_bytes, -row.decode_tps)


def _fit_one(
    entry: CatalogEntry,
    quant: str,
    spec: ModelSpec,
    machine: Machine,
    request: PlanRequest,
    budget: MachineBudget,
    filters: FitFilters,
    estimate: EstimateFn,
    speed: SpeedFn,
) -> FitRow:
    base = base_context(spec, filters.min_ctx)
    room = _room_bytes(budget)
    if spec.file_bytes > room:
        why = (
            f"the file alone is {format_bytes(spec.file_bytes)}; "
            f"the machine may use {format_bytes(room)}"
        )
        return _refused(entry, quant, spec, why)
    asked = assess(spec, machine, request, _with_ctx(request, base).settings, estimate)
    if not asked.fits:
        failure = asked.placement.failures[0].message if asked.placement.failures else ""
        return _refused(entry, quant, spec, failure or "no placement fits")
    widest = _widest_context(spec, machine, request, asked, estimate)
    predicted = speed(spec, asked.placement.estimate, machine)
    estimate_at = widest.placement.estimate
    return FitRow(
        **_identity(entry, quant, spec),
        verdict=asked.verdict,
        risk=widest.risk,
        placement=placement_words(asked),
        n_gpu_layers=asked.placement.n_gpu_layers,
        n_layers_total=n_layers_total(spec),
        n_cpu_moe=cpu_expert_blocks(spec, asked.placement.settings),
        ctx=estimate_at.n_ctx,
        total_bytes=sum(device.total_bytes for device in estimate_at.devices),
        gpu_bytes=sum(device.total_bytes for device in estimate_at.devices if device.kind == "gpu"),
        decode_tps=predicted.decode_tps,
        prefill_tps=predicted.prefill_tps,
        reason=widest.risk_reason,
    )


def base_context(spec: ModelSpec, min_ctx: int) -> int:
    """The context a model is placed at: ``min_ctx`` or ``BASE_CTX``, within its own."""
    return min(max(min_ctx, BASE_CTX), spec.context_length or BASE_CTX)


def context_ladder(base: int, trained: int) -> list[int]:
    """Contexts tried above the base: powers of two, then the model's own."""
    ladder = [base]
    size = MIN_LADDER_CTX
    while size < trained:
        if size > base:
            ladder.append(size)
        size *= 2
    if trained > base:
        ladder.append(trained)
    return ladder


def _widest_context(
    spec: ModelSpec,
    machine: Machine,
    request: PlanRequest,
    asked: Assessment,
    estimate: EstimateFn,
) -> Assessment:
    """The largest context of the ladder at which the same placement keeps the headroom
    (binary search: memory grows with the context); the base one when none does."""
    fixed = dataclasses.replace(
        request,
        n_gpu_layers=asked.placement.n_gpu_layers,
        settings=dataclasses.replace(
            request.settings, n_cpu_moe=asked.placement.settings.n_cpu_moe
        ),
    )
    ladder = context_ladder(asked.placement.estimate.n_ctx, spec.context_length)
    best, low, high = asked, 0, len(ladder)  # ladder[low] keeps the headroom, ladder[high] not
    if not _keeps_headroom(asked):
        return asked
    while high - low > 1:
        middle = (low + high) // 2
        candidate = assess(
            spec, machine, fixed, _with_ctx(fixed, ladder[middle]).settings, estimate
        )
        if _keeps_headroom(candidate):
            best, low = candidate, middle
        else:
            high = middle
    return best


def _keeps_headroom(assessment: Assessment) -> bool:
    return assessment.fits and assessment.risk is Risk.SAFE


def _with_ctx(request: PlanRequest, n_ctx: int) -> PlanRequest:
    return dataclasses.replace(request, settings=dataclasses.replace(request.settings, n_ctx=n_ctx))


def _room_bytes(budget: MachineBudget) -> int:
    """Everything a placement may use: system memory, plus discrete GPUs' own."""
    gpus = 0 if budget.unified_memory else sum(gpu.limit_bytes for gpu in budget.gpus)
    return budget.system.limit_bytes + gpus


def placement_words(assessment: Assessment) -> str:
    """The placement as a user reads it."""
    spec, placement = assessment.spec, assessment.placement
    experts = cpu_expert_blocks(spec, placement.settings)
    if assessment.verdict is Verdict.CPU_ONLY:
        return "CPU only"
    if experts:
        return f"MoE experts of {experts}/{spec.n_layers} blocks on the CPU"
    total = n_layers_total(spec)
    if placement.n_gpu_layers >= total:
        return "all on the GPU"
    return f"{placement.n_gpu_layers}/{total} layers on the GPU"


def _identity(entry: CatalogEntry, quant: str, spec: ModelSpec) -> dict[str, Any]:
    """The fields of a row that say which model it is, whatever it does on the machine."""
    return {
        "model": spec_name(entry, quant),
        "family": entry.family,
        "uses": entry.uses,
        "quant": quant,
        "params_total": spec.params_total,
        "params_active": spec.params_active,
        "file_bytes": spec.file_bytes,
    }


def _refused(entry: CatalogEntry, quant: str, spec: ModelSpec, reason: str) -> FitRow:
    return FitRow(
        **_identity(entry, quant, spec),
        verdict=Verdict.DOES_NOT_FIT,
        risk=Risk.ABORT,
        placement="does not fit",
        n_gpu_layers=0,
        n_layers_total=n_layers_total(spec),
        n_cpu_moe=0,
        ctx=0,
        total_bytes=0,
        gpu_bytes=0,
        decode_tps=0.0,
        prefill_tps=0.0,
        reason=reason,
    )
