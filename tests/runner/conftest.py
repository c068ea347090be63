"""Fixtures of the runner tests: a tiny GGUF model (``make_child`` is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from yoyu.testing.tiny_models import TinyModel, write_tiny_model


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("runner-models") / "tiny.gguf")
