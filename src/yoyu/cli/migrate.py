"""``yoyu migrate``: move an alias to a bigger model in stages, with rollback.

    yoyu migrate TARGET --alias NAME [--from CURRENT] [--soak 10m] [--budget SIZE]
                 [--min-available SIZE] [--smoke-continue SIZE] [--smoke-stop SIZE]
                 [--accept-caution] [--ctx N] [--json]
    yoyu migrate --resume      continue the current migration at the phase it stopped in
    yoyu migrate --status      where the current migration stands
    yoyu migrate --rollback    back to the old model (engine stopped, alias restored)

Exit status: 0 promoted (or status shown), 1 rolled back, 2 bad input, 130 Ctrl-C
(the state is kept: ``--resume`` or ``--rollback`` afterwards).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape

from yoyu.backends.ollama import PullProgress
from yoyu.cli.output import console, print_json
from yoyu.cli.run import JsonOpt
from yoyu.cli.run_flags import CtxOpt
from yoyu.errors import SettingsError
from yoyu.i18n import _
from yoyu.rollout import (
    Hooks,
    MigrationState,
    Request,
    load_current,
    resume_migration,
    rollback_migration,
    start_migration,
    thresholds_from_settings,
    with_flags,
)
from yoyu.rollout.state import PHASES
from yoyu.runner import DEFAULT_SETTINGS, SoakPoint, parse_duration
from yoyu.units import format_bytes, format_mib

_STATUS_STYLE = {"promoted": "green", "rolled_back": "red", "interrupted": "yellow"}


def register(app: typer.Typer) -> None:
    """Add ``yoyu migrate`` to the top-level app."""
    app.command("migrate")(migrate_command)


def migrate_command(
    target: Annotated[
        str | None, typer.Argument(help="The new model: GGUF file, Ollama or installed name.")
    ] = None,
    alias: Annotated[str | None, typer.Option(help="The alias in yoyu.toml to move.")] = None,
    source: Annotated[
        str | None,
        typer.Option("--from", help="The current model (served id, route or GGUF path)."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the current one.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Show where it stands.")] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="Roll back now.")] = False,
    soak: Annotated[str | None, typer.Option(help="Soak duration: 30s, 10m (default 10m).")] = None,
    budget: Annotated[
        str | None, typer.Option(help="Act as if only SIZE were available (as the guard's).")
    ] = None,
    min_available: Annotated[
        str | None, typer.Option(help="Baseline available memory needed (default 10 GiB).")
    ] = None,
    smoke_continue: Annotated[
        str | None, typer.Option(help="Smoke: go on at or above SIZE (default: guard caution).")
    ] = None,
    smoke_stop: Annotated[
        str | None, typer.Option(help="Smoke: roll back below SIZE (default: guard abort).")
    ] = None,
    accept_caution: Annotated[
        bool, typer.Option("--accept-caution", help="Go on (short soak) between the floors.")
    ] = False,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens per answer.")] = None,
    ctx: CtxOpt = DEFAULT_SETTINGS.n_ctx,
    as_json: JsonOpt = False,
) -> None:
    """Preflight, fetch, smoke test, soak test, then promote TARGET under ALIAS or roll back."""
    modes = [name for name, on in (("--resume", resume), ("--status", status)) if on]
    modes += ["--rollback"] if rollback else []
    if len(modes) > 1:
        raise SettingsError(f"{' and '.join(modes)} cannot be combined; give one")
    hooks = Hooks(
        on_phase=(lambda phase: None) if as_json else _print_phase,
        on_point=None if as_json else _print_point,
        on_pull=None if as_json else _pull_printer(),
    )
    if status:
        state = load_current()
    elif resume:
        state = resume_migration(hooks, parse_duration(soak) if soak else None)
    elif rollback:
        state = rollback_migration()
    else:
        if target is None or alias is None:
            raise SettingsError(
                "give the new model and the alias: yoyu migrate TARGET --alias NAME "
                "(or --resume, --status, --rollback)"
            )
        thresholds = with_flags(
            thresholds_from_settings(), min_available=min_available,
            smoke_continue=smoke_continue, smoke_stop=smoke_stop, soak=soak, budget=budget,
            max_tokens=max_tokens, accept_caution=accept_caution,
        )  # fmt: skip
        settings = dataclasses.replace(DEFAULT_SETTINGS, n_ctx=ctx)
        request = Request(target, alias, source, thresholds, settings)
        state = start_migration(request, hooks)
    _show(state, as_json)
    if state.status == "rolled_back" and not status:
        raise typer.Exit(1)


def _show(state: MigrationState, as_json: bool) -> None:
    if as_json:
        print_json({**state.to_dict(), "display_status": state.display_status})
        return
    style = _STATUS_STYLE.get(state.status, "bold")
    heading = _("migration of {alias} to {target}: {status} (phase {phase})").format(
        alias=f"[bold]{escape(state.alias)}[/]", target=f"[bold]{escape(state.target)}[/]",
        status=f"[{style}]{escape(state.display_status)}[/]", phase=escape(state.phase),
    )  # fmt: skip
    console.print(heading)
    for name in PHASES[:-1]:
        record = state.phases.get(name)
        if record is not None:
            result = {True: _("passed"), False: _("failed"), None: _("interrupted")}[record.passed]
            console.print(f"  {name:<9} {result:<11} {'; '.join(record.reasons)}", markup=False)
    for reason in state.reasons:
        console.print(f"  - {reason}", markup=False)
    if state.report:
        console.print(_("report: {path}").format(path=state.report), markup=False)


def _print_phase(phase: str) -> None:
    console.print(f"[bold]{phase}[/] ...")


def _pull_printer() -> Callable[[PullProgress], None]:
    """Print each new status of an Ollama pull once (one line per layer, not per chunk)."""
    last: list[str] = []

    def show(progress: PullProgress) -> None:
        if last and last[-1] == progress.status:
            return
        last.append(progress.status)
        size = f" ({format_bytes(progress.total)})" if progress.total else ""
        console.print(f"  ollama: {progress.status}{size}")

    return show


def _print_point(point: SoakPoint) -> None:
    line = _("soak turn {turn} at {seconds} s: anon+swap {growth}").format(
        turn=f"{point.turn + 1:>3}", seconds=f"{point.t_s:6.1f}",
        growth=format_mib(point.growth_bytes),
    )  # fmt: skip
    console.print(f"  {line}", markup=False)
