"""Fixtures of the monitor tests: real memory-allocating children (see monitor_children)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from monitor_children import CHILD_SOURCE, MemoryChild


@pytest.fixture
def make_child(tmp_path: Path) -> Iterator[Callable[[int], MemoryChild]]:
    """Start children growing ``step_mib`` per step; all are stopped after the test."""
    script = tmp_path / "memory_child.py"
    script.write_text(CHILD_SOURCE, encoding="utf-8")
    started: list[MemoryChild] = []

    def start(step_mib: int) -> MemoryChild:
        child = MemoryChild(script, step_mib)
        started.append(child)
        return child

    yield start
    for child in started:
        child.quit()
