"""``yoyu fit`` end to end, as a user runs it (a fresh process): the table, JSON that
carries every row, the filters, and one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema" / "fit.schema.json"


def run_fit(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YOYU_HOME": str(home / "yoyu"), "HOME": str(home), "COLUMNS": "140"}
    return subprocess.run(
        [sys.executable, "-m", "yoyu", "fit", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_the_table_ranks_what_runs_on_a_preset(isolated_home: Path) -> None:
    result = run_fit("--machine", "linux-rtx4090-24g", "--family", "qwen3", home=isolated_home)
    assert result.returncode == 0, result.stderr
    assert "run on linux-rtx4090-24g" in result.stdout
    assert "qwen3:30b-a3b" in result.stdout and "qwen3:235b-a22b" not in result.stdout
    with_unfit = run_fit("--machine", "linux-rtx4090-24g", "--family", "qwen3", "--all",
                         home=isolated_home)  # fmt: skip
    assert "qwen3:235b-a22b" in with_unfit.stdout and "does not fit" in with_unfit.stdout


@pytest.mark.slow
def test_json_carries_every_row_with_its_figures(isolated_home: Path) -> None:
    result = run_fit("--machine", "mac-studio-m2-max-32g", "--use", "embedding", "--json",
                     home=isolated_home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert report["machine"] == "mac-studio-m2-max-32g"
    assert report["filters"]["use"] == "embedding"
    names = {row["model"] for row in report["models"]}
    assert {"nomic-embed-text:137m", "bge-m3:567m"} <= names
    for row in report["models"]:
        assert "embedding" in row["uses"] and row["ctx"] > 0 and row["decode_tps"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--use", "poetry"), "unknown --use 'poetry'"),
        (("--max-size", "big"), "--max-size 'big' is not a size"),
        (("--machine", "no-such-box"), "no-such-box"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: tuple[str, ...], message: str, isolated_home: Path
) -> None:
    result = run_fit(*args, home=isolated_home)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
