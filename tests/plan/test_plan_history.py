"""Earlier runs beside a plan: the figure for the same settings, the residual of an engine
on an architecture, applied only when the estimator was short (plain values, no store)."""

from __future__ import annotations

import dataclasses

import pytest

from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import RunSettings
from yoyu.machine.presets import load_machine
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.models.spec import ModelSpec
from yoyu.plan.history import (
    History,
    MeasuredRun,
    history_notes,
    residual_of,
    same_settings_run,
    with_residual,
)
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest
from yoyu.testing.tiny_models import write_tiny_model

MIB = 1024**2
SETTINGS = RunSettings(n_ctx=512, engine="llama-server", tensor_split=(1.0, 1.0))


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    path = tmp_path_factory.mktemp("history") / "tiny.gguf"
    write_tiny_model(path)
    return read_gguf_model(path)


def measured(
    spec: ModelSpec, ratio: float, run_id: int = 1, settings: RunSettings = SETTINGS, **more: object
) -> MeasuredRun:
    as_stored = {**settings.to_dict(), "tensor_split": list(settings.tensor_split)}  # JSON
    run = MeasuredRun(
        run_id=run_id, started=1_764_800_000.0 + run_id, model=spec.name,
        file_bytes=spec.file_bytes, architecture=spec.architecture, settings=as_stored,
        predicted_host_bytes=100 * MIB, peak_rss_bytes=int(100 * MIB * ratio),
    )  # fmt: skip
    return dataclasses.replace(run, **more)  # type: ignore[arg-type]


def test_the_newest_run_of_this_file_with_these_very_settings_is_the_one_shown(
    spec: ModelSpec,
) -> None:
    runs = [
        measured(spec, 1.0, run_id=1),
        measured(spec, 1.0, run_id=2),
        measured(spec, 1.0, run_id=3, settings=dataclasses.replace(SETTINGS, n_ctx=1024)),
        measured(spec, 1.0, run_id=4, file_bytes=spec.file_bytes + 1),  # another file
    ]
    found = same_settings_run(spec, SETTINGS, runs)
    assert found is not None and found.run_id == 2
    assert same_settings_run(spec, dataclasses.replace(SETTINGS, n_batch=256), runs) is None


def test_a_residual_is_the_median_over_one_engine_and_architecture(spec: ModelSpec) -> None:
    python = dataclasses.replace(SETTINGS, engine="llama-cpp-python")
    runs = [measured(spec, r, run_id=i) for i, r in enumerate((1.10, 1.02, 1.06))]
    runs += [measured(spec, 2.0, run_id=9, settings=python)]  # another engine
    runs += [measured(spec, 2.0, run_id=8, architecture="qwen3")]  # another architecture
    residual = residual_of(spec, "llama-server", runs)
    assert residual is not None and residual.runs == 3
    assert (residual.median, residual.low, residual.high) == (1.06, 1.02, 1.10)
    assert residual.applied
    assert not residual_of(spec, "llama-server", runs[:2]).applied  # type: ignore[union-attr]
    assert residual_of(spec, "ollama", runs) is None


def test_a_short_estimator_is_corrected_on_the_cpu_and_the_plan_counts_it(
    spec: ModelSpec,
) -> None:
    machine = load_machine("linux-cpu-32g")
    short = residual_of(spec, "llama-server", [measured(spec, 1.5, run_id=i) for i in range(3)])
    plain = estimate_memory(spec, machine, SETTINGS)
    corrected = with_residual(estimate_memory, short)(spec, machine, SETTINGS)
    extra = corrected.devices[0].overhead_bytes - plain.devices[0].overhead_bytes
    assert extra == int(plain.devices[0].total_bytes * 0.5)
    assert corrected.total_bytes == plain.total_bytes + extra
    assert any(
        "measured 1.500x the predicted host memory over 3 runs" in n for n in corrected.notes
    )
    request = PlanRequest(settings=dataclasses.replace(SETTINGS, tensor_split=()))
    before = make_plan(spec, machine, request)
    after = make_plan(spec, machine, request, estimate=with_residual(estimate_memory, short))
    assert after.free_after_bytes == before.free_after_bytes - extra
    # an estimator that was over is left as it is, and the note says why
    over = residual_of(spec, "llama-server", [measured(spec, 0.86, run_id=i) for i in range(3)])
    assert with_residual(estimate_memory, over) is estimate_memory
    [note] = history_notes(History(None, over))
    assert "0.860 over 3 run(s)" in note and "applied only above 1.01" in note


def test_the_same_settings_note_gives_both_figures(spec: ModelSpec) -> None:
    run = measured(spec, 0.9, run_id=7)
    [note] = history_notes(History(run, None))
    assert "(run 7)" in note and "peak 90.00 MiB" in note and "predicted 100.00 MiB" in note
