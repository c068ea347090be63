"""``yoyu soak MODEL --duration 10m``: a long conversation and a leak verdict.

Exit code 0 for no leak or inconclusive, 1 when the slope says leak (so CI can
fail on it), 2 for bad input.
"""

from __future__ import annotations

import math
from typing import Annotated

import typer
from rich.markup import escape

from yoyu.cli.output import console, print_json, styled
from yoyu.cli.run import (
    JsonOpt,
    ModelArg,
    SeedOpt,
    open_with_spinner,
    progress_console,
)
from yoyu.cli.run_flags import RunFlags, with_run_flags
from yoyu.cli.run_guard import (
    BudgetOpt,
    NoGuardOpt,
    guard_verdict,
    guarded_run,
    run_guard,
)
from yoyu.i18n import N_, _
from yoyu.monitor.leak import DEFAULT_THRESHOLD_MIB_PER_MIN
from yoyu.runner import SoakPoint, parse_duration, run_soak
from yoyu.units import format_mib

_VERDICT_STYLE = {N_("leak"): "bold red", N_("no_leak"): "green", N_("inconclusive"): "yellow"}


def register(app: typer.Typer) -> None:
    """Add ``yoyu soak`` to the top-level app."""
    app.command("soak")(soak_command)


@with_run_flags()
def soak_command(
    model: ModelArg,
    flags: RunFlags,
    duration: Annotated[str, typer.Option(help="How long: 30s, 10m, 1h.")] = "10m",
    max_tokens: Annotated[int, typer.Option(help="Most tokens per answer.")] = 64,
    threshold: Annotated[
        float, typer.Option(help="MiB per minute of growth that counts as a leak.")
    ] = DEFAULT_THRESHOLD_MIB_PER_MIN,
    seed: SeedOpt = None,
    no_guard: NoGuardOpt = False,
    budget: BudgetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Chat with MODEL for a while; slope of settled anon + swap memory per turn, verdict."""
    duration_s = parse_duration(duration)
    guard = run_guard(no_guard, budget)
    run = guarded_run(flags.run_config(model), guard, "soak", seed)
    with guard_verdict(guard):
        open_with_spinner(run, quiet=as_json)
        with run:
            result = run_soak(
                run, duration_s, max_tokens=max_tokens, threshold_mib_per_min=threshold,
                on_point=None if as_json else _print_point, seed=seed,
            )  # fmt: skip
    leak = result.leak
    if as_json:
        print_json({"run_id": run.run_id, "duration_s": duration_s, **result.to_dict()})
    else:
        stderr = "?" if math.isinf(leak.stderr_mib_per_min) else f"{leak.stderr_mib_per_min:.2f}"
        style = _VERDICT_STYLE[leak.verdict]
        figures = _(
            "{slope} ± {stderr} MiB/min over {turns} turns in {seconds} s ({reason}); run {run}"
        ).format(
            slope=f"{leak.slope_mib_per_min:+.2f}", stderr=stderr, turns=leak.n_points,
            seconds=f"{leak.duration_s:.0f}", reason=leak.reason, run=run.run_id,
        )  # fmt: skip
        console.print(styled(style, _(leak.verdict)) + ": " + escape(figures))
    if leak.verdict == "leak":
        raise typer.Exit(1)


def _print_point(point: SoakPoint) -> None:
    settled = "" if point.settled else _(" (not settled)")
    line = _("turn {turn} at {seconds} s: anon+swap {growth}, RSS {rss}{settled}").format(
        turn=f"{point.turn + 1:>3}", seconds=f"{point.t_s:7.1f}",
        growth=format_mib(point.growth_bytes), rss=format_mib(point.rss_bytes), settled=settled,
    )  # fmt: skip
    progress_console.print(escape(line))
