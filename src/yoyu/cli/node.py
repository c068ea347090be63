"""``yoyu node``: make this machine a worker of a llama.cpp RPC cluster.

The work is ``yoyu.node.worker``; this module reads the flags, prints where
the head should point ``--node``, and runs until Ctrl-C or until the
rpc-server ends (the guard stopped it, or it crashed: exit 1, with why).
"""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer
from rich.markup import escape

from yoyu.cli.node_flags import API_KEY_ENV
from yoyu.cli.output import console, print_json, styled
from yoyu.guard.policy import parse_size
from yoyu.i18n import _
from yoyu.node.worker import (
    DEFAULT_RPC_PORT,
    UNAUTHENTICATED_FLAG,
    NodeOptions,
    NodeWorker,
)
from yoyu.units import format_bytes


def register(app: typer.Typer) -> None:
    """Add ``yoyu node`` to the top-level app."""
    app.command("node")(node_command)


def node_command(
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs the flag below.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="rpc-server's port.")] = DEFAULT_RPC_PORT,
    status_port: Annotated[
        int | None, typer.Option(help="The status endpoint's port (default: port + 1).")
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="The most memory the model may take here, e.g. 200GiB.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all).")] = None,
    rpc_server: Annotated[
        str | None, typer.Option(help="An rpc-server binary (default: PATH, then installed).")
    ] = None,
    unauthenticated: Annotated[
        bool,
        typer.Option(
            UNAUTHENTICATED_FLAG,
            help="Bind rpc-server beyond loopback: it has NO authentication.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run rpc-server under yoyu's guard, with a status endpoint the head reads."""
    options = NodeOptions(
        host=host, rpc_port=port, status_port=status_port,
        budget_bytes=parse_size(budget) if budget else None, threads=threads,
        rpc_server=rpc_server, api_key=os.environ.get(API_KEY_ENV) or None,
        allow_unauthenticated_rpc=unauthenticated,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stop ends it like Ctrl-C
    with NodeWorker(options) as worker:
        status = worker.status()
        address = f"{host}:{worker.status_port}"
        if as_json:
            print_json({"node": address, **status.to_dict()})
        else:
            _print_started(address, status.rpc_port, status.offer_bytes, unauthenticated)
        try:
            code = worker.wait()
        except KeyboardInterrupt:
            return
        reason = worker.status().stopped_reason or _("rpc-server exited ({code})").format(code=code)
        console.print(styled("red", _("node stopped")) + f": {escape(reason)}")
        raise typer.Exit(1)


def _print_started(address: str, rpc_port: int, offer_bytes: int, open_bind: bool) -> None:
    ready = _(
        "node ready: rpc-server on port {port}, offering {offer}; on the head: --node {address}"
    ).format(port=rpc_port, offer=format_bytes(offer_bytes), address=address)
    console.print(escape(ready))
    if open_bind:
        warning = _(
            "rpc-server has no authentication; anyone who reaches its port can use this machine"
        )
        console.print(styled("bold red", _("warning")) + f": {escape(warning)}")
