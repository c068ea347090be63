"""The whole migration on tiny GGUF models with the real llama-cpp-python engine and a
budgeted guard: promote, roll back on a breached floor, resume after an interruption.
Every path ends with no engine process left."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from yoyu.errors import MigrationError
from yoyu.estimate.types import RunSettings
from yoyu.rollout import (
    Hooks,
    MigrateThresholds,
    Request,
    load_current,
    resume_migration,
    rollback_migration,
    start_migration,
)
from yoyu.runner import SoakPoint
from yoyu.testing.tiny_models import TinyModel
from yoyu.toml import load_toml
from yoyu.units import GIB, MIB

Children = Callable[[], list[psutil.Process]]

SETTINGS = RunSettings(n_ctx=4096, n_batch=256, n_ubatch=256, swa_full=True)
# Room for the engine (~100 MiB of anonymous memory) under an 8 GiB budget: its floors are
# 4 and 2 GiB, far enough that other programs on a shared machine do not reach them.
FITS = MigrateThresholds(
    min_available_bytes=256 * MIB, soak_s=1.0, max_tokens=8, budget_bytes=8 * GIB
)
# A 48 MiB budget: the engine's own interpreter takes more than that while loading.
TOO_SMALL = dataclasses.replace(FITS, min_available_bytes=32 * MIB, budget_bytes=48 * MIB)


def request(model: TinyModel, thresholds: MigrateThresholds) -> Request:
    return Request(str(model.path), "coder", thresholds=thresholds, settings=SETTINGS)


@pytest.mark.slow
def test_a_target_that_fits_is_promoted(
    home: Path, hooks: Hooks, models: dict[str, TinyModel], engine_children: Children
) -> None:
    before = home.read_text(encoding="utf-8")
    state = start_migration(request(models["big"], FITS), hooks)
    assert state.status == "promoted", state.reasons
    assert [r.passed for r in state.phases.values()] == [True, True, True, True]
    document = load_toml(home)
    route = document["aliases"]["coder"]
    assert document["routes"][route]["chain"] == ["big", "small"]  # the old one as fallback
    assert document["served"]["big"]["path"] == str(models["big"].path)
    assert document["aliases"]["writer"] == "small"  # the user's other content is kept
    assert "# what the agent asks for" in home.read_text(encoding="utf-8")
    smoke = state.phases["smoke"].measurements
    assert smoke["least_available_bytes"] >= smoke["continue_bytes"]
    assert not engine_children()
    report = Path(state.report or "")
    text = report.read_text(encoding="utf-8")
    assert "| smoke | passed |" in text and "**promote**" in text
    assert (report.parent / "smoke.png").stat().st_size > 0
    assert (report.parent / "soak.png").stat().st_size > 0
    # --rollback after a promotion restores the file exactly
    rolled = rollback_migration()
    assert rolled.status == "rolled_back"
    assert home.read_text(encoding="utf-8") == before


def test_a_smoke_test_below_the_abort_floor_is_rolled_back(
    home: Path, hooks: Hooks, models: dict[str, TinyModel], engine_children: Children
) -> None:
    before = home.read_text(encoding="utf-8")
    state = start_migration(request(models["big"], TOO_SMALL), hooks)
    assert state.status == "rolled_back"
    smoke = state.phases["smoke"]
    assert smoke.passed is False
    # The guard sees the engine from its first byte, so it stops the load before the
    # floor is crossed: the smoke test fails on the guard's reason, not on a breach.
    assert smoke.reasons[0].startswith("the guard stopped the model:"), smoke.reasons
    assert "abort floor" in smoke.reasons[0]
    assert "soak" not in state.phases  # stopped at the smoke test
    assert any(reason.startswith("smoke: ") for reason in state.reasons), state.reasons
    assert home.read_text(encoding="utf-8") == before  # alias untouched
    assert load_toml(home)["aliases"]["coder"] == "small"
    assert not engine_children()
    text = Path(state.report or "").read_text(encoding="utf-8")
    assert "| smoke | failed |" in text and "**rollback**" in text
    assert load_current().status == "rolled_back"


@pytest.mark.slow
def test_an_interrupted_soak_resumes_at_the_soak(
    home: Path, hooks: Hooks, models: dict[str, TinyModel], engine_children: Children
) -> None:
    def interrupt(point: SoakPoint) -> None:
        assert engine_children()  # the model is loaded right now
        raise KeyboardInterrupt

    stopping = dataclasses.replace(hooks, on_point=interrupt)
    with pytest.raises(KeyboardInterrupt):
        start_migration(request(models["big"], FITS), stopping)
    assert not engine_children()  # the engine was stopped on the way out
    state = load_current()
    assert (state.status, state.phase) == ("interrupted", "soak")
    assert state.phases["smoke"].passed is True and state.engine is None
    assert load_toml(home)["aliases"]["coder"] == "small"
    with pytest.raises(MigrationError, match="--resume"):
        start_migration(request(models["big"], FITS), hooks)

    phases: list[str] = []
    resumed = resume_migration(dataclasses.replace(hooks, on_phase=phases.append))
    assert phases == ["soak", "verdict"]  # preflight, fetch and smoke are not run again
    assert resumed.status == "promoted"
    assert resumed.interruptions == ["soak: interrupted (Ctrl-C)"]
    assert not engine_children()
    with pytest.raises(MigrationError, match="finished"):
        resume_migration(hooks)


def test_an_interruption_in_preflight_can_be_rolled_back(
    home: Path, hooks: Hooks, models: dict[str, TinyModel], engine_children: Children
) -> None:
    def crash(phase: str) -> None:
        if phase == "fetch":
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        start_migration(request(models["big"], FITS), dataclasses.replace(hooks, on_phase=crash))
    state = load_current()
    assert (state.status, state.phase) == ("interrupted", "fetch")
    assert state.interruptions == ["fetch: RuntimeError: power cut"]
    rolled = rollback_migration("changed my mind")
    assert rolled.status == "rolled_back" and rolled.reasons == ["changed my mind"]
    assert load_toml(home)["aliases"]["coder"] == "small"
    with pytest.raises(MigrationError, match="already rolled back"):
        rollback_migration()


def test_a_target_that_is_not_there_fails_preflight(home: Path, hooks: Hooks) -> None:
    missing = Request(str(home.parent / "nowhere.gguf"), "coder", thresholds=FITS)
    state = start_migration(missing, hooks)
    assert state.status == "rolled_back" and state.phases["preflight"].passed is False
    assert "fetch" not in state.phases
    assert load_toml(home)["aliases"]["coder"] == "small"
    assert start_migration(missing, hooks).status == "rolled_back"  # a new one may start
