"""The fetch phase pulls an Ollama name that is not here yet from the fake Ollama
(real HTTP on 127.0.0.1; OLLAMA_HOST points at it), and checks the pulled size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from yoyu.backends.ollama import PullProgress
from yoyu.errors import BackendRequestError, ModelNotFoundError
from yoyu.guard import policy_from_settings
from yoyu.monitor.store import RunStore
from yoyu.rollout import phases
from yoyu.rollout.thresholds import MigrateThresholds
from yoyu.runner import DEFAULT_SETTINGS, RunConfig
from yoyu.testing.fake_ollama import FakeOllama

TARGET = "tinyfetch:1b"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, home: Path, tmp_path: Path) -> Iterator[FakeOllama]:
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "empty-ollama-store"))
    with FakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.base_url)
        yield server


def _fetch(tmp_path: Path, seen: list[PullProgress]) -> phases.PhaseRecord:
    with RunStore() as store:
        context = phases.Context(
            target=TARGET, config=RunConfig(TARGET, DEFAULT_SETTINGS),
            thresholds=MigrateThresholds(), policy=policy_from_settings(), store=store,
            folder=tmp_path, backend_factory=lambda: pytest.fail("fetch loads no model"),
            on_pull=seen.append,
        )  # fmt: skip
        return phases.fetch(context)


def test_fetch_pulls_a_missing_ollama_model_and_checks_its_size(
    fake: FakeOllama, tmp_path: Path
) -> None:
    fake.pullable(TARGET, size=637_000_000)
    seen: list[PullProgress] = []
    record = _fetch(tmp_path, seen)
    assert record.passed is True, record.reasons
    assert record.measurements["pulled_bytes"] == record.measurements["listed_bytes"]
    assert record.measurements["pulled_bytes"] == 637_000_000
    assert seen[0].status == "pulling manifest"
    assert seen[-1].status == "success"
    assert len(fake.requests_to("/api/pull")) == 1


def test_fetch_fails_with_ollamas_message_for_a_model_it_cannot_pull(
    fake: FakeOllama, tmp_path: Path
) -> None:
    with pytest.raises(BackendRequestError, match="file does not exist"):
        _fetch(tmp_path, [])


def test_fetch_without_a_reachable_ollama_keeps_the_not_found_error(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "empty-ollama-store"))
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    with pytest.raises(ModelNotFoundError, match=TARGET):
        _fetch(tmp_path, [])
