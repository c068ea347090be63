"""Real child processes that allocate memory when told to, over a pipe.

Each command is one byte on the child's stdin and is acknowledged with one
byte on its stdout once done, so a test knows the memory is touched (resident)
before it reads anything: no sleeping, no guessing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED_ROOT = FIXTURES / "linux_6_18_firecracker"
MIB = 1024**2

# g: allocate one more block of STEP MiB and touch every page; h: hold (no allocation);
# s: start a child that holds STEP MiB, reply with its pid; x: end the oldest child; q: quit.
CHILD_SOURCE = r"""
import os, subprocess, sys
step = int(sys.argv[1]) * 1024 * 1024
blocks, children = [], []
def touched(size):
    block = bytearray(size)
    for offset in range(0, size, 4096):
        block[offset] = 1
    return block
os.write(1, b"r")
while True:
    command = os.read(0, 1)
    if command in (b"", b"q"):
        break
    if command == b"g":
        blocks.append(touched(step))
    elif command == b"s":
        child = subprocess.Popen([sys.executable, sys.argv[0], sys.argv[1]],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        child.stdout.read(1); child.stdin.write(b"g"); child.stdin.flush(); child.stdout.read(1)
        children.append(child)
        os.write(1, str(child.pid).encode().rjust(10))
        continue
    elif command == b"x":
        child = children.pop(0)
        child.stdin.write(b"q"); child.stdin.flush(); child.wait()
    os.write(1, b"k")
for child in children:
    child.stdin.write(b"q"); child.stdin.flush(); child.wait()
"""


class MemoryChild:
    """A real process whose anonymous memory grows by ``step_mib`` per ``grow()``."""

    def __init__(self, script: Path, step_mib: int) -> None:
        self.step_bytes = step_mib * MIB
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(step_mib)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._expect(b"r")

    @property
    def pid(self) -> int:
        return self.process.pid

    def grow(self) -> None:
        self._send(b"g")

    def hold(self) -> None:
        self._send(b"h")

    def spawn_child(self) -> int:
        """Start a grandchild holding one step of memory; its pid."""
        self._write(b"s")
        assert self.process.stdout is not None
        return int(self.process.stdout.read(10))

    def end_oldest_child(self) -> None:
        self._send(b"x")

    def quit(self) -> None:
        if self.process.poll() is None:
            self._write(b"q")
            self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def _send(self, command: bytes) -> None:
        self._write(command)
        self._expect(b"k")

    def _write(self, command: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command)

    def _expect(self, reply: bytes) -> None:
        assert self.process.stdout is not None
        assert self.process.stdout.read(1) == reply
