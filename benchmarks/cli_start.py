"""How long ``yoyu plan NAME`` and ``yoyu fit`` take as a user runs them, beside the floor
every yoyu command stands on, measured in the same run.

Issue 22's targets on a 2-core machine: ``plan NAME`` under 300 ms wall, ``fit`` (every
quant of every catalog model) under 1 s. Each command runs as a fresh process
(``python -m yoyu ...``, output discarded), interleaved round by round with the peer: a
process that only imports what the CLI framework needs before yoyu's own code runs
(typer, the pydantic behind typer's option parsing, rich) and builds one option parser.
Printed per command: median wall and CPU seconds (user + system) and the CPU ratio to the
peer; CPU time is the steadier figure on a shared machine. The first round is discarded
(it writes the catalog's parsed copy and warms the page cache).

Bytecode matters: where ``PYTHONDONTWRITEBYTECODE`` is set and the source tree has no
``__pycache__``, every yoyu module is compiled on every run (about 0.1 s more per
command); run ``python -m compileall -q src`` first to measure what an installed yoyu does.

    PYTHONPATH=src python benchmarks/cli_start.py [--rounds 5] [--machine PRESET]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

PEER = (
    "import typer, typer._adapters, rich.console, rich.table, rich.markup\n"
    "from pydantic import TypeAdapter\n"
    "TypeAdapter(str)\n"
)
PLAN_NAMES = ("qwen3:30b-a3b", "llama3.2:3b", "deepseek-r1:7b")


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--machine", help="plan and rank for this preset, not this machine")
    args = parser.parse_args()
    machine = ["--machine", args.machine] if args.machine else []
    commands = {"peer (typer + pydantic + rich)": [sys.executable, "-c", PEER]}
    for name in PLAN_NAMES:
        commands[f"yoyu plan {name}"] = [sys.executable, "-m", "yoyu", "plan", name, *machine]
    commands["yoyu fit"] = [sys.executable, "-m", "yoyu", "fit", *machine]
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for round_index in range(args.rounds + 1):
        for label, argv in commands.items():
            measured = run_once(argv)
            if round_index:
                times[label].append(measured)
    peer_cpu = statistics.median(cpu for _, cpu in times[next(iter(commands))])
    bytecode = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    print(f"{args.rounds} rounds, bytecode writing {bytecode}; medians")
    print(f"{'command':32} {'wall s':>7} {'CPU s':>7} {'CPU / peer':>10}")
    for label, samples in times.items():
        wall = statistics.median(seconds for seconds, _ in samples)
        cpu = statistics.median(seconds for _, seconds in samples)
        print(f"{label:32} {wall:7.3f} {cpu:7.3f} {cpu / peer_cpu:10.2f}")


if __name__ == "__main__":
    main()
