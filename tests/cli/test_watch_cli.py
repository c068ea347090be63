"""``yoyu watch --once`` / ``--json``: the same readings the live view refreshes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from yoyu.testing import memory_hog

HOG = Path(memory_hog.__file__)
MIB = 1024**2


def yoyu(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YOYU_HOME": str(home / "yoyu"), "HOME": str(home), "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "yoyu", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_json_shows_a_watched_tree_and_the_floors(isolated_home: Path) -> None:
    hog = subprocess.Popen([sys.executable, str(HOG), "1000", "--limit", "64"],
                           stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert hog.stdout is not None
        while not (line := hog.stdout.readline().decode()).endswith(f" {64 * MIB}\n"):
            assert line, "the hog ended before taking 64 MiB"
        result = yoyu("watch", "--json", "--pid", str(hog.pid), home=isolated_home)
    finally:
        hog.kill()
        hog.wait()
        if hog.stdout is not None:
            hog.stdout.close()
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["system"]["total_bytes"] > view["system"]["available_bytes"] > 0
    (tree,) = view["trees"]
    assert tree["pid"] == hog.pid and tree["rss_bytes"] >= 64 * MIB
    assert view["thresholds"]["abort_bytes"] < view["thresholds"]["caution_bytes"]
    assert view["level"] == "ok"


@pytest.mark.slow
def test_level_follows_the_floors_given(isolated_home: Path) -> None:
    result = yoyu("watch", "--json", "--caution", "99%", "--pid", "1", home=isolated_home)
    view = json.loads(result.stdout)
    assert view["level"] == "caution"
    assert "below the caution floor" in view["reason"]


@pytest.mark.slow
def test_once_prints_one_screen(isolated_home: Path) -> None:
    result = yoyu("watch", "--once", "--pid", "999999999", home=isolated_home)
    assert result.returncode == 0, result.stderr
    for heading in ("memory", "available", "caution", "abort", "engines", "no engine running"):
        assert heading in result.stdout


@pytest.mark.slow
def test_bad_interval_is_one_line(isolated_home: Path) -> None:
    result = yoyu("watch", "--interval", "0", home=isolated_home)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --interval 0.0 is out of range")
