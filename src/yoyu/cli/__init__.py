"""The ``yoyu`` command: one typer app, one module per command group.

This module only wires the groups together and draws the one boundary where
a ``YoyuError`` becomes a one-line message and exit code 2. Commands print;
the library underneath never does. The groups are known by name
(``yoyu.cli.registry``) and each module is imported only when its command
runs, so a quick command does not pay for the server, MCP or plotting stacks.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from yoyu import __version__
from yoyu.cli.registry import APP_SETTINGS, LazyCommandGroup
from yoyu.errors import YoyuError
from yoyu.i18n import _, render_error

app = typer.Typer(
    name="yoyu",
    cls=LazyCommandGroup,
    help="Run local LLMs with room to spare: what fits, how to place it, what it really uses.",
    no_args_is_help=True,
    **APP_SETTINGS,
)


def _print_version(asked: bool) -> None:
    if asked:
        sys.stdout.write(f"yoyu {__version__}\n")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run local LLMs with room to spare: what fits, how to place it, what it really uses."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; turns user errors into one line and exit code 2."""
    try:
        exit_code = app(args=argv, standalone_mode=False)
    except YoyuError as error:
        sys.stderr.write(_("error: {message}").format(message=render_error(error)) + "\n")
        raise SystemExit(error.exit_code) from None
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write(_("aborted") + "\n")
        raise SystemExit(130) from None
    except typer.Exit as exit_request:
        raise SystemExit(exit_request.exit_code) from None
    except typer.TyperException as usage_error:  # bad flags and arguments: click-style message
        _show_usage_error(usage_error)
        raise SystemExit(usage_error.exit_code) from None
    # Outside standalone mode click returns a command's typer.Exit code instead of raising it.
    if isinstance(exit_code, int) and exit_code != 0:
        raise SystemExit(exit_code)


def _show_usage_error(error: typer.TyperException) -> None:
    """Print a usage error the way typer would have in standalone mode."""
    show = getattr(error, "show", None)
    if callable(show):
        show()
    else:
        sys.stderr.write(f"error: {error.format_message()}\n")
