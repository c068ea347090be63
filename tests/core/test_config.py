from __future__ import annotations

import os
from pathlib import Path

import pytest

from yoyu.config import load_settings
from yoyu.errors import ConfigError


def write_config(home: Path, text: str) -> Path:
    path = home / "yoyu" / "yoyu.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_file_means_defaults() -> None:
    settings = load_settings()
    assert settings.config_path is None
    assert settings.model_paths == ()


def test_model_paths_from_file_then_environment(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(isolated_home, '[models]\npaths = ["~/models", "/srv/gguf"]\n')
    monkeypatch.setenv("YOYU_MODEL_PATHS", os.pathsep.join(["/a", "/b"]))
    settings = load_settings()
    assert settings.model_paths == (
        isolated_home / "models",
        Path("/srv/gguf"),
        Path("/a"),
        Path("/b"),
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[model]\npaths = []\n", "unknown section [model]"),
        ("[models]\npath = []\n", "unknown key 'path' in [models]"),
        ("[models]\npaths = '~/models'\n", "must be a list of strings"),
        ("[models\n", "not valid TOML"),
    ],
)
def test_config_mistakes_name_the_problem(isolated_home: Path, text: str, fragment: str) -> None:
    path = write_config(isolated_home, text)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert fragment in message
    assert str(path) in message
    assert "\n" not in message
