"""``yoyu serve``: one OpenAI-compatible endpoint in front of every configured model.

``yoyu serve --model PATH.gguf[=ALIAS]`` needs no config file; ``--config``
(or ``YOYU_CONFIG`` / the default ``yoyu.toml``) adds backends, routes,
aliases and limits. Binding beyond loopback without an API key is refused.
The dashboard is at ``/`` (``--open`` opens it in the browser once the server
answers). The MCP tools (``yoyu.mcp``) are served at ``/mcp`` over the same service
and key unless ``--no-mcp``; this module is the composition root that joins
them, since the gateway may not import the packages above it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from yoyu.cli.node_flags import NodeOpt, RpcOpt
from yoyu.cli.output import console
from yoyu.config import read_document
from yoyu.errors import ConfigError
from yoyu.gateway.app import Extension
from yoyu.gateway.config import GatewayConfig, api_key, parse_gateway_config, with_flags
from yoyu.gateway.server import serve
from yoyu.gateway.service import GatewayService
from yoyu.i18n import _

OpenOpt = Annotated[
    bool, typer.Option("--open", help="Open the dashboard in the browser once serving.")
]
OPEN_WAIT_S = 30.0


def register(app: typer.Typer) -> None:
    """Add ``yoyu serve`` to the top-level app."""
    app.command("serve")(serve_command)


def serve_command(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="PATH.gguf[=ALIAS]: serve a GGUF file (repeatable)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help=r"yoyu.toml with \[server], \[backends], \[served], \[routes], \[aliases]."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8040).")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the key clients must send.")
    ] = None,
    mcp: Annotated[
        bool, typer.Option("--mcp/--no-mcp", help="Also serve yoyu's MCP tools at /mcp.")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each request.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the startup summary as one JSON line.")
    ] = False,
    node: NodeOpt = None,
    rpc: RpcOpt = None,
    open_browser: OpenOpt = False,
) -> None:
    """Serve models over the OpenAI API, loading each only when memory allows."""
    if (node or rpc) and not model:
        raise ConfigError(
            "--node and --rpc split the --model files; in yoyu.toml give [served.ID] nodes or rpc"
        )
    gateway = load_gateway_config(
        config, model or [], host, port, api_key_env, node or [], rpc or []
    )
    api_key(gateway.server)  # refuse a bad bind before anything starts
    if not gateway.served:
        raise ConfigError(
            "nothing to serve; pass --model PATH.gguf or a --config with [served.ID] models"
        )
    setup_logging(verbose)
    _announce(gateway, json_output, mcp)
    if open_browser:
        open_when_ready(dashboard_url(gateway.server.host, gateway.server.port))
    serve(gateway, _mount_mcp if mcp else None)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise


def dashboard_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the dashboard (a wildcard bind: loopback)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"


def open_when_ready(url: str) -> None:
    """Open ``url`` in the browser once the server answers its ``/health`` (in a thread:
    the server runs in this one)."""
    import httpx

    def wait_and_open() -> None:
        deadline = time.monotonic() + OPEN_WAIT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "health", timeout=1.0).status_code == 200:
                    webbrowser.open(url)
                    return
            except httpx.HTTPError:
                time.sleep(0.2)

    threading.Thread(target=wait_and_open, name="yoyu-open-browser", daemon=True).start()


def _mount_mcp(service: GatewayService, key: str | None) -> Extension:
    """The MCP endpoint over the same service, behind the same key."""
    from yoyu.mcp.http_app import create_mcp_http_app  # the MCP SDK: not with --no-mcp

    mcp_http = create_mcp_http_app(service, api_key=key, host=service.config.server.host)
    return Extension(routes=mcp_http.routes, lifespan=mcp_http.lifespan)


def load_gateway_config(
    path: Path | None,
    models: list[str],
    host: str | None,
    port: int | None,
    api_key_env: str | None,
    nodes: list[str] | None = None,
    rpc: list[str] | None = None,
) -> GatewayConfig:
    """The config file (``--config``, else the usual one if it exists) with flags on top."""
    env = {"YOYU_CONFIG": str(path)} if path else None
    if path is not None and not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    source, document = read_document(env)
    config = parse_gateway_config(document, source if source.is_file() else None)
    return with_flags(
        config, models=models, host=host, port=port, api_key_env=api_key_env, nodes=nodes or (),
        rpc=rpc or (),
    )  # fmt: skip


def _announce(gateway: GatewayConfig, json_output: bool, mcp: bool) -> None:
    server = gateway.server
    ollama_url = f"http://{server.host}:{server.port}"  # Ollama clients take the bare host
    url = f"{ollama_url}/v1"
    names = [*gateway.served, *gateway.routes, *gateway.aliases]
    mcp_url = _mcp_url(server.host, server.port) if mcp else None
    dashboard = dashboard_url(server.host, server.port)
    if json_output:
        summary = {
            "url": url, "ollama": ollama_url, "mcp": mcp_url, "dashboard": dashboard,
            "models": names, "api_key_env": server.api_key_env,
        }  # fmt: skip
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
        return
    also = f"Ollama API: {ollama_url}" + (f", MCP: {mcp_url}" if mcp_url else "")
    line = _("yoyu serving {models} at {url} ({also}); dashboard: {dashboard}").format(
        models=", ".join(names), url=url, also=also, dashboard=dashboard
    )
    console.print(line, markup=False)


def _mcp_url(host: str, port: int) -> str:
    from yoyu.mcp.http_app import MCP_PATH  # the MCP SDK: not with --no-mcp

    return f"http://{host}:{port}{MCP_PATH}"
