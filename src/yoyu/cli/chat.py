"""``yoyu chat MODEL``: an interactive conversation, each answer measured like ``yoyu run``.

Lines are read from stdin (so a script can pipe a conversation in). ``/stats``
prints the profile of the last turn, ``/quit`` (or end of input) ends the
chat and unloads the model. With ``--json`` each turn is printed as one JSON
line when it ends, and ``/stats`` prints the last turn's report as JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from yoyu.cli.output import print_json
from yoyu.cli.run import (
    DEFAULT_MAX_TOKENS,
    JsonOpt,
    MaxTokensOpt,
    ModelArg,
    SeedOpt,
    TemperatureOpt,
    open_with_spinner,
    print_chunk,
    print_notice,
    print_profile,
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
from yoyu.i18n import _
from yoyu.runner import ModelRun
from yoyu.runner.soak import Conversation

QUIT = "/quit"
STATS = "/stats"


def register(app: typer.Typer) -> None:
    """Add ``yoyu chat`` to the top-level app."""
    app.command("chat")(chat_command)


@with_run_flags()
def chat_command(
    model: ModelArg,
    flags: RunFlags,
    max_tokens: MaxTokensOpt = DEFAULT_MAX_TOKENS,
    temperature: TemperatureOpt = None,
    seed: SeedOpt = None,
    system: Annotated[str | None, typer.Option(help="A system message first.")] = None,
    no_guard: NoGuardOpt = False,
    budget: BudgetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Chat with MODEL; /stats shows the last turn's memory profile, /quit ends."""
    guard = run_guard(no_guard, budget)
    run = guarded_run(flags.run_config(model), guard, "chat", seed)
    with guard_verdict(guard):
        open_with_spinner(run, quiet=as_json)
        _converse(run, Conversation(flags.ctx or 4096, max_tokens, system), max_tokens,
                  temperature, seed, as_json)  # fmt: skip


def _converse(
    run: ModelRun,
    conversation: Conversation,
    max_tokens: int,
    temperature: float | None,
    seed: int | None,
    as_json: bool,
) -> None:
    """Answer each input line until /quit or the end of input."""
    with run:
        if not as_json:
            hint = _("{stats} shows the last turn's memory, {quit} ends")
            progress_console.print(f"[dim]{hint.format(stats=STATS, quit=QUIT)}[/]")
        for line in _lines(as_json):
            if line == QUIT:
                break
            if line == STATS:
                _stats(run, as_json)
                continue
            turn = run.ask(
                conversation.messages(line),
                on_chunk=None if as_json else print_chunk,
                max_tokens=max_tokens, temperature=temperature, seed=seed,
            )  # fmt: skip
            usage = turn.usage
            conversation.add(line, turn.text, usage.prompt_tokens if usage else None)
            if as_json:
                sys.stdout.write(json.dumps({"turn": turn.index, **run.report(turn)}) + "\n")
            else:
                sys.stdout.write("\n")
                if turn.empty_answer:
                    print_notice(turn.empty_answer)
            sys.stdout.flush()


def _lines(quiet: bool) -> Iterator[str]:
    """Non-empty input lines, prompting on stderr when someone is typing."""
    while True:
        if not quiet and sys.stdin.isatty():
            progress_console.print("[bold]>[/] ", end="")
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip():
            yield line.strip()


def _stats(run: ModelRun, as_json: bool) -> None:
    if run.last_turn is None:
        progress_console.print(_("no answer yet: ask something first"), markup=False)
    elif as_json:
        print_json(run.report())
    else:
        print_profile(run.report())
