"""Waiting for something another process or thread will do: polled, with a deadline.

A test that sleeps a fixed time passes on a fast machine and fails on a slow
one; a test that polls forever hangs CI. ``wait_until`` polls a condition
until it holds and fails with the thing it waited for named, so every
deadline loop in the tests reads as one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

Value = TypeVar("Value")

POLL_S = 0.02


class WaitTimeout(AssertionError):  # noqa: N818 (read as "a wait timed out")
    """The condition did not hold in time (an AssertionError: pytest shows it as a failure)."""


def wait_until(
    condition: Callable[[], Value], timeout_s: float, what: str, poll_s: float = POLL_S
) -> Value:
    """The first truthy value ``condition`` returns, polled every ``poll_s`` for ``timeout_s``.

    ``condition`` may raise to give up early (a process that exited will never
    become ready); the exception passes through unchanged.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"waited {timeout_s:g} s for {what}")
        time.sleep(poll_s)
