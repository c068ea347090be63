"""``yoyu guard``: run a command, or watch a process tree, under the memory guard.

    yoyu guard [--caution SIZE|PCT] [--abort SIZE|PCT] [--budget SIZE] [--grace SECONDS]
               [--json] -- CMD ARGS...
    yoyu guard [same flags] --pid N
    yoyu guard log [--json] [--limit N]

Exit status: the command's own when it ends by itself (128 + N when a signal N
from elsewhere ended it); 75 (EX_TEMPFAIL) when the guard stopped it, after
one line on stderr naming the floor crossed and the figure that crossed it;
2 for bad flags or configuration; 127 when the command cannot be started.
With ``--pid``: 0 when the tree ended by itself, 75 when the guard stopped it.

Everything after ``--`` belongs to the command, so ``yoyu guard -- log`` runs
a program called ``log``; ``yoyu guard log`` shows the audit log.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from yoyu.cli.output import console, print_json
from yoyu.errors import SettingsError
from yoyu.guard import (
    GuardedRun,
    policy_from_settings,
    read_audit,
    run_guarded,
    watch_pid,
    with_overrides,
)
from yoyu.guard.audit import AuditRecord
from yoyu.guard.policy import GuardPolicy
from yoyu.i18n import _

_COMMAND_KEY = "yoyu.guard.command"
_SHOWN_KINDS = ("warn", "unload", "terminate", "kill")


class _GuardGroup(TyperGroup):
    """Everything after the first ``--`` is the guarded command, never a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's click Context
        if "--" in args:
            cut = args.index("--")
            ctx.meta[_COMMAND_KEY] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)


guard_app = typer.Typer(
    cls=_GuardGroup,
    invoke_without_command=True,
    add_completion=False,
    help=(
        "Run a command under the memory guard: yoyu guard [FLAGS] -- CMD ARGS..., or watch a "
        "running tree with --pid N. Exits with the command's own status, or 75 when the guard "
        "stopped it (2: bad flags, 127: command not found)."
    ),
)


def register(app: typer.Typer) -> None:
    """Add ``yoyu guard`` and ``yoyu guard log`` to the top-level app."""
    app.add_typer(guard_app, name="guard")


@guard_app.callback()
def guard_command(
    ctx: typer.Context,
    caution: Annotated[
        str | None, typer.Option(help="Caution floor of available memory: SIZE or PCT (4GiB).")
    ] = None,
    abort: Annotated[
        str | None, typer.Option(help="Abort floor: SIZE or PCT (2GiB); the tree is stopped.")
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="Act as if only SIZE were available at start.")
    ] = None,
    grace: Annotated[str | None, typer.Option(help="Seconds from SIGTERM to SIGKILL (5).")] = None,
    pid: Annotated[int | None, typer.Option(help="Watch this running process tree.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    command = list(ctx.meta.get(_COMMAND_KEY, [])) + list(ctx.args)
    policy = _policy(caution, abort, budget, grace)
    result = _run(command, pid, policy, quiet=json_output)
    if json_output:
        print_json(_run_json(result))
    elif result.stopped_by_guard:
        sys.stderr.write(f"yoyu guard: {result.message}\n")
    raise typer.Exit(result.exit_code)


@guard_app.command("log")
def log_command(
    limit: Annotated[int, typer.Option(help="Show the last N records.")] = 50,
    json_output: Annotated[bool, typer.Option("--json", help="Print records as JSON.")] = False,
) -> None:
    """Show the guard's audit log: every decision with the figures behind it."""
    records = read_audit()[-limit:] if limit > 0 else []
    if json_output:
        print_json([record.to_json() for record in records])
        return
    if not records:
        console.print(_("no guard decisions logged yet"))
        return
    console.print(_log_table(records))


def _policy(
    caution: str | None, abort: str | None, budget: str | None, grace: str | None
) -> GuardPolicy:
    return with_overrides(
        policy_from_settings(),
        caution=caution,
        abort=abort,
        budget=budget,
        grace_s=_seconds(grace) if grace is not None else None,
    )


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SettingsError.from_message(
            "--grace {text!r} is not a number of seconds, e.g. --grace 5", text=text
        ) from None


def _run(command: list[str], pid: int | None, policy: GuardPolicy, *, quiet: bool) -> GuardedRun:
    show = None if quiet else _show_record
    if pid is not None and command:
        raise SettingsError.from_message("give either a command after -- or --pid, not both")
    if pid is not None:
        return watch_pid(pid, policy, on_record=show)
    if not command:
        raise SettingsError.from_message(
            "give a command after --, e.g. yoyu guard -- ollama serve, or --pid N"
        )
    return run_guarded(command, policy, on_record=show)


def _show_record(record: AuditRecord) -> None:
    """Each step of the ladder on stderr as it happens (the command owns stdout)."""
    if record.kind in _SHOWN_KINDS:
        sys.stderr.write(f"yoyu guard: {record.message}\n")


def _run_json(result: GuardedRun) -> dict[str, Any]:
    trigger = result.trigger
    return {
        "exit_code": result.exit_code,
        "stopped_by_guard": result.stopped_by_guard,
        "returncode": result.returncode,
        "pid": result.pid,
        "message": result.message,
        "trigger": None
        if trigger is None
        else {
            "floor": trigger.floor,
            "level": trigger.level.name.lower(),
            "threshold": trigger.threshold,
            "figure": trigger.figure,
            "predicted": trigger.predicted,
            "seconds_to_floor": trigger.seconds_to_floor,
        },
    }


def _log_table(records: list[AuditRecord]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in (_("time"), _("step"), _("target"), "pids", _("what")):
        table.add_column(column)
    for record in records:
        when = datetime.fromtimestamp(record.wall_time).strftime("%Y-%m-%d %H:%M:%S")
        pids = ",".join(str(pid) for pid in record.pids) or "-"
        table.add_row(when, record.kind, escape(record.target), pids, escape(record.message))
    return table
