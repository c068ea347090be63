"""``yoyu guard``'s contract, through the real console entry in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from yoyu.testing import memory_hog
from yoyu.testing.waiting import wait_until

HOG = Path(memory_hog.__file__)
GUARD_STOPPED_EXIT = 75


def yoyu(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YOYU_HOME": str(home / "yoyu"), "HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "yoyu", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_command_that_ends_by_itself_gives_its_own_status(isolated_home: Path) -> None:
    result = yoyu("guard", "--", sys.executable, "-c", "print('hi'); raise SystemExit(3)",
                  home=isolated_home)  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert result.stdout == "hi\n"
    assert result.stderr == ""


@pytest.mark.slow
def test_command_ended_by_a_signal_from_elsewhere_gives_128_plus_n(isolated_home: Path) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    result = yoyu("guard", "--", sys.executable, "-c", code, home=isolated_home)
    assert result.returncode == 128 + 15


@pytest.mark.slow
def test_hog_is_stopped_with_one_line_naming_floor_and_figure(isolated_home: Path) -> None:
    result = yoyu("guard", "--budget", "1GiB", "--grace", "1", "--", sys.executable, str(HOG),
                  "1024", "--limit", "2048", home=isolated_home)  # fmt: skip
    assert result.returncode == GUARD_STOPPED_EXIT, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("yoyu guard: stopped pid ")
    assert "abort floor" in last
    assert "available memory" in last and "MiB" in last
    log = yoyu("guard", "log", "--json", home=isolated_home)
    records = json.loads(log.stdout)
    assert records[0]["kind"] == "start"
    terminate = next(r for r in records if r["kind"] == "terminate")
    assert terminate["samples"] and terminate["detail"]["floor"] == "abort"
    table = yoyu("guard", "log", home=isolated_home)
    assert "terminate" in table.stdout


@pytest.mark.slow
def test_json_outcome(isolated_home: Path) -> None:
    result = yoyu("guard", "--json", "--budget", "1GiB", "--", sys.executable, str(HOG), "1024",
                  "--limit", "2048", home=isolated_home)  # fmt: skip
    assert result.returncode == GUARD_STOPPED_EXIT
    outcome = json.loads(result.stdout[result.stdout.index("{") :])
    assert outcome["stopped_by_guard"] is True
    assert outcome["trigger"]["floor"] == "abort"
    assert outcome["returncode"] == -15


@pytest.mark.slow
def test_bad_flag_is_one_line_and_exit_2(isolated_home: Path) -> None:
    result = yoyu("guard", "--abort", "5XB", "--", "true", home=isolated_home)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: --abort '5XB' is not a size")


@pytest.mark.slow
def test_floors_in_the_wrong_order_are_refused_before_the_command_runs(
    isolated_home: Path,
) -> None:
    marker = isolated_home / "ran"
    result = yoyu("guard", "--caution", "1GiB", "--abort", "2GiB", "--", "touch", str(marker),
                  home=isolated_home)  # fmt: skip
    assert result.returncode == 2
    assert "must be below the caution floor" in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_missing_command_and_unknown_command(isolated_home: Path) -> None:
    nothing = yoyu("guard", home=isolated_home)
    assert nothing.returncode == 2 and "give a command after --" in nothing.stderr
    missing = yoyu("guard", "--", "no-such-command-xyz", home=isolated_home)
    assert missing.returncode == 127
    assert (
        missing.stderr.strip()
        == "error: command not found: no-such-command-xyz; check the name or PATH"
    )


@pytest.mark.slow
def test_log_when_empty(isolated_home: Path) -> None:
    result = yoyu("guard", "log", "--json", home=isolated_home)
    assert result.returncode == 0 and json.loads(result.stdout) == []


@pytest.mark.slow
def test_pid_watches_an_existing_tree(isolated_home: Path) -> None:
    hog = subprocess.Popen([sys.executable, str(HOG), "1024", "--limit", "2048", "--wait-stdin"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert hog.stdout is not None and hog.stdin is not None
    assert hog.stdout.readline() == b"waiting\n"
    env = {**os.environ, "YOYU_HOME": str(isolated_home / "yoyu"), "HOME": str(isolated_home)}
    guard = subprocess.Popen(
        [sys.executable, "-m", "yoyu", "guard", "--budget", "1GiB", "--pid", str(hog.pid)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        audit = isolated_home / "yoyu" / "data" / "guard.jsonl"
        # The guard has taken its baseline once it logged its start.
        wait_until(audit.is_file, 20, "the guard to log its start")
        hog.stdin.write(b"go\n")
        hog.stdin.flush()
        _, stderr = guard.communicate(timeout=30)
        assert guard.returncode == GUARD_STOPPED_EXIT, stderr
        assert "abort floor" in stderr
        assert hog.wait(timeout=10) == -15
    finally:
        if psutil.pid_exists(hog.pid) and hog.poll() is None:
            hog.kill()
            hog.wait()
        guard.kill() if guard.poll() is None else None
        hog.stdin.close()
        hog.stdout.close()


@pytest.mark.slow
def test_pid_that_does_not_exist(isolated_home: Path) -> None:
    result = yoyu("guard", "--pid", "999999999", home=isolated_home)
    assert result.returncode == 2 and "no process 999999999" in result.stderr
