"""`yoyu node` workers on 127.0.0.1, for tests and benchmarks of a model split over RPC.

Each worker runs a real ``rpc-server`` under its guard with the budget given;
``cluster`` is this machine as a head that sees them as its devices, through
their status endpoints (what ``yoyu plan --node HOST:PORT`` reads).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.node.client import read_nodes
from yoyu.node.status import with_nodes
from yoyu.node.worker import NodeOptions, NodeWorker
from yoyu.testing.gateway_process import free_port


@contextmanager
def started_nodes(
    budgets: tuple[int, ...], rpc_server: Path, logs: Path
) -> Iterator[list[NodeWorker]]:
    """One worker per budget (bytes), closed on the way out."""
    workers: list[NodeWorker] = []
    try:
        for budget in budgets:
            options = NodeOptions(
                rpc_port=free_port(), status_port=free_port(), budget_bytes=budget,
                rpc_server=str(rpc_server), log_dir=logs, threads=1,
            )  # fmt: skip
            workers.append(NodeWorker(options).start())
        yield workers
    finally:
        for worker in workers:
            worker.close()


def cluster(workers: list[NodeWorker]) -> Machine:
    """This machine as the head, with each worker's offer as one RPC device."""
    addresses = [f"127.0.0.1:{worker.status_port}" for worker in workers]
    return with_nodes(probe_machine(), read_nodes(addresses))
