"""Real runs on a tiny model through the managed engine, then `yoyu plan` with the same
settings: the newest run's measured peak and the engine's residual appear in the plan
(read from the run store), and `--no-history` leaves them out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from yoyu.monitor.store import RunStore
from yoyu.runner.history import measured_runs
from yoyu.testing.tiny_models import write_tiny_model

YoyuCli = Callable[..., tuple[int, str, str]]  # the yoyu_cli fixture (tests/conftest.py)
SETTINGS = ["--ctx", "256", "--batch", "64"]


@pytest.mark.slow
def test_the_plan_shows_what_runs_with_the_same_settings_measured(
    tmp_path: Any, yoyu_cli: YoyuCli
) -> None:
    model = str(write_tiny_model(tmp_path / "tiny.gguf").path)
    run_ids = []
    for _ in range(3):
        code, out, err = yoyu_cli("run", model, "Say hi", *SETTINGS, "--max-tokens", "4",
                                  "--json")  # fmt: skip
        assert code == 0, err
        run_ids.append(json.loads(out)["run_id"])
    with RunStore() as store:
        runs = measured_runs(store)
    assert sorted(run.run_id for run in runs) == sorted(run_ids)
    assert all(run.peak_rss_bytes > 0 and run.predicted_host_bytes > 0 for run in runs)
    code, out, _ = yoyu_cli("plan", model, *SETTINGS, "--json")
    assert code == 0
    plan = json.loads(out)
    same = plan["history"]["same_settings"]
    newest = max(runs, key=lambda run: run.run_id)
    assert same["run_id"] == newest.run_id and same["peak_rss_bytes"] == newest.peak_rss_bytes
    residual = plan["history"]["residual"]
    assert residual["runs"] == 3 and residual["low"] <= residual["median"] <= residual["high"]
    assert any(f"(run {newest.run_id}) with these settings" in note for note in plan["notes"])
    applied = any("added to the CPU" in note for note in plan["notes"])
    assert applied == residual["applied"] == (residual["median"] > 1.01)
    code, out, _ = yoyu_cli("plan", model, "--ctx", "512", "--batch", "64", "--json")
    assert json.loads(out)["history"]["same_settings"] is None  # other settings
    code, out, _ = yoyu_cli("plan", model, *SETTINGS, "--no-history", "--json")
    quiet = json.loads(out)
    assert quiet["history"] is None and not any("measured" in note for note in quiet["notes"])
