"""``yoyu runs`` lists the stored runs; ``yoyu runs show ID`` prints one with its profile.

The profile is rebuilt from the stored samples and events (the same
``phase_profile`` the run used), so it reads the same whatever wrote the run.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from yoyu.cli.output import console, print_json, styled
from yoyu.cli.run import print_profile
from yoyu.i18n import _, ngettext
from yoyu.monitor.phases import LOAD_START, phase_profile
from yoyu.monitor.store import RunRecord, RunStore, run_state
from yoyu.monitor.types import Sample
from yoyu.units import format_mib

runs_app = typer.Typer(
    help="Stored runs: list them, or show one with its memory profile.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def register(app: typer.Typer) -> None:
    """Add ``yoyu runs`` (list) and ``yoyu runs show ID`` to the top-level app."""
    app.add_typer(runs_app, name="runs")


@runs_app.callback()
def runs_command(
    context: typer.Context,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List stored runs, newest first."""
    if context.invoked_subcommand is not None:
        return
    with RunStore() as store:
        records = store.list_runs(limit)
    if as_json:
        print_json([_record_dict(record) for record in records])
    else:
        console.print(_list_table(records))


@runs_app.command("show")
def show_command(
    run_id: Annotated[int, typer.Argument(help="The run's id, as `yoyu runs` lists it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One run: settings, prediction, result, and the phase profile from its samples."""
    with RunStore() as store:
        record = store.get_run(run_id)
        samples, events = store.samples(run_id), store.events(run_id)
    profile = phase_profile(samples, events)
    origin = next((e.t_s for e in events if e.kind == LOAD_START), 0.0)
    phases = {
        name: None if r is None else {**r.__dict__, "t_s": round(r.t_s - origin, 3)}
        for name, r in profile.readings().items()
    }
    shown = {
        **_record_dict(record),
        "samples": len(samples),
        "events": [
            {"t_s": round(e.t_s - origin, 3), "kind": e.kind, "detail": e.detail} for e in events
        ],
        "phases": phases,
        "stabilize_s": profile.stabilize_s,
    }
    if as_json:
        print_json(shown)
        return
    _print_record(record, samples)
    result = record.result or {}
    report = {**result, "phases": phases, "stabilize_s": profile.stabilize_s,
              "predicted": record.prediction}  # fmt: skip
    print_profile(report)


def _record_dict(record: RunRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "state": run_state(record),
        "started": record.started,
        "finished": record.finished,
        "model": record.model,
        "mode": record.mode,
        "settings": record.settings,
        "prediction": record.prediction,
        "result": record.result,
    }


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _list_table(records: list[RunRecord]) -> Table:
    table = Table(title=_("Runs (newest first)"), title_justify="left", box=box.SIMPLE_HEAD)
    for column, right in (
        ("id", True), (_("started"), False), (_("mode"), False), (_("model"), False),
        ("ctx", True), (_("peak RSS"), True), (_("outcome"), False),
    ):  # fmt: skip
        table.add_column(column, justify="right" if right else "left")
    for record in records:
        table.add_row(
            str(record.id), _when(record.started), record.mode, escape(record.model),
            str(record.settings.get("n_ctx", "-")), _peak(record), _outcome(record),
        )  # fmt: skip
    return table


def _peak(record: RunRecord) -> str:
    phases = (record.result or {}).get("phases") or {}
    peak = phases.get("peak") or {}
    return format_mib(peak["process_rss_bytes"]) if "process_rss_bytes" in peak else "-"


def _outcome(record: RunRecord) -> str:
    result = record.result
    state = run_state(record)
    if state == "interrupted":
        return (
            styled("red", _("interrupted")) + " " + escape(_("(its yoyu ended before the run did)"))
        )
    if state == "running" or result is None:
        return _("running")
    if "error" in result:
        return styled("red", _("error")) + ": " + escape(str(result["error"])[:60])
    turns = len(result.get("turns", []))
    return ngettext("{count} turn", "{count} turns", turns).format(count=turns)


def _print_record(record: RunRecord, samples: list[Sample]) -> None:
    heading = _("run {id}").format(id=record.id)
    started = ngettext(
        "{model} ({mode}), started {when}, {count} sample",
        "{model} ({mode}), started {when}, {count} samples",
        len(samples),
    ).format(model=record.model, mode=record.mode, when=_when(record.started), count=len(samples))
    console.print(f"[bold]{heading}[/]: {escape(started)}")
    if run_state(record) == "interrupted":
        _print_interrupted(record, samples)
    settings = ", ".join(f"{k}={v}" for k, v in record.settings.items())
    console.print(escape(_("settings: {settings}").format(settings=settings)))
    result = record.result or {}
    if "error" in result:
        console.print(styled("red", _("error")) + ": " + escape(str(result["error"])))
    if result.get("text"):
        answer = str(result["text"])[:200]
        console.print(escape(_("last answer: {text}").format(text=answer)))


def _print_interrupted(record: RunRecord, samples: list[Sample]) -> None:
    last = (
        _("; the last sample was taken {when}").format(when=_when(samples[-1].system.wall_time))
        if samples
        else ""
    )
    detail = _(
        "the yoyu that ran it (pid {pid}) ended before the run finished "
        "(killed, crashed or powered off){last}"
    ).format(pid=record.owner_pid, last=last)
    console.print(styled("red", _("interrupted")) + ": " + escape(detail))
