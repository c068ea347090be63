"""Fixtures of the runner tests: a tiny GGUF model and real memory-allocating children."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from yoyu.testing.tiny_models import TinyModel, write_tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monitor"))
from monitor_children import CHILD_SOURCE, MemoryChild


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("runner-models") / "tiny.gguf")


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
