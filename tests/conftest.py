"""Every test runs against an empty, private home: no user config, model
store or cache on the developer's machine can change a result."""

from __future__ import annotations

from pathlib import Path

import pytest

_ISOLATED_VARIABLES = (
    "YOYU_CONFIG",
    "YOYU_MODEL_PATHS",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "OLLAMA_HOST",
)


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("YOYU_HOME", str(home / "yoyu"))
    monkeypatch.setenv("OLLAMA_MODELS", str(home / "ollama" / "models"))
    monkeypatch.setenv("HF_HOME", str(home / "huggingface"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "huggingface" / "hub"))
    monkeypatch.setenv("HOME", str(home))
    for name in _ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return home
