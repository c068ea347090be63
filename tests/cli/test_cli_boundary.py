"""The CLI's promise for user mistakes: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_yoyu(*args: str, env_home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YOYU_HOME": str(env_home / "yoyu"), "HOME": str(env_home)}
    return subprocess.run(
        [sys.executable, "-m", "yoyu", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_config_typo_is_one_line_and_exit_2(isolated_home: Path) -> None:
    config = isolated_home / "yoyu" / "yoyu.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[modles]\npaths = []\n", encoding="utf-8")
    result = run_yoyu("doctor", env_home=isolated_home)
    assert_one_line_error(result, "unknown section [modles]")


@pytest.mark.slow
def test_unknown_model_is_one_line_and_exit_2(isolated_home: Path) -> None:
    result = run_yoyu("inspect", "no-such-model:7b", env_home=isolated_home)
    assert_one_line_error(result, "no-such-model:7b")


@pytest.mark.slow
def test_truncated_gguf_is_one_line_and_exit_2(isolated_home: Path) -> None:
    broken = isolated_home / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00\x05")
    result = run_yoyu("inspect", str(broken), env_home=isolated_home)
    assert_one_line_error(result, "broken.gguf")


@pytest.mark.slow
def test_unknown_option_is_a_usage_error_with_exit_2(isolated_home: Path) -> None:
    result = run_yoyu("doctor", "--no-such-flag", env_home=isolated_home)
    assert result.returncode == 2
    assert "No such option" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["doctor", "machine", "inspect", "models", "plan"])
def test_every_command_has_help(command: str, isolated_home: Path) -> None:
    result = run_yoyu(command, "--help", env_home=isolated_home)
    assert result.returncode == 0, result.stderr
    assert "--json" in result.stdout


@pytest.mark.slow
def test_doctor_with_no_models_names_the_config_section_to_use(isolated_home: Path) -> None:
    result = run_yoyu("doctor", env_home=isolated_home)
    assert result.returncode == 0, result.stderr
    assert "[models] paths in yoyu.toml" in " ".join(result.stdout.split())
