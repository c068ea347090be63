"""Per-node launch commands for a plan split across machines.

llama.cpp RPC (tools/rpc/README.md): every worker runs ``rpc-server`` (it
exposes its devices over TCP; ``-c`` caches tensors locally so a restart does
not resend hundreds of GB), and the head runs ``llama-server --rpc
host:port,...``. llama.cpp lists RPC devices first, in ``--rpc`` order, then
the head's own device, and gives block ``i`` to the first device whose
cumulative ``--tensor-split`` share exceeds ``i / (n_layers + 1)``; passing
each device's block count (+1 on the head for the output layer) reproduces
the plan's ranges exactly. exo partitions by node memory on its own; its
command is the same on every node and the plan shows the split to expect.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from yoyu.plan.emit.llama_cpp import llama_server_argv
from yoyu.plan.types import Plan

RPC_PORT = 50052
EXO_API_PORT = 52415


@dataclass(frozen=True)
class NodeCommand:
    node: str
    role: str  # "head" or "worker"
    layers: str  # "0-30"
    argv: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClusterCommands:
    engine: str  # "rpc" or "exo"
    commands: list[NodeCommand]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "commands": [command.to_dict() for command in self.commands],
            "notes": list(self.notes),
        }

    def render(self) -> str:
        lines = [f"# {note}" for note in self.notes]
        for command in self.commands:
            lines.append(f"# on {command.node} ({command.role}, layers {command.layers}):")
            lines.append(shlex.join(command.argv))
        return "\n".join(lines) + "\n"


def rpc_commands(
    plan: Plan, model_path: str, hosts: Sequence[str] | None = None
) -> ClusterCommands:
    """``rpc-server`` on each worker, ``llama-server --rpc`` with the layer split on the head."""
    shares = plan.nodes
    workers = [share for share in shares if share.role == "worker"]
    names = list(hosts) if hosts else [f"<{share.name}-address>" for share in workers]
    endpoints = [f"{host}:{RPC_PORT}" for host in names[: len(workers)]]
    commands = [
        NodeCommand(share.name, "worker", _layers(share.first_layer, share.last_layer),
                    ["rpc-server", "--host", "0.0.0.0", "--port", str(RPC_PORT), "-c"])
        for share in workers
    ]  # fmt: skip
    head = next(share for share in shares if share.role == "head")
    counts = [share.n_layers for share in workers] + [head.n_layers + 1]
    settings = dataclasses.replace(
        plan.settings, n_gpu_layers=plan.n_layers_total, tensor_split=tuple(map(float, counts))
    )
    head_argv = [*llama_server_argv(settings, model_path), "--rpc", ",".join(endpoints)]
    commands.append(
        NodeCommand(head.name, "head", _layers(head.first_layer, head.last_layer), head_argv)
    )
    notes = [
        "start the workers first; rpc-server has no authentication: keep it on a private network",
        "--tensor-split counts blocks per device: RPC devices in --rpc order, then the head "
        "(+1 for the output layer); it assumes one device per worker",
    ]
    return ClusterCommands("rpc", commands, notes)


def exo_commands(plan: Plan) -> ClusterCommands:
    """The same ``exo`` command on every node; exo discovers peers and splits by memory."""
    commands = [
        NodeCommand(share.name, share.role, _layers(share.first_layer, share.last_layer), ["exo"])
        for share in plan.nodes
    ]
    notes = [
        "exo partitions layers by node memory itself; the ranges shown are what the plan expects",
        f"the API listens on port {EXO_API_PORT} of any node (/v1/chat/completions)",
        "exo runs MLX (Apple Silicon) or tinygrad builds of a model, not this GGUF file",
    ]
    return ClusterCommands("exo", commands, notes)


def _layers(first: int, last: int) -> str:
    return f"{first}-{last}"
