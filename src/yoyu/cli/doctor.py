"""``yoyu doctor``: the first thing to run on a new machine.

It answers three questions in one screen: what is this machine, which models
are already on it, and which of them can run here.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from yoyu.cli.output import console, print_json
from yoyu.config import load_settings
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.models.discover import InstalledModel, find_installed_models
from yoyu.plan.rough_fit import RoughFitResult, rough_fit
from yoyu.units import format_bytes


def register(app: typer.Typer) -> None:
    app.command(name="doctor")(doctor)


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show this machine, the models found on it, and whether each one fits."""
    machine = probe_machine()
    installed = find_installed_models(load_settings())
    fits = [rough_fit(model.size_bytes, machine) for model in installed]
    if as_json:
        print_json(_doctor_json(machine, installed, fits))
        return
    _print_machine_summary(machine)
    _print_models(installed, fits)


def _doctor_json(
    machine: Machine, installed: list[InstalledModel], fits: list[RoughFitResult]
) -> dict[str, Any]:
    return {
        "machine": machine.to_dict(),
        "models": [
            {**model.to_dict(), "fit": fit.fit.value} for model, fit in zip(installed, fits)
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
        f"swap {format_bytes(memory.swap_used_bytes)} used of {format_bytes(memory.swap_total_bytes)}"
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


def _print_models(installed: list[InstalledModel], fits: list[RoughFitResult]) -> None:
    if not installed:
        console.print(
            "\nNo models found (looked in the Ollama store, the Hugging Face cache, LM Studio's "
            "folder and [models] paths in yoyu.toml). Add a folder with "
            "YOYU_MODEL_PATHS=/path/to/models, or plan one from the catalog: yoyu inspect llama3.1:8b"
        )
        return
    table = Table(title="Models found", title_justify="left")
    for column in ("model", "source", "size", "fit (by file size)"):
        table.add_column(column)
    for model, fit in zip(installed, fits):
        table.add_row(model.name, model.source, format_bytes(model.size_bytes), fit.fit.value)
    console.print(table)
