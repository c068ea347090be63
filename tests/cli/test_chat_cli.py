"""``yoyu chat`` fed from stdin with the real managed engine: answers, /stats, /quit."""

from __future__ import annotations

import io
import json

import pytest
from test_run_cli import PHASES, SMALL, YoyuCli

from yoyu.testing.tiny_models import TinyModel, write_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("chat-models") / "tiny.gguf")


@pytest.mark.slow
def test_chat_answers_each_line_and_stats_prints_the_last_profile(
    tiny: TinyModel, yoyu_cli: YoyuCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("/stats\nHello\n\n/stats\n/quit\nnever asked\n"))
    code, out, err = yoyu_cli("chat", str(tiny.path), *SMALL)
    assert code == 0
    assert "no answer yet" in err  # /stats before any answer
    assert out.count("Memory by phase (MiB)") == 1  # the one /stats after an answer
    assert "settled" in out and "Predicted vs measured" in out


@pytest.mark.slow
def test_chat_json_prints_one_line_per_turn(
    tiny: TinyModel, yoyu_cli: YoyuCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello\nAnd again\n"))  # ends at end of input
    code, out, _ = yoyu_cli("chat", str(tiny.path), *SMALL, "--json")
    assert code == 0
    turns = [json.loads(line) for line in out.splitlines()]
    assert [turn["turn"] for turn in turns] == [0, 1]
    for turn in turns:
        rss = {phase: turn["phases"][phase]["process_rss_bytes"] for phase in PHASES}
        assert rss["peak"] >= rss["loaded"] > rss["baseline"]
    # one load for the whole chat: the same loaded reading and run
    assert turns[0]["phases"]["loaded"] == turns[1]["phases"]["loaded"]
    assert turns[0]["run_id"] == turns[1]["run_id"]
    assert turns[1]["usage"]["prompt_tokens"] > turns[0]["usage"]["prompt_tokens"]  # history
