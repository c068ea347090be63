"""``--node`` and ``--rpc``: the flags that put other machines under one model.

``yoyu plan``, ``run`` and ``serve`` wear them; ``yoyu node`` is the worker
they point at. They live apart from that command so that wearing them does
not import the worker, its guard or its HTTP client: the nodes are read
(``machine_with_nodes``) only when one was given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from yoyu.machine.types import Machine

API_KEY_ENV = "YOYU_API_KEY"

NodeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--node",
        help="A `yoyu node` worker's status address HOST:PORT (repeat): split the model "
        "over them with llama.cpp RPC (needs llama-server).",
    ),
]


RpcOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rpc",
        help="A llama.cpp rpc-server's HOST:PORT (repeat; as llama-server's --rpc): a device "
        "of the plan, asked for its memory over the RPC protocol (needs llama-server).",
    ),
]


def is_node_address(value: str) -> bool:
    """``HOST:PORT`` of a live node, as opposed to a machine preset or TOML file."""
    host, separator, port = value.rpartition(":")
    return bool(separator and host and port.isdigit())


def machine_with_nodes(
    addresses: Sequence[str], rpc_endpoints: Sequence[str] = ()
) -> Machine | None:
    """This machine with each worker, then each raw rpc-server, as an RPC device
    (llama-server's ``--rpc`` order), or ``None`` without either."""
    if not addresses and not rpc_endpoints:
        return None
    from yoyu.machine.bandwidth import with_measured_bandwidth
    from yoyu.machine.probe import probe_machine
    from yoyu.node.client import read_nodes  # httpx: only when there are nodes to ask
    from yoyu.node.rpc_protocol import read_rpc_devices
    from yoyu.node.status import with_nodes, with_rpc_servers

    nodes = read_nodes(addresses, os.environ.get(API_KEY_ENV) or None)
    devices = [device for endpoint in rpc_endpoints for device in read_rpc_devices(endpoint)]
    head = with_nodes(with_measured_bandwidth(probe_machine()), nodes)
    return with_rpc_servers(head, devices)
