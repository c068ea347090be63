"""``yoyu runs`` and ``yoyu runs show ID``: what a run stored, listed and shown."""

from __future__ import annotations

import json

import pytest
from test_run_cli import PHASES, SMALL, YoyuCli

from yoyu.testing.tiny_models import TinyModel, write_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("runs-models") / "tiny.gguf")


@pytest.mark.slow
def test_runs_lists_and_shows_a_stored_run(tiny: TinyModel, yoyu_cli: YoyuCli) -> None:
    code, out, _ = yoyu_cli("runs", "--json")
    assert code == 0 and json.loads(out) == []  # an empty store to begin with
    _, out, _ = yoyu_cli("run", str(tiny.path), "Say hi", *SMALL, "--json")
    run = json.loads(out)
    code, out, _ = yoyu_cli("runs", "--json")
    listed = json.loads(out)
    assert [r["id"] for r in listed] == [run["run_id"]]
    assert listed[0]["mode"] == "run" and listed[0]["result"]["text"] == run["text"]
    code, out, _ = yoyu_cli("runs", "show", str(run["run_id"]), "--json")
    shown = json.loads(out)
    assert shown["samples"] > 5
    kinds = [e["kind"] for e in shown["events"]]
    assert "guard.start" in kinds  # runs are guarded by default, and the guard logs there
    assert [kind for kind in kinds if not kind.startswith("guard.")][:2] == [
        "load_start",
        "load_end",
    ]
    # the profile rebuilt from stored samples is the one the run reported
    for phase in PHASES:
        assert shown["phases"][phase] == run["phases"][phase], phase
    code, out, _ = yoyu_cli("runs")
    assert (
        code == 0 and "yoyu tiny llama" in out and "1 turn " in out
    )  # ngettext: "1 turn", "2 turns"
    code, out, _ = yoyu_cli("runs", "show", str(run["run_id"]))
    assert code == 0 and f"run {run['run_id']}" in out and "Memory by phase" in out


def test_showing_an_unknown_run_is_one_line(yoyu_cli: YoyuCli) -> None:
    code, _, err = yoyu_cli("runs", "show", "999")
    assert code == 2 and "no run 999" in err and err.count("\n") == 1
