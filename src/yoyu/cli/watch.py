"""``yoyu watch``: a live view of memory, engines, GPUs and the guard's floors.

Refreshes in place (rich Live) until Ctrl-C; ``--once`` prints one reading and
``--json`` one reading as JSON, for scripts and tests.
"""

from __future__ import annotations

import contextlib
import time
from typing import Annotated

import typer
from rich import box
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from yoyu.cli.output import console, print_json, styled
from yoyu.errors import SettingsError
from yoyu.guard import policy_from_settings, with_overrides
from yoyu.guard.view import WatchReader, WatchView
from yoyu.i18n import N_, _
from yoyu.monitor.gpu import NvmlGpus
from yoyu.units import format_bytes

_LEVEL_STYLE = {N_("ok"): "green", N_("caution"): "yellow", N_("abort"): "bold red"}


def register(app: typer.Typer) -> None:
    """Add ``yoyu watch`` to the top-level app."""
    app.command("watch")(watch_command)


def watch_command(
    pid: Annotated[
        list[int] | None, typer.Option(help="Process tree to show (repeat; default: engines).")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
    caution: Annotated[str | None, typer.Option(help="Caution floor: SIZE or PCT.")] = None,
    abort: Annotated[str | None, typer.Option(help="Abort floor: SIZE or PCT.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one reading and exit.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One reading as JSON.")] = False,
) -> None:
    """Memory, engines, GPUs and the guard's floors, refreshing in place."""
    if not 0.05 <= interval <= 3600:
        raise SettingsError.from_message(
            "--interval {interval} is out of range; use 0.05 to 3600 seconds", interval=interval
        )
    policy = with_overrides(policy_from_settings(), caution=caution, abort=abort)
    gpus = NvmlGpus()
    reader = WatchReader(policy, pid, gpus=gpus if gpus.open() else None)
    try:
        if json_output:
            print_json(reader.read().to_json())
        elif once:
            console.print(render(reader.read()))
        else:
            _live(reader, interval)
    finally:
        gpus.close()


def _live(reader: WatchReader, interval: float) -> None:
    with (
        contextlib.suppress(KeyboardInterrupt),
        Live(render(reader.read()), console=console, auto_refresh=False) as live,
    ):
        while True:
            time.sleep(interval)
            live.update(render(reader.read()), refresh=True)


def render(view: WatchView) -> Group:
    """The whole screen: system, engines, GPUs, floors."""
    parts: list[Table] = [_system_table(view)]
    parts.append(_trees_table(view))
    if view.gpus:
        parts.append(_gpu_table(view))
    return Group(*parts)


def _system_table(view: WatchView) -> Table:
    system, floors = view.system, view.thresholds
    table = Table(title=_("memory"), box=box.SIMPLE_HEAD, title_justify="left")
    for column in (
        _("total"), _("available"), _("swap used"), _("PSI some/full"), _("caution"), _("abort"),
        _("level"),
    ):  # fmt: skip
        table.add_column(column)
    psi = (
        f"{system.psi_some_avg10:.1f}% / {system.psi_full_avg10 or 0:.1f}%"
        if system.psi_some_avg10 is not None
        else (system.macos_pressure or "-")
    )
    style = _LEVEL_STYLE[view.level]
    level = styled(style, _(view.level)) + (f" {escape(view.reason)}" if view.reason else "")
    table.add_row(
        format_bytes(system.total_bytes),
        format_bytes(system.available_bytes),
        _("{used} of {total}").format(
            used=format_bytes(system.swap_used_bytes), total=format_bytes(system.swap_total_bytes)
        ),
        psi,
        format_bytes(floors.caution_bytes),
        format_bytes(floors.abort_bytes),
        level,
    )
    return table


def _trees_table(view: WatchView) -> Table:
    table = Table(title=_("engines"), box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("pid", _("name"), _("processes"), _("resident"), _("swapped")):
        table.add_column(column)
    if not view.trees:
        table.add_row("-", _("no engine running"), "", "", "")
    for tree in view.trees:
        table.add_row(
            str(tree.pid),
            escape(tree.name),
            str(tree.processes),
            format_bytes(tree.rss_bytes),
            format_bytes(tree.swap_bytes),
        )
    return table


def _gpu_table(view: WatchView) -> Table:
    table = Table(title="GPUs", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("gpu", _("used"), _("free"), _("engines' share")):
        table.add_column(column)
    for gpu in view.gpus:
        table.add_row(
            str(gpu.index),
            format_bytes(gpu.used_bytes),
            format_bytes(gpu.free_bytes),
            format_bytes(gpu.process_used_bytes),
        )
    return table
