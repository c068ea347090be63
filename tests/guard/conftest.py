"""Real memory-taking children for the guard tests (see yoyu/testing/memory_hog.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from yoyu.testing import memory_hog
from yoyu.testing.waiting import WaitTimeout, wait_until

HOG = Path(memory_hog.__file__)
MIB = 1024**2


@dataclass
class Hog:
    """A running memory_hog.py; ``finish`` reaps it and reports its peak RSS (the hog's own
    ``peak`` line, printed as SIGTERM arrives; None when it died otherwise)."""

    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        self.lines.append(line)
        return line

    def read_until_taken(self, amount: int) -> None:
        """Read the hog's reports until it has taken ``amount`` bytes (it must be a level)."""
        while not (line := self.read_line()).endswith(f" {amount}"):
            assert line, f"the hog ended before taking {amount} bytes"

    def finish(self, timeout_s: float) -> int | None:
        """Wait (polling, with a deadline) for the hog to end; its status or None if it did not."""
        with contextlib.suppress(WaitTimeout):
            wait_until(self._reaped, timeout_s, "the hog to end", poll_s=0.01)
            return self.returncode
        return None

    def _reaped(self) -> bool:
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid != self.pid:
            return False
        self.returncode = os.waitstatus_to_exitcode(status)
        self.process.returncode = self.returncode
        self._drain()
        peaks = [line.split()[1] for line in self.lines if line.startswith("peak ")]
        self.peak_rss_bytes = int(peaks[-1]) if peaks else None
        return True

    def taken_levels(self) -> list[tuple[float, int]]:
        """(monotonic time, bytes taken) as the hog reported them."""
        levels = []
        for line in self.lines:
            parts = line.split()
            if len(parts) == 2 and parts[0][0].isdigit():
                levels.append((float(parts[0]), int(parts[1])))
        return levels

    def achieved_rate_mib_s(self) -> float | None:
        levels = self.taken_levels()
        if len(levels) < 2 or levels[-1][0] <= levels[0][0]:
            return None
        return (levels[-1][1] - levels[0][1]) / (levels[-1][0] - levels[0][0]) / MIB

    def _drain(self) -> None:
        if self.process.stdout is not None:
            self.lines.extend(self.process.stdout.read().decode().split("\n"))
            self.process.stdout.close()


@pytest.fixture
def start_hog() -> Iterator[Callable[..., Hog]]:
    """Start hogs (``start_hog(rate_mib_s, "--limit", "96", ...)``); all are killed afterwards."""
    started: list[Hog] = []

    def start(rate_mib_s: float, *options: str) -> Hog:
        process = subprocess.Popen(
            [sys.executable, str(HOG), str(rate_mib_s), *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        hog = Hog(process)
        started.append(hog)
        return hog

    yield start
    for hog in started:
        if hog.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hog.pid, signal.SIGKILL)
            hog.process.wait()
        for pipe in (hog.process.stdin, hog.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
