"""``yoyu migrate`` end to end: a migration killed with SIGKILL while the new model is
loaded leaves its engine behind; ``--status`` shows where it stopped, ``--resume``
stops that engine and finishes, ``--rollback`` restores the alias. Bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_run_cli import YoyuCli

from yoyu.testing.tiny_models import TinyModel, write_tiny_model
from yoyu.testing.waiting import wait_until
from yoyu.toml import load_toml

DEADLINE_S = 60.0
# A budget well above the engine (~100 MiB), so other programs on a shared machine do not
# count against it enough to reach the floors (4 GiB and 2 GiB under 8 GiB).
SMALL_MACHINE = ("--budget", "8GiB", "--min-available", "256MiB", "--max-tokens", "8")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    folder = tmp_path_factory.mktemp("migrate-models")
    return {name: write_tiny_model(folder / f"{name}.gguf") for name in ("small", "big")}


@pytest.fixture
def config(isolated_home: Path, models: dict[str, TinyModel]) -> Path:
    path = isolated_home / "yoyu" / "yoyu.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '[backends.local]\nkind = "llama.cpp"\n\n'
        f'[served.small]\nbackend = "local"\npath = "{models["small"].path}"\n\n'
        '[aliases]\ncoder = "small"  # mine\n',
        encoding="utf-8",
    )
    return path


def current_state(home: Path) -> dict[str, Any] | None:
    migrations = home / "yoyu" / "data" / "migrations"
    try:
        folder = (migrations / "current").read_text(encoding="utf-8").strip()
        state: dict[str, Any] = json.loads((migrations / folder / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state


def wait_for_soak_engine(home: Path, process: subprocess.Popen[bytes]) -> int:
    """The engine pid once the soak has the model loaded (polled, with a deadline)."""

    def soak_engine_pid() -> int | None:
        state = current_state(home)
        if state and state["phase"] == "soak" and state["engine"]:
            return int(state["engine"]["pid"])
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        return None

    return wait_until(soak_engine_pid, DEADLINE_S, "the soak to load the model", poll_s=0.05)


@pytest.mark.slow
def test_killed_mid_soak_then_status_resume_and_rollback(
    config: Path, isolated_home: Path, models: dict[str, TinyModel],
    yoyu_cli: YoyuCli,
) -> None:  # fmt: skip
    before = config.read_text(encoding="utf-8")
    command = [
        sys.executable, "-m", "yoyu", "migrate", str(models["big"].path), "--alias", "coder",
        "--soak", "10m", *SMALL_MACHINE, "--json",
    ]  # fmt: skip
    with subprocess.Popen(command, env=os.environ.copy(), stderr=subprocess.PIPE) as process:
        try:
            engine = wait_for_soak_engine(isolated_home, process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert psutil.pid_exists(engine)  # a killed process cleans up nothing

    code, out, _ = yoyu_cli("migrate", "--status", "--json")
    status = json.loads(out)
    assert code == 0 and status["phase"] == "soak"
    assert status["display_status"].startswith("interrupted")
    assert status["phases"]["smoke"]["passed"] is True

    code, out, _ = yoyu_cli("migrate", "--resume", "--soak", "1s", "--json")
    resumed = json.loads(out)
    assert code == 0 and resumed["status"] == "promoted", resumed["reasons"]
    assert not psutil.pid_exists(engine) or psutil.Process(engine).status() == "zombie"
    assert load_toml(config)["routes"][load_toml(config)["aliases"]["coder"]]["chain"] == [
        "big", "small",
    ]  # fmt: skip
    assert Path(resumed["report"]).is_file()

    code, out, _ = yoyu_cli("migrate", "--rollback", "--json")
    assert code == 1 and json.loads(out)["status"] == "rolled_back"
    assert config.read_text(encoding="utf-8") == before


def test_bad_input_is_one_line(config: Path, yoyu_cli: YoyuCli) -> None:
    code, _, err = yoyu_cli("migrate", "--status")
    assert code == 2 and "no migration has been started" in err
    code, _, err = yoyu_cli("migrate", "--resume", "--rollback")
    assert code == 2 and "cannot be combined" in err
    code, _, err = yoyu_cli("migrate", "big.gguf")
    assert code == 2 and "--alias NAME" in err
    code, _, err = yoyu_cli("migrate", "big.gguf", "--alias", "coder", "--budget", "lots")
    assert code == 2 and "--budget" in err
