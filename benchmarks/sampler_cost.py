"""What watching costs: the sampler's CPU time at 10 and 50 Hz on a real child process.

A child holds 256 MiB (every page touched) and waits; the sampler watches it
for ``--seconds`` at each rate. Two measures of the sampler's cost, as % of
one core:

* thread: CPU time of the sampler thread itself (``time.thread_time`` inside
  it, ``Sampler.cpu_seconds``), over wall time;
* process: this process's CPU time while sampling minus an idle stretch of
  the same length (catches costs outside the thread: the GIL, wake-ups).

Then the price of one sample, yoyu's /proc reader against the psutil calls a
script would use for the same figures (``virtual_memory``, ``swap_memory``,
``Process.children(recursive=True)`` and ``memory_full_info`` per process,
which is what gives USS and swap), measured in the same run, with the ratio.
The budget is 1 % of a core at 10 Hz.

    PYTHONPATH=src python benchmarks/sampler_cost.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from collections.abc import Callable

import psutil

from yoyu.monitor.sampler import Sampler

HOLDER = (
    "import sys; block = bytearray(256 << 20); block[::4096] = b'x' * len(block[::4096]);"
    " sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"
)
RATES_HZ = (10.0, 50.0)
BUDGET_PERCENT_AT_10_HZ = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling time per rate")
    parser.add_argument("--calls", type=int, default=2000, help="calls per per-sample timing")
    arguments = parser.parse_args()
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        report(child.pid, arguments.seconds, arguments.calls)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait()


def report(pid: int, seconds: float, calls: int) -> None:
    print(
        f"watching pid {pid} (256 MiB touched), {psutil.cpu_count()} cores, {seconds:g} s per rate"
    )
    print(
        f"one-time start, not counted below: import pynvml {one_time_nvml_import_ms():.1f} ms CPU"
    )
    idle_cpu_s = idle_process_cpu(seconds)
    print(
        f"{'rate':>6} {'samples':>8} {'thread %core':>13} {'process %core':>14} {'us/sample':>10}"
    )
    for rate_hz in RATES_HZ:
        thread_percent, process_percent, samples, per_sample_us = sample_for(
            pid, rate_hz, seconds, idle_cpu_s
        )
        print(
            f"{rate_hz:>5g}Hz {samples:>8} {thread_percent:>12.3f}% {process_percent:>13.3f}%"
            f" {per_sample_us:>10.1f}"
        )
        if rate_hz == 10.0:
            verdict = "within" if thread_percent < BUDGET_PERCENT_AT_10_HZ else "OVER"
            print(f"       {verdict} the {BUDGET_PERCENT_AT_10_HZ:g} % budget at 10 Hz")
    compare_with_psutil(pid, calls)


def one_time_nvml_import_ms() -> float:
    """The sampler's first reading imports pynvml; done here so the rates show steady state."""
    before = time.thread_time()
    try:
        importlib.import_module("pynvml")
    except ImportError:
        return 0.0
    return 1e3 * (time.thread_time() - before)


def idle_process_cpu(seconds: float) -> float:
    before = time.process_time()
    time.sleep(seconds)
    return time.process_time() - before


def sample_for(
    pid: int, rate_hz: float, seconds: float, idle_cpu_s: float
) -> tuple[float, float, int, float]:
    sampler = Sampler(lambda: [pid], rate_hz=rate_hz)
    cpu_before, wall_before = time.process_time(), time.monotonic()
    with sampler:
        time.sleep(seconds)
    wall_s = time.monotonic() - wall_before
    process_cpu_s = time.process_time() - cpu_before - idle_cpu_s
    count = len(sampler.samples())
    thread_percent = 100 * sampler.cpu_seconds / wall_s
    return thread_percent, 100 * process_cpu_s / wall_s, count, 1e6 * sampler.cpu_seconds / count


def compare_with_psutil(pid: int, calls: int) -> None:
    sampler = Sampler(lambda: [pid], gpus=False, smaps_interval_s=None)
    yoyu_us = thread_cost_us(sampler.sample_now, calls)
    psutil_us = thread_cost_us(lambda: psutil_sample(pid), calls)
    full_info_us = thread_cost_us(lambda: psutil.Process(pid).memory_full_info(), calls)
    smaps_us = thread_cost_us(lambda: Sampler(lambda: [pid], gpus=False).sample_now(), calls // 4)
    print("\nper sample, CPU time in this thread:")
    print(f"  yoyu /proc sample (no smaps)            {yoyu_us:9.1f} us")
    print(f"  yoyu sample with smaps_rollup (USS/PSS) {smaps_us:9.1f} us  (every 5 s by default)")
    print(f"  psutil equivalent sample                {psutil_us:9.1f} us")
    print(f"    of which Process.memory_full_info     {full_info_us:9.1f} us")
    print(f"  psutil / yoyu                           {psutil_us / yoyu_us:9.1f} x")
    for rate_hz in RATES_HZ:
        print(
            f"  at {rate_hz:g} Hz: yoyu {yoyu_us * rate_hz / 1e4:.3f} % of a core,"
            f" psutil {psutil_us * rate_hz / 1e4:.3f} %"
        )


def psutil_sample(pid: int) -> None:
    psutil.virtual_memory()
    psutil.swap_memory()
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        process.memory_full_info()


def thread_cost_us(function: Callable[[], object], calls: int) -> float:
    function()
    before = time.thread_time()
    for _ in range(calls):
        function()
    return 1e6 * (time.thread_time() - before) / calls


if __name__ == "__main__":
    main()
