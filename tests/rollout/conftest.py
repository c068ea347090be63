"""Fixtures of the migration tests: two tiny GGUF models, a yoyu home with a yoyu.toml
whose alias points at the small one, and hooks that run the real llama-cpp-python engine."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from yoyu.backends.llamacpp_server import LlamaCppServerBackend, python_engine
from yoyu.rollout import Hooks
from yoyu.runner import SettlePolicy
from yoyu.testing.tiny_models import TinyModel, write_tiny_model

FAST_SETTLE = SettlePolicy(tolerance_bytes=1024**2, window_s=0.2, cap_s=3.0)
CONFIG = """\
# the user's own settings, kept as written
[backends.local]
kind = "llama.cpp"  # managed engine

[served.small]
backend = "local"
path = "{small}"

[aliases]
# what the agent asks for
coder = "small"
writer = "small"
"""


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    folder = tmp_path_factory.mktemp("rollout-models")
    return {name: write_tiny_model(folder / f"{name}.gguf") for name in ("small", "big")}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: dict[str, TinyModel]) -> Path:
    """YOYU_HOME with a yoyu.toml: ``coder`` and ``writer`` point at the small model."""
    monkeypatch.setenv("YOYU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("YOYU_CONFIG", raising=False)
    (tmp_path / "home").mkdir()
    config = tmp_path / "home" / "yoyu.toml"
    config.write_text(CONFIG.format(small=models["small"].path), encoding="utf-8")
    return config


def backend_factory(log_dir: Path) -> LlamaCppServerBackend:
    return LlamaCppServerBackend(
        engine=python_engine(), log_dir=log_dir, start_timeout_s=60, stop_grace_s=5
    )


@pytest.fixture
def hooks(tmp_path: Path) -> Hooks:
    return Hooks(
        backend_factory=functools.partial(backend_factory, tmp_path / "engine-logs"),
        settle=FAST_SETTLE,
    )


def running_children() -> list[psutil.Process]:
    """This test process's children still running (an engine left behind would be one)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture
def engine_children() -> Callable[[], list[psutil.Process]]:
    return running_children
