"""``yoyu profile MODEL --compare A.toml B.toml --repeat N``: two settings, measured A/B.

Each TOML file holds settings (``ctx = 2048``, ``kv_type = "q8_0"``,
``batch = 256``, ``gpu_layers = 10``...; see ``yoyu.runner.options``). Runs
alternate A B A B, each loading the model afresh and unloading it after; the
table shows the median and range of each side per phase and whether the
difference stands out of the noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from yoyu.backends.protocol import ChatMessage
from yoyu.cli.output import console, print_json, styled
from yoyu.cli.run import (
    JsonOpt,
    ModelArg,
    SeedOpt,
    open_with_spinner,
    progress_console,
)
from yoyu.cli.run_flags import ForceOpt
from yoyu.cli.run_guard import (
    BudgetOpt,
    NoGuardOpt,
    guard_verdict,
    guarded_run,
    run_guard,
)
from yoyu.errors import SettingsError
from yoyu.i18n import N_, _
from yoyu.runner import (
    ABResult,
    ABRun,
    Difference,
    ModelRun,
    RunConfig,
    Side,
    run_ab,
    settings_from_file,
)
from yoyu.units import MIB, format_mib

DEFAULT_PROMPT = "Write two sentences about memory."
SHOWN_METRICS = ("process_rss_bytes", "process_anon_bytes", "system_available_bytes")
_FIGURE_TITLES = {
    "process_rss_bytes": "RSS", "process_anon_bytes": "anon", "system_available_bytes": "avail",
    "prefill_tps": "prefill", "decode_tps": "decode",
}  # fmt: skip
_PHASE_TITLES = {
    "baseline": N_("baseline"), "loaded": N_("loaded"), "pre_generation": N_("pre-gen"),
    "peak": N_("peak"), "post_generation": N_("post-gen"), "stabilized": N_("settled"),
    "speed": N_("speed"),
}  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``yoyu profile`` to the top-level app."""
    app.command("profile")(profile_command)


def profile_command(
    model: ModelArg,
    compare: Annotated[
        tuple[Path, Path] | None, typer.Option(help="Two settings TOML files: A.toml B.toml.")
    ] = None,
    repeat: Annotated[int, typer.Option(help="Runs per side.")] = 3,
    prompt: Annotated[str, typer.Option(help="The prompt every run answers.")] = DEFAULT_PROMPT,
    max_tokens: Annotated[int, typer.Option(help="Most tokens per answer.")] = 64,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
    no_guard: NoGuardOpt = False,
    budget: BudgetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A/B two settings files: median and range per phase, difference against noise."""
    if compare is None:
        raise SettingsError("give two settings files: --compare A.toml B.toml")
    sides = (Side(compare[0].stem, settings_from_file(compare[0])),
             Side(compare[1].stem, settings_from_file(compare[1])))  # fmt: skip
    guard = run_guard(no_guard, budget)
    base = RunConfig(model, force=force)

    def make_run(config: RunConfig) -> ModelRun:
        run = guarded_run(config, guard, "profile", seed)
        open_with_spinner(run, quiet=as_json)
        return run

    with guard_verdict(guard):
        result = run_ab(
            base, sides, repeat, [ChatMessage("user", prompt)], make_run=make_run,
            on_run=None if as_json else _print_run, max_tokens=max_tokens, seed=seed,
            temperature=0.0,
        )  # fmt: skip
    if as_json:
        print_json(result.to_dict())
    else:
        console.print(comparison_table(result))


def _print_run(run: ABRun) -> None:
    peak = run.profile.peak
    rss = format_mib(peak.process_rss_bytes) if peak else "-"
    line = _("{label} #{repeat}: peak RSS {rss} (run {run})").format(
        label=run.label, repeat=run.repeat + 1, rss=rss, run=run.run_id
    )
    progress_console.print(escape(line))


def comparison_table(result: ABResult) -> Table:
    a, b = result.labels
    title = escape(_("{a} vs {b} (MiB; tok/s for speed)").format(a=a, b=b))
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(_("phase"))
    table.add_column(_("figure"))
    median, spread = _("{side} median"), _("range")
    columns = (median.format(side=a), spread, median.format(side=b), spread, "B - A")
    for column in (*columns, _("noise"), _("real?")):
        table.add_column(escape(column), justify="right")
    for d in result.differences:
        if d.phase == "speed" or d.metric in SHOWN_METRICS:
            table.add_row(*_difference_cells(d))
    return table


def _difference_cells(d: Difference) -> list[str]:
    value = _tps if d.phase == "speed" else _mib
    real = {None: "?", True: styled("bold", _("yes")), False: _("no")}[d.exceeds_noise]
    return [
        _(_PHASE_TITLES.get(d.phase, d.phase)), _FIGURE_TITLES.get(d.metric, d.metric),
        value(d.a.median), value(d.a.range), value(d.b.median), value(d.b.range),
        value(d.delta), value(d.noise), real,
    ]  # fmt: skip


def _mib(value: float) -> str:
    return f"{value / MIB:.2f}"


def _tps(value: float) -> str:
    return f"{value:.1f}"
