"""The four measuring phases of a migration; each returns a ``PhaseRecord``.

preflight  plan verdict, baseline available memory, largest consumers, disk, rollback target
fetch      the model is on disk and its files hold every tensor byte; an Ollama name
           not here yet is pulled through a reachable Ollama (OLLAMA_HOST) and its
           size checked against what Ollama then lists
smoke      a short prompt under the guard and the sampler; least available memory seen
soak       a ~100-line code review, more turns, and the leak verdict

Nothing here changes ``yoyu.toml``; the verdict (``procedure``) does. A test
that loads the model does it through ``ModelRun`` in a ``with`` block, so the
engine is stopped however the phase ends.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

from yoyu.backends.llamacpp_server import find_engine
from yoyu.backends.ollama import OllamaBackend, PullProgress, ollama_name
from yoyu.backends.protocol import Backend, ChatMessage
from yoyu.errors import ModelNotFoundError, YoyuError
from yoyu.guard import Baseline, GuardPolicy, effective_available
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.models.ollama_store import parse_ollama_name
from yoyu.models.resolve import resolve_model
from yoyu.models.spec import ModelSpec
from yoyu.monitor.sampler import Sampler
from yoyu.monitor.store import RunStore
from yoyu.plan.planner import make_plan
from yoyu.plan.settings import for_engine
from yoyu.plan.types import PlanRequest, Verdict
from yoyu.rollout.aliases import Promotion
from yoyu.rollout.state import PhaseRecord
from yoyu.rollout.thresholds import (
    CAUTION,
    STOP,
    MigrateThresholds,
    baseline_check,
    smoke_decision,
)
from yoyu.runner import ModelRun, RunConfig, SoakPoint, run_soak
from yoyu.runner.guarding import RunGuard
from yoyu.units import format_bytes

TOP_CONSUMERS = 5
SMOKE_PROMPT = "Say hello in one short sentence."
SOAK_FOLLOW_UPS = (
    "Which function in that code would you test first, and why?",
    "Suggest one change that makes the error handling clearer.",
    "Summarize your review in two sentences.",
)


_T = TypeVar("_T")


@dataclass
class Context:
    """What every phase needs: the target, the thresholds, where to store and log."""

    target: str
    config: RunConfig
    thresholds: MigrateThresholds
    policy: GuardPolicy
    store: RunStore
    folder: Path
    backend_factory: Callable[[], Backend]
    machine: Machine | None = None
    on_engine: Callable[[dict[str, Any] | None], None] = lambda engine: None
    on_point: Callable[[SoakPoint], None] | None = None
    caution: bool = False  # the smoke test passed only with --accept-caution
    ollama_factory: Callable[[], OllamaBackend] = OllamaBackend  # base URL from OLLAMA_HOST
    on_pull: Callable[[PullProgress], None] | None = None

    def probe(self) -> Machine:
        if self.machine is None:
            self.machine = probe_machine()
        return self.machine


# -- preflight -------------------------------------------------------------------


def preflight(context: Context, promotion: Promotion) -> PhaseRecord:
    """Is it worth trying: the plan, the memory free now, the disk, a way back."""
    record = PhaseRecord("preflight")
    spec = resolve_model(context.target)
    budget = context.thresholds.budget_bytes
    verdict = _plan_verdict(spec, context)
    available = available_now(budget)
    enough, baseline_reason = baseline_check(available, context.thresholds.min_available_bytes)
    free_disk, needed = _disk(spec)
    record.measurements = {
        "model": spec.name,
        "plan_verdict": verdict,
        "available_bytes": available,
        "budget_bytes": budget,
        "top_consumers": top_consumers(),
        "disk_free_bytes": free_disk,
        "download_bytes": needed,
        "rollback_target": promotion.fallback,
        "alias_before": promotion.previous,
    }
    failures = []
    if verdict == Verdict.DOES_NOT_FIT.value:
        failures.append(f"the plan says {spec.name} does not fit on this machine")
    if not enough:
        failures.append(baseline_reason)
    if free_disk < needed:
        failures.append(
            f"{format_bytes(free_disk)} free on disk, the download needs {format_bytes(needed)}"
        )
    record.reasons = failures or [
        f"plan: {verdict}",
        baseline_reason,
        f"rollback target: {promotion.fallback or 'none (the alias is new; rollback removes it)'}",
    ]
    record.passed = not failures
    return record


def _plan_verdict(spec: ModelSpec, context: Context) -> str:
    """The plan on the real machine: a ``--budget`` pretends for the memory checks, but the
    plan's own reserve for the OS would refuse any model under a budget of a few GiB."""
    settings = for_engine(context.config.settings, find_engine().kind)
    request = PlanRequest(settings=settings, propose_moves=False)
    return make_plan(spec, context.probe(), request).verdict.value


def available_now(budget: int | None) -> int:
    """Available memory now; under a budget, no more than the budget."""
    available = int(psutil.virtual_memory().available)
    return available if budget is None else min(available, budget)


def top_consumers(count: int = TOP_CONSUMERS) -> list[dict[str, Any]]:
    """The processes holding the most resident memory, largest first."""
    rows = []
    for process in psutil.process_iter(["pid", "name", "memory_info"]):
        info = process.info
        if info.get("memory_info") is not None:
            rows.append(
                {"pid": info["pid"], "name": info["name"], "rss_bytes": info["memory_info"].rss}
            )
    return sorted(rows, key=lambda row: row["rss_bytes"], reverse=True)[:count]


def _disk(spec: ModelSpec) -> tuple[int, int]:
    """(free bytes where the model goes, bytes still to download)."""
    present = bool(spec.paths) and all(Path(path).is_file() for path in spec.paths)
    where = Path(spec.paths[0]).parent if present else Path.home()
    return shutil.disk_usage(where).free, 0 if present else spec.file_bytes


# -- fetch -----------------------------------------------------------------------


def fetch(context: Context) -> PhaseRecord:
    """The model is on disk, every file there, big enough for its tensor data."""
    record = PhaseRecord("fetch")
    try:
        spec = resolve_model(context.target)
    except ModelNotFoundError:
        pulled = pull_from_ollama(context)
        if pulled is None:
            raise
        return pulled
    if not spec.paths:
        pulled = pull_from_ollama(context)
        if pulled is not None:
            return pulled
        record.passed = False
        record.reasons = [
            f"{spec.name} is a catalog estimate, not on this machine; download its GGUF "
            "(or ollama pull it) and give the path or name"
        ]
        return record
    sizes = {path: Path(path).stat().st_size if Path(path).is_file() else 0 for path in spec.paths}
    total = sum(sizes.values())
    record.measurements = {
        "paths": list(spec.paths),
        "file_bytes": total,
        "tensor_bytes": spec.tensor_bytes,
    }
    missing = [path for path, size in sizes.items() if size == 0]
    if missing or total < spec.tensor_bytes:
        record.passed = False
        record.reasons = [
            f"{', '.join(missing) or spec.paths[0]}: {format_bytes(total)} on disk, the tensors "
            f"need {format_bytes(spec.tensor_bytes)}; download the model again"
        ]
        return record
    record.passed = True
    record.reasons = [f"{len(spec.paths)} file(s), {format_bytes(total)}, tensors complete"]
    return record


def pull_from_ollama(context: Context) -> PhaseRecord | None:
    """Pull the target, an Ollama name, through Ollama; ``None`` when it is no Ollama
    name or no Ollama answers (the caller's message stands). A pull Ollama refuses
    raises its BackendRequestError, which fails the phase with Ollama's reason."""
    if parse_ollama_name(context.target) is None:
        return None
    backend = context.ollama_factory()
    try:
        if not backend.health().ok:
            return None
        result = backend.pull(context.target, on_progress=context.on_pull)
        name = ollama_name(context.target)
        listed = next((m.size_bytes for m in backend.list_models() if m.id == name), None)
    finally:
        backend.close()
    record = PhaseRecord("fetch")
    record.measurements = {
        "model": name,
        "ollama": backend.base_url,
        "pulled_bytes": result.total_bytes,
        "listed_bytes": listed,
    }
    record.passed = listed == result.total_bytes
    shown = "nothing" if listed is None else format_bytes(listed)
    record.reasons = [
        f"pulled {name} through Ollama: {format_bytes(result.total_bytes)}, as Ollama lists it"
        if record.passed
        else f"Ollama pulled {format_bytes(result.total_bytes)} of {name} but lists {shown}; "
        f"run ollama pull {name} again"
    ]
    return record


# -- smoke and soak ----------------------------------------------------------------


def smoke(context: Context) -> PhaseRecord:
    """A short prompt; the least memory available while the model was loaded and answering."""
    record = PhaseRecord("smoke")
    turn = _guarded_run(
        context, "migrate-smoke", record,
        lambda run: run.ask([ChatMessage("user", SMOKE_PROMPT)], max_tokens=16, temperature=0.0),
    )  # fmt: skip
    if turn is not None:
        record.measurements.update(reply=turn.text[:200], decode_tps=turn.speed.decode_tps)
    least = record.measurements.get("least_available_bytes")
    if least is None:  # nothing was sampled (the load failed at once): the reasons say why
        return record
    go, stop = context.thresholds.smoke_floors(context.policy, context.probe().memory.total_bytes)
    decision = smoke_decision(least, go, stop, context.thresholds.accept_caution)
    record.measurements.update(continue_bytes=go, stop_bytes=stop, outcome=decision.outcome)
    record.reasons.append(decision.reason)
    record.passed = record.passed is not False and decision.outcome != STOP
    context.caution = decision.outcome == CAUTION
    return record


def soak(context: Context) -> PhaseRecord:
    """A code review and follow-ups for the soak's duration; stable memory, no leak."""
    record = PhaseRecord("soak")
    limits = context.thresholds
    duration = min(limits.soak_s, limits.caution_soak_s) if context.caution else limits.soak_s
    result = _guarded_run(
        context, "migrate-soak", record,
        lambda run: run_soak(
            run, duration, max_tokens=limits.max_tokens, prompts=soak_prompts(),
            on_point=context.on_point, temperature=0.0,
        ),
    )  # fmt: skip
    if result is None or record.passed is False:
        return record
    least = record.measurements["least_available_bytes"]
    _, stop = limits.smoke_floors(context.policy, context.probe().memory.total_bytes)
    leak = result.leak
    record.measurements.update(
        duration_s=duration, turns=len(result.points), leak=result.to_dict()["leak"],
    )  # fmt: skip
    failures = []
    if leak.verdict == "leak":
        failures.append(f"memory grows: {leak.reason}")
    if least < stop:
        failures.append(
            f"{format_bytes(least)} available at worst, below the stop floor {format_bytes(stop)}"
        )
    record.passed = not failures
    record.reasons = failures or [
        f"{len(result.points)} turns in {duration:.0f} s; {leak.verdict}: {leak.reason}"
    ]
    return record


def _guarded_run(
    context: Context, mode: str, record: PhaseRecord, body: Callable[[ModelRun], _T]
) -> _T | None:
    """``body`` on a ``ModelRun`` under the guard; a failure (or the guard stopping the
    model, even while it loads) fails ``record`` and gives ``None``.

    Only a ``YoyuError`` is caught (the engine failed or was stopped); Ctrl-C
    and bugs go on to the procedure, after the ``with`` has stopped the engine.
    """
    outcome: _T | None = None
    guard = RunGuard(context.policy, audit_path=context.folder / "guard.jsonl")
    run = ModelRun(
        context.config, mode=mode, store=context.store, machine=context.machine,
        watchers=[guard], backend_factory=context.backend_factory,
    )  # fmt: skip
    try:
        with run:
            record.run_id = run.run_id
            if run.loaded is not None and run.loaded.pid is not None:
                context.on_engine(_engine(run.loaded.pid))
            outcome = body(run)
    except YoyuError as error:
        record.passed = False
        record.reasons.append(f"the model failed: {error}")
    finally:
        record.run_id = run.run_id
        context.on_engine(None)
        if run.sampler is not None and run.sampler.samples():
            budget = context.thresholds.budget_bytes
            record.measurements["least_available_bytes"] = least_available(run.sampler, budget)
    if guard.stop_message is not None:
        record.passed = False
        record.reasons.insert(0, f"the guard stopped the model: {guard.stop_message}")
    return outcome


def _engine(pid: int) -> dict[str, Any] | None:
    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    except psutil.Error:
        return None


def least_available(sampler: Sampler | None, budget: int | None) -> int:
    """The least memory available over the run's samples (the budget applied as the guard does)."""
    samples = sampler.samples() if sampler is not None else []
    if not samples:
        return available_now(budget)
    first = samples[0]
    baseline = Baseline(
        first.t_s, first.system.available_bytes, first.system.swap_used_bytes,
        first.system.total_bytes, first.process.growth_bytes,
    )  # fmt: skip
    return min(effective_available(sample, baseline, budget) for sample in samples)


def soak_prompts(lines: int = 100) -> Sequence[str]:
    """The review prompt (about ``lines`` lines of Python) and the follow-up turns."""
    return (
        f"Review this code and point out bugs:\n\n```python\n{review_code(lines)}```",
        *SOAK_FOLLOW_UPS,
    )


def review_code(lines: int) -> str:
    """Plausible Python of ``lines`` lines: small functions that parse, sum and report."""
    body: list[str] = []
    index = 0
    while len(body) < lines:
        body += [
            f"def parse_row_{index}(line):",
            "    parts = line.split(',')",
            "    if len(parts) < 3:",
            "        return None",
            f"    value = float(parts[2]) * {index + 1}",
            "    return {'id': int(parts[0]), 'name': parts[1], 'value': value}",
            "",
        ]
        index += 1
    return "\n".join(body[:lines]) + "\n"
