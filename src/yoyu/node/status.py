"""What a ``yoyu node`` worker tells the head, and how the head plans with it.

The worker answers ``GET /status`` with a ``NodeStatus``: its live memory,
the budget the user gave it, the guard's floor, the rpc-server's pid and
resident bytes. ``offer_bytes`` is what the head may place on it: the budget,
but never more than what is available above the floor right now.

For the plan a node is a device like a GPU (``GpuInfo`` of vendor ``rpc``,
named by its endpoint, free = its offer), added in ``--rpc`` order in front
of the head's own devices: the plan stays a pure function of the machine
description, and the same machine gives the engine its ``--rpc`` list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yoyu.errors import ConfigError
from yoyu.estimate.weights import RPC_VENDOR
from yoyu.machine.types import GpuInfo, Machine
from yoyu.node.rpc_protocol import RpcDevice, split_host_port

STATUS_PATH = "/status"


@dataclass(frozen=True)
class NodeStatus:
    """One worker as it reports itself (bytes as int; ``engine_pid`` None once stopped)."""

    name: str  # the worker's host name
    rpc_port: int
    budget_bytes: int  # what the user let it give (--budget), or its total memory
    available_bytes: int
    total_bytes: int
    floor_bytes: int  # the guard's caution floor: the plan stays above it, the guard acts below
    engine_pid: int | None
    engine_rss_bytes: int
    stopped_reason: str | None  # why the guard or a crash stopped the rpc-server
    devices: tuple[str, ...]  # rpc-server's own list: "CPU: AMD EPYC (24105 MiB, ...)"
    yoyu_version: str

    @property
    def offer_bytes(self) -> int:
        """Bytes the head may place here now: the budget, or what is available if that
        is less (the rpc-server's own resident bytes count as the model's), less the
        guard's caution floor (past it the guard warns, then stops the rpc-server)."""
        room = min(self.budget_bytes, self.available_bytes + self.engine_rss_bytes)
        return max(0, room - self.floor_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "offer_bytes": self.offer_bytes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> NodeStatus:
        """Read a status; anything missing or mistyped is a one-line ConfigError."""
        try:
            return cls(
                name=str(data["name"]),
                rpc_port=int(data["rpc_port"]),
                budget_bytes=int(data["budget_bytes"]),
                available_bytes=int(data["available_bytes"]),
                total_bytes=int(data["total_bytes"]),
                floor_bytes=int(data["floor_bytes"]),
                engine_pid=None if data["engine_pid"] is None else int(data["engine_pid"]),
                engine_rss_bytes=int(data["engine_rss_bytes"]),
                stopped_reason=data.get("stopped_reason"),
                devices=tuple(str(device) for device in data.get("devices", ())),
                yoyu_version=str(data.get("yoyu_version", "")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(
                f"{where} did not answer like a yoyu node ({type(error).__name__}: {error}); "
                "is `yoyu node` running there, and is this its status port?"
            ) from None


@dataclass(frozen=True)
class LiveNode:
    """A node as the head reached it: the host it used and what the node said."""

    host: str
    status: NodeStatus

    @property
    def rpc_endpoint(self) -> str:
        return f"{self.host}:{self.status.rpc_port}"


def with_nodes(head: Machine, nodes: Sequence[LiveNode]) -> Machine:
    """``head`` with every node as an RPC device in front of its own GPUs."""
    for node in nodes:
        if node.status.engine_pid is None:
            raise ConfigError(
                f"node {node.host} has no rpc-server running "
                f"({node.status.stopped_reason or 'stopped'}); restart `yoyu node` there"
            )
    rpc = tuple(
        GpuInfo(
            vendor=RPC_VENDOR,
            index=index,
            name=node.rpc_endpoint,
            total_bytes=node.status.budget_bytes,
            free_bytes=node.status.offer_bytes,
            used_bytes=0,
        )
        for index, node in enumerate(nodes)
    )
    return dataclasses.replace(head, gpus=(*rpc, *head.gpus))


def with_rpc_servers(head: Machine, devices: Sequence[RpcDevice]) -> Machine:
    """``head`` with raw rpc-servers as devices, after its nodes and before its GPUs: each
    offers what it reports free (an rpc-server on a CPU reports its machine's total as
    free; run `yoyu node` there for an offer that keeps a floor)."""
    by_endpoint: dict[str, list[RpcDevice]] = {}
    for device in devices:
        by_endpoint.setdefault(device.endpoint, []).append(device)
    for endpoint, found in by_endpoint.items():
        if len(found) != 1:
            raise ConfigError(
                f"rpc-server at {endpoint} has {len(found)} devices; yoyu plans one device "
                "per endpoint: start one rpc-server per device (rpc-server -d NAME -p PORT)"
            )
    taken = sum(1 for gpu in head.gpus if gpu.vendor == RPC_VENDOR)
    rpc = tuple(
        GpuInfo(
            vendor=RPC_VENDOR, index=taken + index, name=device.endpoint,
            total_bytes=device.total_bytes, free_bytes=device.free_bytes, used_bytes=0,
        )
        for index, device in enumerate(devices)
    )  # fmt: skip
    nodes = tuple(gpu for gpu in head.gpus if gpu.vendor == RPC_VENDOR)
    own = tuple(gpu for gpu in head.gpus if gpu.vendor != RPC_VENDOR)
    return dataclasses.replace(head, gpus=(*nodes, *rpc, *own))


def parse_node_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) of a node's status endpoint."""
    address = split_host_port(text)
    if address is None:
        raise ConfigError(
            f"--node {text!r} is not HOST:PORT (the status address `yoyu node` prints)"
        )
    return address
