"""``yoyu doctor``: the first thing to run on a new machine.

It answers three questions in one screen: what is this machine, which models
are already on it, and which of them can run here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from yoyu.backends.llamacpp_flags import find_engine
from yoyu.cli.output import console, print_json
from yoyu.config import load_settings
from yoyu.errors import YoyuError
from yoyu.estimate.types import RunSettings
from yoyu.machine.bandwidth import with_measured_bandwidth
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.models import resolve_model
from yoyu.models.discover import InstalledModel, find_installed_models
from yoyu.plan.planner import make_plan
from yoyu.plan.types import Plan, PlanRequest
from yoyu.units import format_bytes

DOCTOR_CTX = 8192  # the context `yoyu plan` assumes by default


@dataclass(frozen=True)
class ModelFit:
    """The plan of one installed model, or the one-line reason it could not be read."""

    plan: Plan | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        if self.plan is None:
            return {"error": self.error}
        plan = self.plan
        return {
            "verdict": plan.verdict.value,
            "risk": plan.risk.value,
            "ctx": plan.estimate.n_ctx,
            "n_gpu_layers": plan.n_gpu_layers,
            "n_layers_total": plan.n_layers_total,
            "total_bytes": plan.estimate.total_bytes,
            "free_after_bytes": plan.free_after_bytes,
        }


def plan_installed(model: InstalledModel, machine: Machine) -> ModelFit:
    """The real plan at a working context; a broken file gives its error, not a crash."""
    try:
        spec = resolve_model(str(model.path))
        ctx = min(DOCTOR_CTX, spec.context_length or DOCTOR_CTX)
        settings = RunSettings(n_ctx=ctx, engine=find_engine().kind)
        request = PlanRequest(settings=settings, propose_moves=False)
        return ModelFit(make_plan(spec, machine, request), None)
    except YoyuError as error:
        return ModelFit(None, str(error))


def register(app: typer.Typer) -> None:
    app.command(name="doctor")(doctor)


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show this machine, the models found on it, and whether each one fits."""
    machine = with_measured_bandwidth(probe_machine())
    installed = find_installed_models(load_settings())
    fits = [plan_installed(model, machine) for model in installed]
    if as_json:
        print_json(_doctor_json(machine, installed, fits))
        return
    _print_machine_summary(machine)
    _print_models(installed, fits)


def _doctor_json(
    machine: Machine, installed: list[InstalledModel], fits: list[ModelFit]
) -> dict[str, Any]:
    return {
        "machine": machine.to_dict(),
        "models": [
            {**model.to_dict(), "plan": fit.to_dict()}
            for model, fit in zip(installed, fits, strict=True)
        ],
    }


def _print_machine_summary(machine: Machine) -> None:
    memory = machine.memory
    console.print(f"[bold]Machine[/]   {machine.os.system} {machine.os.release} {machine.os.arch}")
    simd = " ".join(machine.cpu.simd[:6])
    console.print(
        f"[bold]CPU[/]       {machine.cpu.model} "
        f"({machine.cpu.cores} cores / {machine.cpu.threads} threads{', ' + simd if simd else ''})"
    )
    limit = f", container limit {format_bytes(memory.limit_bytes)}" if memory.limit_bytes else ""
    console.print(
        f"[bold]Memory[/]    {format_bytes(memory.total_bytes)} total, "
        f"{format_bytes(memory.available_bytes)} available{limit}; "
        f"swap {format_bytes(memory.swap_used_bytes)} used "
        f"of {format_bytes(memory.swap_total_bytes)}"
    )
    for gpu in machine.gpus:
        console.print(
            f"[bold]GPU {gpu.index}[/]     {gpu.name}: {format_bytes(gpu.free_bytes)} free "
            f"of {format_bytes(gpu.total_bytes)}"
        )
    if not machine.gpus:
        console.print("[bold]GPU[/]       none found (models run on the CPU)")
    runtimes = ", ".join(
        f"{runtime.name} {runtime.version or ''}".strip() if runtime.found else f"{runtime.name}: -"
        for runtime in machine.runtimes
    )
    console.print(f"[bold]Runtimes[/]  {runtimes}")


def _print_models(installed: list[InstalledModel], fits: list[ModelFit]) -> None:
    if not installed:
        console.print(
            "\nNo models found (looked in the Ollama store, the Hugging Face cache, LM Studio's "
            "folder and [models] paths in yoyu.toml). Add a folder with "
            "YOYU_MODEL_PATHS=/path/to/models, or plan one from the catalog: yoyu plan llama3.1:8b",
            markup=False,
        )
        return
    table = Table(title=f"Models found (planned at ctx {DOCTOR_CTX})", title_justify="left")
    for column in ("model", "source", "size", "verdict", "risk", "GPU layers", "free after"):
        table.add_column(column)
    for model, fit in zip(installed, fits, strict=True):
        table.add_row(model.name, model.source, format_bytes(model.size_bytes), *_fit_cells(fit))
    console.print(table)
    for model, fit in zip(installed, fits, strict=True):
        if fit.error is not None:
            console.print(f"[red]{escape(model.name)}[/]: {escape(fit.error)}")
    console.print("Details and fitting moves: yoyu plan MODEL")


def _fit_cells(fit: ModelFit) -> tuple[str, ...]:
    if fit.plan is None:
        return ("[red]unreadable[/] (below)", "", "", "")
    plan = fit.plan
    return (
        plan.verdict.value,
        plan.risk.value,
        f"{plan.n_gpu_layers}/{plan.n_layers_total}",
        format_bytes(plan.free_after_bytes),
    )
