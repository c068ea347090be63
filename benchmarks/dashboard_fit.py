"""What fits here: the dashboard's ranking of the whole catalog, against its peer, the
same ``rank_catalog`` called in this process (what ``yoyu fit --json`` runs), measured in
the same run.

A ``yoyu dashboard`` child answers ``GET /dashboard/api/fit?machine=PRESET`` (and,
without a machine, this one); for each machine ``--rounds`` requests and as many
in-process rankings are timed, interleaved, after one of each to fill the catalog's
spec cache. Printed per machine: the request's wall time (the whole answer, JSON
included), the server's CPU time for it, the peer's CPU time, and the ratio of the two
CPU times (what HTTP and JSON add). CPU time is the steadier figure on a shared machine.

    PYTHONPATH=src python benchmarks/dashboard_fit.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
import psutil

from yoyu.machine.bandwidth import with_measured_bandwidth
from yoyu.machine.presets import load_machine
from yoyu.machine.probe import probe_machine
from yoyu.models.catalog import catalog_entries
from yoyu.plan.ranking import fit_request, rank_catalog
from yoyu.testing.gateway_process import GatewayProcess

PRESETS = ("linux-rtx4090-24g", "linux-rtx3060-12g", "linux-cpu-32g", "mac-studio-m2-max-32g")


def request_once(client: httpx.Client, server: psutil.Process, preset: str) -> tuple[float, float]:
    """(wall, server CPU) seconds of one answer for ``preset`` ("": this machine)."""
    before = sum(server.cpu_times()[:2])
    started = time.perf_counter()
    answer = client.get("/dashboard/api/fit", params={"machine": preset} if preset else None)
    wall = time.perf_counter() - started
    answer.raise_for_status()
    return wall, sum(server.cpu_times()[:2]) - before


def peer_once(preset: str) -> float:
    """CPU seconds of the same ranking in this process."""
    machine = load_machine(preset) if preset else with_measured_bandwidth(probe_machine())
    started = time.process_time()
    rank_catalog(catalog_entries(), machine, fit_request()).to_dict()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with GatewayProcess([], command="dashboard") as gateway:
        server = psutil.Process(gateway.process.pid)
        with httpx.Client(base_url=gateway.url, timeout=60) as client:
            print("machine                  wall (max)          server CPU  peer CPU  ratio")
            for preset in ("", *PRESETS):
                request_once(client, server, preset)  # fills the server's spec cache
                peer_once(preset)  # and this process's
                walls, cpus, peers = [], [], []
                for _ in range(rounds):
                    wall, cpu = request_once(client, server, preset)
                    walls.append(wall)
                    cpus.append(cpu)
                    peers.append(peer_once(preset))
                served, peer = statistics.median(cpus), statistics.median(peers)
                print(f"{preset or 'this machine':24s} {statistics.median(walls):.3f} s "
                      f"({max(walls):.3f} s)   {served:.3f} s     {peer:.3f} s  "
                      f"{served / peer:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
