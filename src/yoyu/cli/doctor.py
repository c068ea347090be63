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
from yoyu.cli.output import console, print_json, shown_word, styled
from yoyu.config import load_settings
from yoyu.errors import YoyuError
from yoyu.estimate.types import RunSettings
from yoyu.i18n import _, render_error
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
    failure: YoyuError | None

    @property
    def error(self) -> str | None:
        """The reason in English, as ``--json`` gives it; the table renders ``failure``."""
        return None if self.failure is None else str(self.failure)

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
        return ModelFit(None, error)


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
    sheet = Table(show_header=False, box=None, padding=(0, 3, 0, 0))
    sheet.add_column(style="bold")
    sheet.add_column()
    sheet.add_row(_("Machine"), f"{machine.os.system} {machine.os.release} {machine.os.arch}")
    simd = " ".join(machine.cpu.simd[:6])
    cores = _("{cores} cores / {threads} threads").format(
        cores=machine.cpu.cores, threads=machine.cpu.threads
    )
    sheet.add_row("CPU", f"{machine.cpu.model} ({cores}{', ' + simd if simd else ''})")
    sheet.add_row(_("Memory"), _memory_line(machine))
    for gpu in machine.gpus:
        free = _("{free} free of {total}").format(
            free=format_bytes(gpu.free_bytes), total=format_bytes(gpu.total_bytes)
        )
        sheet.add_row(f"GPU {gpu.index}", f"{gpu.name}: {free}")
    if not machine.gpus:
        sheet.add_row("GPU", _("none found (models run on the CPU)"))
    runtimes = ", ".join(
        f"{runtime.name} {runtime.version or ''}".strip() if runtime.found else f"{runtime.name}: -"
        for runtime in machine.runtimes
    )
    sheet.add_row(_("Runtimes"), runtimes)
    console.print(sheet)


def _memory_line(machine: Machine) -> str:
    memory = machine.memory
    line = _("{total} total, {available} available").format(
        total=format_bytes(memory.total_bytes), available=format_bytes(memory.available_bytes)
    )
    if memory.limit_bytes:
        line += _(", container limit {limit}").format(limit=format_bytes(memory.limit_bytes))
    return line + _("; swap {used} used of {total}").format(
        used=format_bytes(memory.swap_used_bytes), total=format_bytes(memory.swap_total_bytes)
    )


def _print_models(installed: list[InstalledModel], fits: list[ModelFit]) -> None:
    if not installed:
        console.print(
            "\n"
            + _(
                "No models found (looked in the Ollama store, the Hugging Face cache, LM Studio's "
                "folder and [models] paths in yoyu.toml). Add a folder with "
                "YOYU_MODEL_PATHS=/path/to/models, or plan one from the catalog: "
                "yoyu plan llama3.1:8b"
            ),
            markup=False,
        )
        return
    title = _("Models found (planned at ctx {ctx})").format(ctx=DOCTOR_CTX)
    table = Table(title=title, title_justify="left")
    for column in (
        _("model"), _("source"), _("size"), _("verdict"), _("risk"), _("GPU layers"),
        _("free after"),
    ):  # fmt: skip
        table.add_column(column)
    for model, fit in zip(installed, fits, strict=True):
        table.add_row(model.name, model.source, format_bytes(model.size_bytes), *_fit_cells(fit))
    console.print(table)
    for model, fit in zip(installed, fits, strict=True):
        if fit.failure is not None:
            console.print(f"[red]{escape(model.name)}[/]: {escape(render_error(fit.failure))}")
    console.print(_("Details and fitting moves: yoyu plan MODEL"), markup=False)


def _fit_cells(fit: ModelFit) -> tuple[str, ...]:
    if fit.plan is None:
        return (styled("red", _("unreadable")) + " " + escape(_("(below)")), "", "", "")
    plan = fit.plan
    return (
        shown_word(plan.verdict),
        shown_word(plan.risk),
        f"{plan.n_gpu_layers}/{plan.n_layers_total}",
        format_bytes(plan.free_after_bytes),
    )
