"""Files the remote tests serve: the real Gemma, real-shape sparse models, tiny ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoyu.remote import download, range_file
from yoyu.testing.sparse_models import SparseModel, write_sparse_model
from yoyu.testing.tiny_models import write_tiny_model


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries happen at once here (the pause is for real networks, not for the result)."""
    monkeypatch.setattr(range_file, "RETRY_PAUSE_S", 0.0)
    monkeypatch.setattr(download, "RETRY_PAUSE_S", 0.0)


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A tiny llama GGUF (a few hundred KiB, real data) named as a Q8_0 release."""
    return write_tiny_model(tmp_path / "tiny-llama-Q8_0.gguf", "llama", weight_type="Q8_0").path


@pytest.fixture(scope="session")
def sparse_70b(tmp_path_factory: pytest.TempPathFactory) -> SparseModel:
    """Llama-3.1-70B Q4_K_M's real header and table, 42.52 GB apparent, a few MiB on disk."""
    return write_sparse_model(tmp_path_factory.mktemp("sparse-70b"), "llama-3.1-70b-q4_k_m")


@pytest.fixture(scope="session")
def sparse_deepseek(tmp_path_factory: pytest.TempPathFactory) -> SparseModel:
    """DeepSeek-V3 Q4_K_M in its release's 9 parts (404 GB apparent)."""
    return write_sparse_model(tmp_path_factory.mktemp("sparse-dsv3"), "deepseek-v3-q4_k_m")
