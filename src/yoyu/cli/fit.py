"""``yoyu fit``: which catalog models run on this machine (or a preset), ranked.

Only parsing and printing live here: ``yoyu.plan.ranking.rank_catalog`` decides.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from yoyu.cli.machine_flags import (
    FreeOpt,
    GpuFreeOpt,
    MachineOpt,
    size_flag,
    target_machine,
)
from yoyu.cli.output import console, print_json, shown_word, styled
from yoyu.errors import SettingsError
from yoyu.i18n import N_, _
from yoyu.models.catalog import USES, catalog_entries
from yoyu.plan.ranking import FitFilters, FitReport, FitRow, fit_request, rank_catalog
from yoyu.plan.types import Verdict

_VERDICT_STYLE = {
    Verdict.FITS: "green",
    Verdict.PARTIAL_OFFLOAD: "yellow",
    Verdict.CPU_ONLY: "cyan",
    Verdict.DOES_NOT_FIT: "red",
}
_RISK_STYLE = {"safe": "green", "tight": "yellow", "caution": "yellow", "abort": "red"}


def register(app: typer.Typer) -> None:
    """Add ``yoyu fit`` to the top-level app."""
    app.command("fit")(fit_command)


def fit_command(
    machine: MachineOpt = None,
    free: FreeOpt = None,
    gpu_free: GpuFreeOpt = None,
    family: Annotated[
        str | None, typer.Option(help="Only this Ollama family, e.g. qwen3 or llama3.1.")
    ] = None,
    use: Annotated[
        str | None, typer.Option(help=f"Only models for one use: {', '.join(USES)}.")
    ] = None,
    min_ctx: Annotated[
        int, typer.Option(min=0, help="Only models that hold this many tokens, placed at it.")
    ] = 0,
    max_size: Annotated[
        str | None, typer.Option(help="Only downloads up to this size, e.g. 20GB.")
    ] = None,
    default_quant: Annotated[
        bool,
        typer.Option(
            "--default-quant", help="Only the quant each untagged name pulls, not every one."
        ),
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="List the models that do not fit too.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="Rows in the table.")] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Print every row as JSON.")] = False,
) -> None:
    """Rank the catalog's models on a machine: placement, largest context, speed, risk."""
    if use is not None and use not in USES:
        raise SettingsError(f"unknown --use {use!r}; choose one of {', '.join(USES)}")
    filters = FitFilters(
        family=family, use=use, min_ctx=min_ctx,
        max_size_bytes=size_flag("--max-size", max_size), all_quants=not default_quant,
    )  # fmt: skip
    request = fit_request(size_flag("--free", free), size_flag("--gpu-free", gpu_free))
    report = rank_catalog(catalog_entries(), target_machine(machine), request, filters)
    if as_json:
        print_json(report.to_dict())
        return
    print_report(report, show_all=show_all, limit=limit)


def print_report(report: FitReport, *, show_all: bool, limit: int) -> None:
    rows = [row for row in report.rows if show_all or row.runs]
    runs = sum(row.runs for row in report.rows)
    summary = _(
        "{runs} of {count} catalog models and quants run on {machine}; ctx: the largest that "
        "keeps the headroom; tok/s: predicted decode / prefill"
    ).format(
        runs=f"[bold]{runs}[/]", count=len(report.rows),
        machine=f"[bold]{escape(report.machine)}[/]",
    )  # fmt: skip
    console.print(summary)
    if not rows:
        console.print(styled("yellow", _("none fits; try --free, a smaller --max-size or --all")))
        return
    console.print(fit_table(rows[:limit]))
    if len(rows) > limit:
        more = _("{count} more: --limit N, or --json for every row").format(count=len(rows) - limit)
        console.print(styled("dim", more))


def fit_table(rows: list[FitRow]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(_("model"), no_wrap=True, overflow="ellipsis", max_width=22)
    table.add_column(_("quant"), no_wrap=True)
    for heading in ("GB", N_("where"), "ctx", "tok/s", N_("risk")):
        left = heading in ("where", "risk")
        # the placement wraps on a narrow terminal; figures never do
        wraps = heading == "where"
        table.add_column(
            _(heading) if left else heading, justify="left" if left else "right",
            no_wrap=not wraps, min_width=10 if wraps else None,
        )  # fmt: skip
    for row in rows:
        table.add_row(*_cells(row))
    return table


def _cells(row: FitRow) -> tuple[str, ...]:
    size = f"{row.file_bytes / 1e9:.1f}"
    risk = styled(_RISK_STYLE[row.risk.value], shown_word(row.risk))
    if not row.runs:
        return (
            escape(row.model),
            row.quant,
            size,
            styled("red", _("does not fit")),
            "-",
            "-",
            risk,
        )
    return (
        escape(row.model), row.quant, size, _where(row), _tokens(row.ctx),
        f"{row.decode_tps:.1f} / {row.prefill_tps:.0f}", risk,
    )  # fmt: skip


def _where(row: FitRow) -> str:
    """The placement in a few characters: GPU, CPU, GPU 37/41 layers, GPU + experts 25/36 CPU."""
    style = _VERDICT_STYLE.get(row.verdict, "yellow")
    if row.verdict is Verdict.CPU_ONLY:
        text = "CPU"
    elif row.n_cpu_moe:
        text = f"GPU, {row.n_cpu_moe}/{row.n_layers_total - 1} exp CPU"
    elif row.n_gpu_layers < row.n_layers_total:
        text = f"GPU {row.n_gpu_layers}/{row.n_layers_total}"
    else:
        text = "GPU"
    return f"[{style}]{text}[/]"


def _tokens(count: int) -> str:
    return f"{count // 1024}k" if count >= 1024 and count % 1024 == 0 else str(count)
