"""``yoyu mcp``: yoyu's models and the machine's state as MCP tools, over stdio.

``yoyu mcp --model PATH.gguf[=ALIAS]`` needs no config file; ``--config`` (or
``YOYU_CONFIG`` / the default ``yoyu.toml``) adds backends, routes, aliases
and limits, exactly as for ``yoyu serve``. Stdout carries the protocol and
nothing else: logs go to stderr. ``--check`` prints what would be served and
the tools, then exits, to test a setup before registering it with a client.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import anyio
import typer

from yoyu.cli.output import console
from yoyu.cli.serve import load_gateway_config
from yoyu.gateway.config import GatewayConfig
from yoyu.gateway.service import GatewayService
from yoyu.i18n import _

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add ``yoyu mcp`` to the top-level app."""
    app.command("mcp")(mcp_command)


def mcp_command(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="PATH.gguf[=ALIAS]: serve a GGUF file (repeatable)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="yoyu.toml with served models, backends, routes and limits.")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Print the models and tools, then exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log to stderr.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="With --check: print JSON.")] = False,
) -> None:
    """Serve local models as MCP tools over stdio (for Claude Code and other MCP clients)."""
    gateway = load_gateway_config(config, model or [], None, None, None)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if check:
        _print_check(gateway, json_output)
        return
    if not gateway.served:
        log.warning("no model is served: pass --model PATH.gguf or a --config with [served.ID]")
    from yoyu.mcp import serve_stdio  # the MCP SDK, once the flags and config are good

    service = GatewayService.from_config(gateway)
    signal.signal(signal.SIGTERM, functools.partial(_stop_now, service))
    serve_stdio(service)


def _stop_now(service: GatewayService, signum: int, frame: FrameType | None) -> None:
    """SIGTERM: stop the engines (their own sessions outlive ours), then leave at once.

    Unwinding instead would wait for the SDK's stdin reader thread, which blocks
    until the client closes the pipe.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    service.close()
    os._exit(128 + signum)


def _print_check(gateway: GatewayConfig, json_output: bool) -> None:
    from yoyu.mcp import create_mcp_server

    service = GatewayService.from_config(gateway)
    try:
        tools = [tool.name for tool in anyio.run(create_mcp_server(service).list_tools)]
    finally:
        service.close()
    models = [*gateway.served, *gateway.routes, *gateway.aliases]
    if json_output:
        sys.stdout.write(json.dumps({"models": models, "tools": tools}) + "\n")
        return
    listed = ", ".join(models) or _("(none)")
    console.print(_("models: {models}").format(models=listed), markup=False)
    console.print(_("tools: {tools}").format(tools=", ".join(tools)), markup=False)
