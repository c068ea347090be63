"""``yoyu dashboard``: the dashboard with no model served, a monitor of this machine.

The same server as ``yoyu serve`` (the same door, the same key rules), with
nothing to route: the Memory page shows every engine running here (found by
name, as ``yoyu watch`` finds them), Runs the run store, Plan any model on any
machine, and the Guard log every guard's decisions. The config file's
``[server]`` and ``[guard]`` apply; its models are not served.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from yoyu.cli.output import console
from yoyu.cli.serve import (
    OpenOpt,
    dashboard_url,
    load_gateway_config,
    open_when_ready,
    setup_logging,
)
from yoyu.gateway.config import GatewayConfig, api_key
from yoyu.gateway.server import serve


def register(app: typer.Typer) -> None:
    """Add ``yoyu dashboard`` to the top-level app."""
    app.command("dashboard")(dashboard_command)


def dashboard_command(
    config: Annotated[
        Path | None, typer.Option(help=r"yoyu.toml whose \[server] and \[guard] apply.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8040).")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the key browsers must give.")
    ] = None,
    open_browser: OpenOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each request.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the startup summary as one JSON line.")
    ] = False,
) -> None:
    """Watch this machine in the browser: memory, engines, runs, plans, the guard's log."""
    monitor = monitor_config(load_gateway_config(config, [], host, port, api_key_env))
    api_key(monitor.server)  # refuse a bad bind before anything starts
    setup_logging(verbose)
    url = dashboard_url(monitor.server.host, monitor.server.port)
    if json_output:
        summary = {"dashboard": url, "api_key_env": monitor.server.api_key_env}
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    else:
        console.print(f"yoyu dashboard at {url} (no model served: a monitor)")
    if open_browser:
        open_when_ready(url)
    serve(monitor)


def monitor_config(config: GatewayConfig) -> GatewayConfig:
    """``config`` with nothing to serve, and no guard of the gateway's own (it has no
    engine to watch; the guards of ``yoyu run`` and others still show in the log)."""
    server = dataclasses.replace(config.server, guard=False)
    return dataclasses.replace(config, server=server, backends={}, served={}, routes={}, aliases={})
