"""The commands of ``yoyu`` by name, and the group that imports each only when it runs.

Every command module pulls in what its work needs (the MCP SDK, Starlette,
uvicorn, matplotlib, llama.cpp's bindings...), and most invocations need one
command. So the top-level group knows each command by its name, its module
and its one-line help, kept here as data: ``yoyu --help`` lists them without
importing a single command module, and ``yoyu plan ...`` imports
``yoyu.cli.plan`` alone. ``tests/cli/test_cli_start.py`` checks that these
help lines are the commands' own and that light commands stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer
from typer import _click
from typer.core import TyperCommand, TyperGroup

from yoyu.i18n import _

# The top-level app's settings, worn as well by the app each command is built in.
APP_SETTINGS: dict[str, Any] = {"add_completion": False, "pretty_exceptions_enable": False}


@dataclass(frozen=True)
class CommandEntry:
    """One command of ``yoyu``: its name, the module whose ``register(app)`` adds it,
    and the line ``yoyu --help`` shows for it (the first paragraph of its help)."""

    name: str
    module: str
    help: str


# In the order ``yoyu --help`` has always listed them: commands, then groups.
COMMANDS: tuple[CommandEntry, ...] = (
    CommandEntry(
        "doctor", "yoyu.cli.doctor",
        "Show this machine, the models found on it, and whether each one fits.",
    ),
    CommandEntry(
        "machine", "yoyu.cli.machine",
        "Show CPU, RAM, swap, GPUs, Apple GPU limits and local runtimes.",
    ),
    CommandEntry(
        "inspect", "yoyu.cli.inspect",
        "Show a model's architecture, parameters, quantization and bytes per layer.",
    ),
    CommandEntry(
        "models", "yoyu.cli.models",
        "List the models installed in Ollama, the Hugging Face cache, LM Studio and your paths.",
    ),
    CommandEntry(
        "plan", "yoyu.cli.plan",
        "Plan a model on a machine: per-device memory, layer split, verdict, risk, speed, moves.",
    ),
    CommandEntry(
        "pull", "yoyu.cli.pull",
        "Download a Hub GGUF into the Hugging Face cache, if the plan says it fits here.",
    ),
    CommandEntry(
        "fit", "yoyu.cli.fit",
        "Rank the catalog's models on a machine: placement, largest context, speed, risk.",
    ),
    CommandEntry(
        "watch", "yoyu.cli.watch",
        "Memory, engines, GPUs and the guard's floors, refreshing in place.",
    ),
    CommandEntry(
        "serve", "yoyu.cli.serve",
        "Serve models over the OpenAI API, loading each only when memory allows.",
    ),
    CommandEntry(
        "dashboard", "yoyu.cli.dashboard",
        "Watch this machine in the browser: memory, engines, runs, plans, the guard's log.",
    ),
    CommandEntry(
        "run", "yoyu.cli.run",
        "Load MODEL, answer PROMPT (streamed), print the memory profile, unload.",
    ),
    CommandEntry(
        "chat", "yoyu.cli.chat",
        "Chat with MODEL; /stats shows the last turn's memory profile, /quit ends.",
    ),
    CommandEntry(
        "profile", "yoyu.cli.profile",
        "A/B two settings files: median and range per phase, difference against noise.",
    ),
    CommandEntry(
        "soak", "yoyu.cli.soak",
        "Chat with MODEL for a while; slope of settled anon + swap memory per turn, verdict.",
    ),
    CommandEntry(
        "mcp", "yoyu.cli.mcp",
        "Serve local models as MCP tools over stdio (for Claude Code and other MCP clients).",
    ),
    CommandEntry(
        "migrate", "yoyu.cli.migrate",
        "Preflight, fetch, smoke test, soak test, then promote TARGET under ALIAS or roll back.",
    ),
    CommandEntry(
        "node", "yoyu.cli.node",
        "Run rpc-server under yoyu's guard, with a status endpoint the head reads.",
    ),
    CommandEntry(
        "guard", "yoyu.cli.guard",
        "Run a command under the memory guard: yoyu guard [FLAGS] -- CMD ARGS..., or watch a "
        "running tree with --pid N. Exits with the command's own status, or 75 when the guard "
        "stopped it (2: bad flags, 127: command not found).",
    ),
    CommandEntry(
        "runs", "yoyu.cli.runs",
        "Stored runs: list them, or show one with its memory profile.",
    ),
    CommandEntry(
        "engine", "yoyu.cli.engine",
        "The engines yoyu runs: llama.cpp's own programs built here, vLLM in its own environment.",
    ),
)  # fmt: skip
_BY_NAME = {entry.name: entry for entry in COMMANDS}


def load_command(entry: CommandEntry) -> _click.Command:
    """Import the entry's module and build its command as the top-level app would."""
    # __import__, not importlib.import_module: `python -X importtime` logs only the former
    module = __import__(entry.module, fromlist=["register"])
    holder = typer.Typer(**APP_SETTINGS)
    module.register(holder)
    command = typer.main.get_group(holder).commands.get(entry.name)
    if command is None:
        raise LookupError(f"{entry.module}.register added no command named {entry.name!r}")
    return translated_help(command)


def listed_command(entry: CommandEntry) -> _click.Command:
    """What ``yoyu --help`` reads of a command: its name and one-line help, nothing imported."""
    return TyperCommand(entry.name, help=_(entry.help))


def translated_help(command: _click.Command) -> _click.Command:
    """The command's help, its options' and its subcommands' in the user's language.

    The English texts (docstrings and ``help=``) are the message ids;
    ``yoyu.testing.catalog`` collects them from the built commands.
    """
    if command.help:
        command.help = _(command.help)
    if command.short_help:
        command.short_help = _(command.short_help)
    for param in command.params:
        text = getattr(param, "help", None)
        if text:
            param.help = _(text)  # type: ignore[attr-defined]
    if isinstance(command, TyperGroup):
        for subcommand in command.commands.values():
            translated_help(subcommand)
    return command


class LazyCommandGroup(TyperGroup):
    """The top-level group: knows every command by name, imports one when it is asked for.

    Help is the one place that asks for every command; while it is written the
    group answers with ``listed_command`` stand-ins, so ``yoyu --help`` (and
    ``yoyu`` alone) import no command module.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listed = {entry.name: listed_command(entry) for entry in COMMANDS}
        # Names in order for listing and "Did you mean"; a real command replaces its stand-in.
        self.commands = dict(self._listed)
        self._writing_help = False

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        entry = _BY_NAME.get(cmd_name)
        if entry is None:
            return None
        if self._writing_help:
            return self._listed[cmd_name]
        if self.commands[cmd_name] is self._listed[cmd_name]:
            self.commands[cmd_name] = load_command(entry)
        return self.commands[cmd_name]

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        translated_help(self)  # its own help and --version; the commands are stand-ins here
        self._writing_help = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._writing_help = False
