"""Training plans: where the step goes, verdict and risk, and moves that really fit.

The model is Llama 3.2 1B's real config (weights left as a sparse hole); the
machines are plain values (``fake_plan_inputs``). Every move is re-assessed from
its ``settings_change`` here, so a move that claims to fit and does not fails.
"""

from __future__ import annotations

import dataclasses

import pytest
from fake_plan_inputs import linux_box, mac

from yoyu.estimate.training_settings import TrainingSettings
from yoyu.machine.types import Machine
from yoyu.models.hf_model import read_hf_model
from yoyu.models.spec import ModelSpec
from yoyu.plan.training import TrainingPlan, make_training_plan
from yoyu.plan.training_assess import assess_training
from yoyu.plan.types import PlanRequest, Risk, Verdict
from yoyu.testing.hf_folders import LLAMA_3_2_1B, write_llama_folder

REQUEST = PlanRequest()


@pytest.fixture(scope="module")
def llama_1b(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    return read_hf_model(write_llama_folder(tmp_path_factory.mktemp("l1b"), LLAMA_3_2_1B))


def plan(spec: ModelSpec, machine: Machine, **settings: object) -> TrainingPlan:
    return make_training_plan(spec, machine, REQUEST, TrainingSettings(**settings))  # type: ignore[arg-type]


def test_a_step_that_fits_the_gpu_is_planned_there(llama_1b: ModelSpec) -> None:
    result = plan(llama_1b, linux_box(64, 24), seq=1024)
    assert (result.verdict, result.risk) == (Verdict.FITS, Risk.SAFE)
    assert result.assessment.memory.device == "CUDA0"
    assert (result.moves, result.reasons) == ((), ())
    rows = {row["name"]: row for row in result.to_dict()["devices"]}
    gpu = result.assessment.memory.device_bytes
    assert rows["CUDA0"]["free_after_bytes"] == rows["CUDA0"]["usable_bytes"] - gpu


def test_too_big_for_the_gpu_adopts_the_cheapest_move_that_fits_there(
    llama_1b: ModelSpec,
) -> None:
    machine = linux_box(8, 8)  # RAM cannot hold it either: nothing runs as asked
    asked = TrainingSettings(seq=4096, batch=2)
    result = make_training_plan(llama_1b, machine, REQUEST, asked)
    assert result.verdict is Verdict.FITS_WITH_CHANGES
    assert result.reasons and result.reasons[0].device == "CUDA0"
    assert result.reasons[0].needed_bytes > result.reasons[0].available_bytes
    move = result.applied_move
    assert move is not None and move.resulting_verdict is Verdict.FITS
    redone = assess_training(
        llama_1b, machine, REQUEST, dataclasses.replace(asked, **move.settings_change)
    )
    assert (redone.verdict, redone.memory.device) == (Verdict.FITS, "CUDA0")
    assert redone.memory.total_bytes == move.total_bytes
    assert result.settings == redone.settings


def test_every_move_is_what_the_plan_would_say_with_it(llama_1b: ModelSpec) -> None:
    machine = linux_box(12, 6)
    asked = TrainingSettings(rank=64, targets=("q", "k", "v", "o"), seq=2048, batch=4)
    result = make_training_plan(llama_1b, machine, REQUEST, asked)
    moves = [*result.moves, *([result.applied_move] if result.applied_move else [])]
    assert {move.action for move in moves} >= {"reduce_batch", "combined", "reduce_seq"}
    for move in moves:
        redone = assess_training(
            llama_1b, machine, REQUEST, dataclasses.replace(asked, **move.settings_change)
        )
        assert redone.verdict is move.resulting_verdict, move.description
        assert redone.memory.total_bytes == move.total_bytes
        assert (
            redone.memory.total_bytes
            < assess_training(llama_1b, machine, REQUEST, asked).memory.total_bytes
        )


def test_training_on_the_cpu_of_a_gpu_machine_lists_the_moves_back_to_the_gpu(
    llama_1b: ModelSpec,
) -> None:
    """Like a partial offload, a CPU-only step runs: the plan keeps it and lists the moves."""
    result = plan(llama_1b, linux_box(64, 8), seq=4096, batch=2)
    assert result.verdict is Verdict.CPU_ONLY and result.applied_move is None
    assert any("does not fit the GPU" in note for note in result.notes)
    assert any(move.resulting_verdict is Verdict.FITS for move in result.moves)


def test_a_smaller_batch_keeps_the_effective_batch(llama_1b: ModelSpec) -> None:
    result = plan(llama_1b, linux_box(12, 8), seq=2048, batch=8, grad_accum=2)
    batch_moves = [move for move in result.moves if move.action == "reduce_batch"]
    for move in batch_moves:
        change = move.settings_change
        assert change["batch"] * change["grad_accum"] >= 16


def test_a_machine_without_gpu_trains_on_the_cpu(llama_1b: ModelSpec) -> None:
    result = plan(llama_1b, linux_box(32), seq=512)
    assert (result.verdict, result.risk) == (Verdict.CPU_ONLY, Risk.SAFE)
    assert result.assessment.memory.device == "CPU" and not result.moves


def test_nothing_fits_says_why_in_figures(llama_1b: ModelSpec) -> None:
    result = plan(llama_1b, linux_box(2.5), seq=256)
    assert (result.verdict, result.risk) == (Verdict.DOES_NOT_FIT, Risk.ABORT)
    assert result.reasons[0].device == "RAM"
    assert all(move.resulting_verdict is not Verdict.FITS for move in result.moves)


def test_apple_silicon_holds_the_step_to_the_metal_working_set(llama_1b: ModelSpec) -> None:
    """32 GB of unified memory, 8 GiB Metal may use: a 15 GB step does not go on Metal."""
    machine = mac(32, working_set_gib=8)
    asked = TrainingSettings(seq=4096)
    on_metal = assess_training(llama_1b, machine, REQUEST, asked)
    assert on_metal.memory.device == "CPU" and on_metal.verdict is Verdict.CPU_ONLY
    assert on_metal.failures[0].device == "Metal"
    assert "Metal working set 8.00 GiB" in on_metal.failures[0].message
    result = make_training_plan(llama_1b, machine, REQUEST, asked)
    assert any(move.resulting_verdict is Verdict.FITS for move in result.moves)


def test_the_json_names_every_component_and_they_add_up(llama_1b: ModelSpec) -> None:
    data = plan(llama_1b, linux_box(64, 24), method="qlora", targets=("q", "v", "down")).to_dict()
    parts = data["components"]
    names = ("base_weights", "adapter", "gradient", "optimizer", "activation", "logits")
    summed = sum(parts[f"{name}_bytes"] for name in names) + parts["framework_bytes"]
    assert summed + parts["host_bytes"] == parts["total_bytes"] == data["totals"]["total_bytes"]
    described = (data["kind"], data["settings"]["method"], data["device"])
    assert described == ("training", "qlora", "CUDA0")
    assert any("Dettmers" in note for note in data["notes"])
