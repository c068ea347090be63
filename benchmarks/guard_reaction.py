"""How fast the guard stops a memory ramp, beside earlyoom on the same ramp.

    python benchmarks/guard_reaction.py [--rates 200,1024,4096] [--repeats 3] [--budget-mib 1024]
                                        [--from-idle]

Scenario: a real process (yoyu/testing/memory_hog.py) takes memory at a set rate
(MiB/s; the rate it achieved is printed too, since a small machine may not reach
the fastest). Neither guard is allowed to act on the real 24 GiB: both are given
a budget B, "act as if only B were available when you started".

yoyu: ``Guard`` with ``budget=B`` and default floors (caution B/2, abort B/4,
lead time 1 s). It samples at 50 Hz while memory moves or lies within 1 GiB of
caution, which under the default B always holds, and at 4 Hz otherwise; with
``--budget-mib 4096 --from-idle`` the hog starts once the guard has slowed down
to 4 Hz, so the reaction includes catching the ramp from idle. Its *prediction
point* is the moment the hog's memory reached ``B - abort - rate x lead``: from
there on a trend that reaches the abort floor within the lead time exists.
Reaction = prediction point -> the hog's exit (os.wait4 in the parent); negative
when the guard stopped the hog before that point (the machine's available memory
fell faster than the hog's own growth: other processes, kernel overhead).
"decision->gone" is the guard's own SIGTERM decision -> the hog's exit. "budget
left" below 0 means the budget was overrun.

earlyoom (Debian's 1.7, installed with apt-get): its documented defaults are
SIGTERM below 10 % available and SIGKILL below 5 % (PERCENT/2), of total memory.
Its percent flags are of the machine's total, so the budget is expressed with
its absolute flag instead: ``-M`` = (available at start - 90 % of B) KiB, kill
at (available at start - 95 % of B), i.e. its default 10 %/5 % of the budget;
``-s 100`` since this machine has no swap (earlyoom acts only when both are
low). It runs in its own PID namespace (``unshare --pid``) with only the hog,
so it cannot pick another process on this shared machine. Its trigger point
is the moment the hog crossed 90 % of B; reaction = that -> the hog's exit.

Prints one row per tool and rate (median over repeats) and the ratio of
reaction times, earlyoom / yoyu.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory

from yoyu.guard import AuditLog, Guard, GuardPolicy, ProcessTarget
from yoyu.testing import memory_hog

HOG = Path(memory_hog.__file__)
MIB = 1024**2
HOLD_LIMIT_MIB = 4096  # a hog nobody stops takes this much, then holds (and the run times out)
RUN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RunResult:
    tool: str
    rate_mib_s: int
    achieved_mib_s: float
    trigger_mib: float  # memory the hog had at the trigger point
    taken_at_exit_mib: float  # the hog's last reported level
    peak_rss_mib: float
    reaction_s: float | None  # trigger point -> hog gone; negative: stopped before that point
    decision_to_gone_s: float | None  # yoyu: its SIGTERM decision -> hog gone
    status: int


def parse_levels(lines: list[str]) -> list[tuple[float, int]]:
    levels = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0][:1].isdigit():
            levels.append((float(parts[0]), int(parts[1])))
    return levels


def time_reached(levels: list[tuple[float, int]], amount: float) -> float | None:
    """When the hog's memory first reached ``amount`` (interpolated between reports)."""
    if amount <= 0:
        return levels[0][0]
    for (t0, v0), (t1, v1) in itertools.pairwise(levels):
        if v1 >= amount:
            return t0 + (t1 - t0) * (amount - v0) / max(1, v1 - v0)
    return None


def achieved_rate(levels: list[tuple[float, int]]) -> float:
    if len(levels) < 2 or levels[-1][0] <= levels[0][0]:
        return 0.0
    return (levels[-1][1] - levels[0][1]) / (levels[-1][0] - levels[0][0]) / MIB


def hog_argv(rate_mib_s: int) -> list[str]:
    return [sys.executable, str(HOG), str(rate_mib_s), "--limit", str(HOLD_LIMIT_MIB),
            "--name", "memhog"]  # fmt: skip


def run_yoyu(rate_mib_s: int, budget: int, audit_dir: Path, from_idle: bool) -> RunResult:
    policy = GuardPolicy(budget_bytes=budget, grace_s=1.0)
    floors = policy.resolve(budget * 2)
    target = ProcessTarget()
    with Guard(target, policy, audit=AuditLog(audit_dir / "guard.jsonl")) as guard:
        if from_idle:
            _wait_idle(guard)
        process = subprocess.Popen(hog_argv(rate_mib_s), stdout=subprocess.PIPE)
        target.set_pids(process.pid)
        lines, status, peak, gone = _wait_reading(process)
    levels = parse_levels(lines)
    rate = achieved_rate(levels)
    trigger = budget - floors.abort_bytes - rate * MIB * floors.lead_time_s
    decided = next((r.t_s for r in guard.actions if r.kind in ("terminate", "kill")), None)
    result = _result("yoyu", rate_mib_s, levels, max(0.0, trigger), peak, gone, status)
    return replace(result, decision_to_gone_s=None if decided is None else gone - decided)


def _wait_idle(guard: Guard) -> None:
    """Until the guard samples at its idle pace (it starts fast); a RuntimeError if it
    stays fast, as it does while memory moves or lies near the caution floor."""
    deadline = time.monotonic() + 30.0
    while guard.interval_s != guard.policy.idle_interval_s:
        if time.monotonic() > deadline:
            raise RuntimeError("the guard never slowed down: raise --budget-mib")
        time.sleep(0.05)


def run_earlyoom(rate_mib_s: int, budget: int) -> RunResult:
    available_kib = _available_kib()
    term_kib = available_kib - int(budget * 0.90) // 1024
    kill_kib = available_kib - int(budget * 0.95) // 1024
    earlyoom = [shutil.which("earlyoom") or "earlyoom", "-M", f"{term_kib},{kill_kib}",
                "-s", "100", "-r", "0", "--prefer", "^memhog$"]  # fmt: skip
    wrapper = [sys.executable, "-c", _NAMESPACE_WRAPPER, json.dumps(earlyoom),
               json.dumps(hog_argv(rate_mib_s))]  # fmt: skip
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", *wrapper],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S + 10, check=True,
    )  # fmt: skip
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    levels = parse_levels(outcome["lines"])
    return _result("earlyoom", rate_mib_s, levels, budget * 0.90, outcome["peak"],
                   outcome["gone"], outcome["status"])  # fmt: skip


def _result(
    tool: str,
    rate_mib_s: int,
    levels: list[tuple[float, int]],
    trigger_bytes: float,
    peak: int,
    gone: float,
    status: int,
) -> RunResult:
    reached = time_reached(levels, trigger_bytes)
    rate = achieved_rate(levels) * MIB
    if reached is None and levels and rate > 0:  # stopped before: where the ramp would have been
        reached = levels[0][0] + trigger_bytes / rate
    return RunResult(
        tool=tool,
        rate_mib_s=rate_mib_s,
        achieved_mib_s=achieved_rate(levels),
        trigger_mib=trigger_bytes / MIB,
        taken_at_exit_mib=(levels[-1][1] if levels else 0) / MIB,
        peak_rss_mib=peak / MIB,
        reaction_s=None if reached is None else gone - reached,
        decision_to_gone_s=None,
        status=status,
    )


def _wait_reading(process: subprocess.Popen[bytes]) -> tuple[list[str], int, int, float]:
    """Read the hog's reports while waiting for it; (lines, status, peak RSS bytes, exit time)."""
    lines: list[str] = []
    stdout = process.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(stdout.read().decode().split("\n")))
    reader.start()
    killer = threading.Timer(RUN_TIMEOUT_S, process.kill)
    killer.start()
    _, status, usage = os.wait4(process.pid, 0)
    gone = time.monotonic()
    killer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    stdout.close()
    return lines, process.returncode, usage.ru_maxrss * 1024, gone


def _available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


# Runs as pid 1 of a fresh PID namespace: start earlyoom, wait until it is watching,
# start the hog, wait for it, print what happened as JSON.
_NAMESPACE_WRAPPER = r"""
import json, os, subprocess, sys, threading, time
earlyoom = subprocess.Popen(json.loads(sys.argv[1]), stderr=subprocess.PIPE, text=True)
banner = []
while True:
    line = earlyoom.stderr.readline()
    banner.append(line)
    if not line or "sending SIGTERM" in line or "SIGTERM when" in line:
        break
threading.Thread(target=lambda: banner.extend(earlyoom.stderr), daemon=True).start()
hog = subprocess.Popen(json.loads(sys.argv[2]), stdout=subprocess.PIPE)
lines = []
reader = threading.Thread(target=lambda: lines.extend(hog.stdout.read().decode().split("\n")))
reader.start()
killer = threading.Timer(30.0, hog.kill); killer.start()
_, status, usage = os.wait4(hog.pid, 0)
gone = time.monotonic()
killer.cancel()
reader.join()
earlyoom.terminate(); earlyoom.wait()
print(json.dumps({"lines": lines, "status": os.waitstatus_to_exitcode(status),
                  "peak": usage.ru_maxrss * 1024, "gone": gone, "banner": banner[:6]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,1024,4096", help="MiB/s, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-mib", type=int, default=1024)
    parser.add_argument(
        "--from-idle", action="store_true", help="start each ramp once the guard is idle"
    )
    args = parser.parse_args()
    budget = args.budget_mib * MIB
    rates = [int(rate) for rate in args.rates.split(",")]
    has_earlyoom = shutil.which("earlyoom") is not None and shutil.which("unshare") is not None
    if not has_earlyoom:
        print("earlyoom or unshare not found: showing yoyu alone (apt-get install earlyoom)")
    results: list[RunResult] = []
    with TemporaryDirectory() as folder:
        for rate in rates:
            for _ in range(args.repeats):
                results.append(run_yoyu(rate, budget, Path(folder), args.from_idle))
                if has_earlyoom:
                    results.append(run_earlyoom(rate, budget))
    print_table(results, budget, rates)


def print_table(results: list[RunResult], budget: int, rates: list[int]) -> None:
    print(f"budget {budget / MIB:.0f} MiB; yoyu abort floor {budget / 4 / MIB:.0f} MiB "
          f"(B/4, lead 1 s); earlyoom TERM/KILL at 10 %/5 % of B; medians")  # fmt: skip
    header = ("tool", "rate", "achieved", "trigger at", "taken at exit", "peak RSS",
              "budget left", "reaction", "decision->gone", "status")  # fmt: skip
    print(" | ".join(header))
    medians: dict[tuple[str, int], float] = {}
    for rate in rates:
        for tool in ("yoyu", "earlyoom"):
            runs = [r for r in results if r.tool == tool and r.rate_mib_s == rate]
            if not runs:
                continue
            reactions = [r.reaction_s for r in runs if r.reaction_s is not None]
            reaction = statistics.median(reactions) if reactions else None
            if reaction is not None:
                medians[(tool, rate)] = reaction
            peak = statistics.median(r.peak_rss_mib for r in runs)
            print(" | ".join([
                tool, f"{rate} MiB/s",
                f"{statistics.median(r.achieved_mib_s for r in runs):.0f} MiB/s",
                f"{statistics.median(r.trigger_mib for r in runs):.0f} MiB",
                f"{statistics.median(r.taken_at_exit_mib for r in runs):.0f} MiB",
                f"{peak:.0f} MiB", f"{budget / MIB - peak:.0f} MiB",
                "-" if reaction is None else f"{reaction * 1000:.0f} ms",
                _median_ms([r.decision_to_gone_s for r in runs]),
                ",".join(sorted({str(r.status) for r in runs})),
            ]))  # fmt: skip
    for rate in rates:
        if ("yoyu", rate) in medians and ("earlyoom", rate) in medians and medians[("yoyu", rate)]:
            ratio = medians[("earlyoom", rate)] / medians[("yoyu", rate)]
            print(f"{rate} MiB/s: earlyoom reaction / yoyu reaction = {ratio:.2f}")


def _median_ms(values: list[float | None]) -> str:
    known = [value for value in values if value is not None]
    return f"{statistics.median(known) * 1000:.0f} ms" if known else "-"


if __name__ == "__main__":
    main()
