"""`yoyu machine`: JSON that validates, readable tables, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from yoyu.cli import main

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src"
Validate = Callable[[Any], None]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exit_request:
        code = int(exit_request.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_of_this_machine_validates(
    capsys: pytest.CaptureFixture[str], validate_machine: Validate
) -> None:
    code, out, _ = run_main(["machine", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["source"] == "probe"
    validate_machine(data)


def test_json_of_a_preset(capsys: pytest.CaptureFixture[str], validate_machine: Validate) -> None:
    code, out, _ = run_main(["machine", "--preset", "linux-rtx4090-24g", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["source"] == "preset:linux-rtx4090-24g"
    assert data["gpus"][0]["total_bytes"] == 24564 * 1024**2
    validate_machine(data)


def test_table_of_a_mac_preset_shows_the_working_set(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["machine", "--preset", "macbook-pro-m4-max-128g"], capsys)
    assert code == 0
    assert "Apple M4 Max" in out
    assert "GPU working set" in out
    assert "96.00 GiB" in out  # 3/4 of 128 GiB, formatted by yoyu.units.format_bytes
    assert "546.0 GB/s" in out


def test_table_of_an_nvidia_preset(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["machine", "--preset", "server-h100-80g"], capsys)
    assert code == 0
    assert "NVIDIA H100 80GB HBM3" in out
    assert "79.65 GiB" in out  # 81559 MiB
    assert "3352.3 GB/s" in out


def test_table_of_this_machine_lists_runtimes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["machine"], capsys)
    assert code == 0
    assert "RAM" in out and "GiB" in out
    assert "llama-cpp-python" in out


def test_list_presets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["machine", "--list-presets", "--json"], capsys)
    assert code == 0
    names = {entry["name"] for entry in json.loads(out)}
    assert {"mac-studio-m2-max-32g", "server-h100-80g", "linux-rtx5060ti-16g"} <= names
    code, out, _ = run_main(["machine", "--list-presets"], capsys)
    assert code == 0 and "mac-studio-m3-ultra-512g" in out


def test_unknown_preset_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["machine", "--preset", "nope"], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("error: unknown machine preset 'nope'")
    assert err.count("\n") == 1


@pytest.mark.slow
def test_unknown_preset_in_a_real_process(isolated_home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT), "YOYU_HOME": str(isolated_home / "yoyu")}
    result = subprocess.run(
        [sys.executable, "-m", "yoyu", "machine", "--preset", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_json_in_a_real_process(isolated_home: Path, validate_machine: Validate) -> None:
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT), "YOYU_HOME": str(isolated_home / "yoyu")}
    result = subprocess.run(
        [sys.executable, "-m", "yoyu", "machine", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    validate_machine(json.loads(result.stdout))
