"""A real process that takes memory at a set rate: the guard's test subject, and the
other application that eats memory in a chaos run.

    python memory_hog.py RATE_MIB_S [--limit MIB] [--leave MIB] [--hold S] [--chunk MIB]
                         [--ignore-term] [--wait-stdin] [--name NAME] [--spawn PROGRAM ARG...]

Takes ``--chunk`` MiB at a time (written, so resident at once), paced to
RATE MiB/s, until ``--limit`` MiB, or until the machine has only ``--leave``
MiB available, then holds them (forever, or ``--hold`` seconds and exits). After each chunk it
prints ``<time.monotonic()> <bytes taken>`` on stdout, so a reader knows when
each level was reached (CLOCK_MONOTONIC is one clock for every process on
Linux). On SIGTERM it prints ``peak <bytes>``, its own peak RSS (``VmHWM``), then
dies of the signal: the kernel's ``ru_maxrss`` for a child also holds its
parent's RSS at the fork (it survives exec), so a test process past a hog's
limit cannot read the hog's own peak from ``wait4``. ``--ignore-term`` ignores
SIGTERM; ``--spawn`` first starts a child
process (that stays in the hog's tree) and prints ``child <pid>``; ``--wait-stdin``
starts growing only once a line arrives on stdin.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MIB = 1024**2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rate", type=float, help="MiB per second")
    parser.add_argument("--limit", type=float, default=1e12, help="MiB, then hold")
    parser.add_argument("--leave", type=float, default=0.0, help="MiB to leave available")
    parser.add_argument("--hold", type=float, default=None, help="seconds to hold, then exit")
    parser.add_argument("--chunk", type=float, default=8.0, help="MiB per allocation")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--wait-stdin", action="store_true", help="start on a line of input")
    parser.add_argument("--name", help="process name to take (Linux prctl), for killers by name")
    parser.add_argument("--spawn", nargs=argparse.REMAINDER, default=None)
    args = parser.parse_args()
    if args.name:
        set_name(args.name)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, report_peak_and_die)
    # A shell's background job starts with SIGINT ignored and its children inherit that;
    # the unload tests stop the hog with SIGINT, so it must take it whoever ran pytest.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if args.spawn:
        child = subprocess.Popen(args.spawn, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        report(f"child {child.pid}")
    if args.wait_stdin:
        report("waiting")
        sys.stdin.readline()
    grow(int(args.chunk * MIB), args.rate * MIB, int(args.limit * MIB), int(args.leave * MIB))
    if args.hold is not None:
        time.sleep(args.hold)  # holding memory for a while is the point of a hog
        return
    while True:
        time.sleep(3600)


def grow(chunk: int, rate: float, limit: int, leave: int = 0) -> None:
    blocks: list[bytes] = []
    taken, start = 0, time.monotonic()
    report(f"{start:.6f} 0")
    while taken + chunk <= limit and (not leave or available_bytes() - chunk > leave):
        delay = start + (taken + chunk) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        blocks.append(b"\x01" * chunk)  # written, so every page is resident
        taken += chunk
        report(f"{time.monotonic():.6f} {taken}")
    globals()["_kept"] = blocks


def report_peak_and_die(signum: int, frame: object) -> None:
    """Say this process's own peak RSS, then die of the signal as if it had no handler."""
    report(f"peak {peak_rss_bytes()}")
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def peak_rss_bytes() -> int:
    """``VmHWM``: the most this process has had resident since it started (its own mm)."""
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM")


def available_bytes() -> int:
    """MemAvailable, read without psutil so the hog starts fast and needs nothing."""
    with Path("/proc/meminfo").open(encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def set_name(name: str) -> None:
    import ctypes

    pr_set_name = 15
    ctypes.CDLL(None).prctl(pr_set_name, name.encode()[:15], 0, 0, 0)


def report(line: str) -> None:
    os.write(sys.stdout.fileno(), (line + "\n").encode())


if __name__ == "__main__":
    main()
