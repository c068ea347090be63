"""``yoyu machine``: the spec sheet of this machine or of a preset."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from yoyu.cli.output import console, print_json, styled
from yoyu.i18n import _
from yoyu.machine import Machine, list_presets, load_machine, probe_machine
from yoyu.machine.types import AppleSiliconInfo, GpuInfo, RuntimeInfo
from yoyu.units import format_bytes


def register(app: typer.Typer) -> None:
    """Add ``yoyu machine`` to the top-level app."""

    @app.command("machine")
    def machine_command(
        preset: Annotated[
            str | None,
            typer.Option(
                "--preset",
                metavar="NAME|FILE",
                help="Show a preset (see --list-presets) or a machine TOML file, not this machine.",
            ),
        ] = None,
        show_presets: Annotated[
            bool, typer.Option("--list-presets", help="List built-in and user machine presets.")
        ] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print JSON instead of a table.")
        ] = False,
    ) -> None:
        """Show CPU, RAM, swap, GPUs, Apple GPU limits and local runtimes."""
        if show_presets:
            _print_presets(as_json)
            return
        machine = load_machine(preset) if preset else probe_machine()
        if as_json:
            print_json(machine.to_dict())
        else:
            _print_machine(machine)


def _print_presets(as_json: bool) -> None:
    presets = list_presets()
    if as_json:
        print_json([asdict(preset) for preset in presets])
        return
    title = _("machine presets (use with --preset NAME)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in (_("name"), _("from"), _("description")):
        table.add_column(column)
    for preset in presets:
        table.add_row(preset.name, preset.origin, preset.description)
    console.print(table)


def _print_machine(machine: Machine) -> None:
    console.print(f"[bold]{machine.name}[/bold]  ({machine.source})")
    console.print(_spec_sheet(machine))
    if machine.gpus:
        console.print(_gpu_table(machine.gpus))
    if machine.apple is not None:
        console.print(_apple_sheet(machine.apple, machine.memory.wired_bytes))
    if machine.runtimes:
        console.print(_runtime_table(machine.runtimes))


def _sheet(title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    return table


def _spec_sheet(machine: Machine) -> Table:
    cpu, memory = machine.cpu, machine.memory
    sheet = _sheet(_("system"))
    sheet.add_row("OS", _os_line(machine))
    sheet.add_row("CPU", f"{cpu.model} · {_core_counts(machine)}")
    sheet.add_row("SIMD", " ".join(cpu.simd) or "-")
    ram = _("{total} total · {available} available").format(
        total=format_bytes(memory.total_bytes), available=format_bytes(memory.available_bytes)
    )
    sheet.add_row("RAM", ram)
    if memory.limit_bytes is not None:
        limit = _("{limit} (cgroup memory limit)").format(limit=format_bytes(memory.limit_bytes))
        sheet.add_row(_("Limit"), limit)
    swap = _("{total} total · {used} used").format(
        total=format_bytes(memory.swap_total_bytes), used=format_bytes(memory.swap_used_bytes)
    )
    sheet.add_row(_("Swap"), swap)
    sheet.add_row(_("RAM bandwidth"), format_rate(memory.bandwidth_bytes_per_s))
    return sheet


def _os_line(machine: Machine) -> str:
    os_info = machine.os
    kernel = f"{os_info.system} {os_info.release}".strip()
    parts = [os_info.distribution, kernel, os_info.arch]
    return " · ".join(part for part in parts if part)


def _core_counts(machine: Machine) -> str:
    cpu = machine.cpu
    counts = _("{cores} cores / {threads} threads").format(cores=cpu.cores, threads=cpu.threads)
    if cpu.performance_cores is not None:
        counts += _(" ({count} performance)").format(count=cpu.performance_cores)
    return counts


def _gpu_table(gpus: tuple[GpuInfo, ...]) -> Table:
    table = Table(title="GPUs", title_justify="left", box=box.SIMPLE_HEAD, caption_justify="left")
    columns = ("#", "GPU", _("total"), _("free"), _("used"), _("bandwidth"), "cc")
    for column in columns:
        table.add_column(column, justify="left" if column == "GPU" else "right", no_wrap=True)
    for gpu in gpus:
        table.add_row(
            str(gpu.index),
            gpu.name,
            format_bytes(gpu.total_bytes),
            format_bytes(gpu.free_bytes),
            format_bytes(gpu.used_bytes),
            format_rate(gpu.bandwidth_bytes_per_s),
            gpu.compute_capability or "-",
        )
    table.caption = _driver_line(gpus)
    return table


def _driver_line(gpus: tuple[GpuInfo, ...]) -> str | None:
    """NVIDIA's driver and CUDA version are per machine, so they get one line, not a column."""
    with_driver = [gpu for gpu in gpus if gpu.driver_version]
    if not with_driver:
        return None
    first = with_driver[0]
    return _("NVIDIA driver {driver} · CUDA {cuda}").format(
        driver=first.driver_version, cuda=first.cuda_version or "-"
    )


def _apple_sheet(apple: AppleSiliconInfo, wired_bytes: int | None) -> Table:
    sheet = _sheet("Apple Silicon")
    cores = _(" · {count}-core GPU").format(count=apple.gpu_cores) if apple.gpu_cores else ""
    sheet.add_row(_("Chip"), f"{apple.chip}{cores}")
    sheet.add_row(_("GPU working set"), format_bytes(apple.gpu_working_set_bytes))
    sheet.add_row("  " + _("macOS default"), format_bytes(apple.default_working_set_bytes))
    sheet.add_row("  iogpu.wired_limit_mb", _wired_limit_text(apple.wired_limit_mb))
    sheet.add_row(_("Wired now"), format_bytes(wired_bytes))
    sheet.add_row(_("Memory pressure"), apple.memory_pressure or "-")
    return sheet


def _wired_limit_text(wired_limit_mb: int) -> str:
    if wired_limit_mb <= 0:
        return _("0 (macOS default applies)")
    return _("{value} (replaces the default)").format(value=wired_limit_mb)


def _runtime_table(runtimes: tuple[RuntimeInfo, ...]) -> Table:
    table = Table(title=_("runtimes"), title_justify="left", box=box.SIMPLE_HEAD)
    for column in (_("runtime"), _("found"), _("version"), _("where")):
        table.add_column(column)
    for runtime in runtimes:
        found = styled("green", _("yes")) if runtime.found else _("no")
        table.add_row(runtime.name, found, runtime.version or "-", runtime.location or "-")
    return table


def format_rate(bytes_per_s: int | None) -> str:
    """Bandwidth in decimal GB/s, as vendors quote it ("1008.1 GB/s")."""
    if bytes_per_s is None:
        return "-"
    return f"{bytes_per_s / 1e9:.1f} GB/s"
