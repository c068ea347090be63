"""``yoyu pull MODEL``: download a Hub GGUF into the Hugging Face cache, if it fits.

The header is read first (a few MiB, cached), the plan is made for this
machine (or ``--machine``) exactly as ``yoyu run`` would make it, and only a
model that fits is downloaded (``--force`` downloads anyway). The download
resumes a partial file, shows progress on stderr, and is checked against the
Hub's sha256 (``yoyu.remote.pull``). Exit codes: 0 pulled, 1 the plan says it
does not fit (nothing downloaded), 2 bad input or a failed download.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from yoyu.cli.model_ref import read_model_arg
from yoyu.cli.output import console, print_json, shown_word
from yoyu.cli.plan import default_context
from yoyu.errors import RemoteModelError
from yoyu.i18n import _
from yoyu.machine.presets import load_machine
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.remote.pull import PulledFile, pull_model
from yoyu.remote.reader import RemoteGGUF, RemoteModel
from yoyu.runner.options import DEFAULT_SETTINGS
from yoyu.runner.prediction import Prediction, predict
from yoyu.units import format_bytes

_MODEL_HELP = (
    "A Hub GGUF: hf://ORG/REPO/FILE.gguf (any part of a split one) or hf://ORG/REPO:Q4_K_M."
)


def register(app: typer.Typer) -> None:
    """Add ``yoyu pull`` to the top-level app."""
    app.command("pull")(pull_command)


def pull_command(
    model: Annotated[str, typer.Argument(help=_MODEL_HELP)],
    ctx: Annotated[
        int | None, typer.Option(help="Context tokens to plan for (default: as yoyu plan).")
    ] = None,
    machine: Annotated[
        str | None, typer.Option(help="Plan for this preset or machine TOML (default: this one).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download even when the plan says it does not fit.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Download a Hub GGUF into the Hugging Face cache, if the plan says it fits here."""
    spec, remote = read_model_arg(model)
    if remote is None:
        raise RemoteModelError(
            f"{model}: yoyu pull takes a Hub GGUF: hf://ORG/REPO/FILE.gguf or hf://ORG/REPO:QUANT"
        )
    target = load_machine(machine) if machine else probe_machine()
    settings = dataclasses.replace(DEFAULT_SETTINGS, n_ctx=default_context(spec, ctx))
    prediction = predict(spec, target, settings, force=force)  # DoesNotFitError: exit 1
    if not as_json:
        _print_fit(spec.name, target, prediction)
    pulled = _pull_with_progress(remote, quiet=as_json)
    if as_json:
        print_json(
            {"model": spec.name, "plan": prediction.to_dict(), "remote": remote.to_dict(),
             "files": [item.to_dict() for item in pulled]}
        )  # fmt: skip
        return
    _print_pulled(pulled)


def _pull_with_progress(remote: RemoteModel, *, quiet: bool) -> tuple[PulledFile, ...]:
    """The download, with one progress bar per part on stderr (none with --json)."""
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as bars:
        tasks = {
            part.name: bars.add_task(escape(_short(part)), total=part.size) for part in remote.files
        }

        def advance(part: RemoteGGUF, held: int) -> None:
            bars.update(tasks[part.name], completed=held)

        return pull_model(remote, progress=advance)


def _short(part: RemoteGGUF) -> str:
    return part.name.rsplit("/", 1)[-1]


def _print_fit(name: str, target: Machine, prediction: Prediction) -> None:
    line = _("{model} on {machine}: {verdict}, risk {risk}, {size} at ctx {ctx}").format(
        model=f"[bold]{escape(name)}[/]", machine=f"[bold]{escape(target.name)}[/]",
        verdict=escape(shown_word(prediction.verdict)), risk=escape(shown_word(prediction.risk)),
        size=format_bytes(prediction.total_bytes), ctx=prediction.settings.n_ctx,
    )  # fmt: skip
    console.print(line)


def _print_pulled(pulled: tuple[PulledFile, ...]) -> None:
    for item in pulled:
        if item.already_present:
            what = _("already in the cache")
        else:
            what = _("{size} downloaded").format(size=format_bytes(item.downloaded_bytes))
        if item.resumed_from_bytes:
            what = _("resumed from {size}, {what}").format(
                size=format_bytes(item.resumed_from_bytes), what=what
            )
        check = _("sha256 checked") if item.sha256 else _("no sha256 listed on the Hub")
        console.print(f"{escape(item.path)}: {escape(what)}, {escape(check)}")
