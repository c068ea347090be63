"""The planner on plain values: budgets, risk, GPU layer search, splits, verdicts.

Figures come from ``fake_plan_inputs`` (1 GiB blocks, 16 KiB of KV per token
per block, 512 MiB per GPU), so each expectation is arithmetic a reader can redo.
"""

from __future__ import annotations

import dataclasses

import pytest
from fake_plan_inputs import fake_estimate, linux_box, mac, uniform_model

from yoyu.errors import SettingsError
from yoyu.estimate.types import RunSettings
from yoyu.plan.budget import machine_budget, split_by_free_memory
from yoyu.plan.multinode import node_spec, split_layers
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest, Risk, RiskThresholds, Verdict
from yoyu.plan.verdict import classify_risk, swap_raised_risk
from yoyu.units import GIB, MIB


def plan(machine, request=None, model=None, **kwargs):  # type: ignore[no-untyped-def]
    request = request or PlanRequest(settings=RunSettings(n_ctx=4096))
    return make_plan(
        model or uniform_model(), machine, request, estimate=fake_estimate, speed=None, **kwargs
    )


# --- risk -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free_gib", "risk"),
    [
        (4.0, Risk.SAFE),
        (3.99, Risk.CAUTION),
        (2.0, Risk.CAUTION),
        (1.99, Risk.ABORT),
        (-1, Risk.ABORT),
    ],
)
def test_risk_follows_the_default_thresholds(free_gib: float, risk: Risk) -> None:
    assert classify_risk(int(free_gib * GIB), RiskThresholds()) is risk


def test_thresholds_are_configurable() -> None:
    strict = RiskThresholds(safe_bytes=8 * GIB, caution_bytes=6 * GIB)
    assert classify_risk(7 * GIB, strict) is Risk.CAUTION
    assert classify_risk(5 * GIB, strict) is Risk.ABORT


def test_swap_in_use_is_danger_not_room() -> None:
    assert swap_raised_risk(Risk.SAFE, 1 * GIB) is Risk.CAUTION
    assert swap_raised_risk(Risk.SAFE, 0) is Risk.SAFE
    busy = plan(linux_box(32, swap_used=2 * GIB))
    assert busy.risk is Risk.CAUTION
    assert busy.free_after_bytes == plan(linux_box(32)).free_after_bytes  # swap adds no room


# --- budgets -------------------------------------------------------------------


def test_container_limit_and_reserve_shrink_system_memory() -> None:
    box = linux_box(64)
    limited = dataclasses.replace(box, memory=dataclasses.replace(box.memory, limit_bytes=16 * GIB))
    budget = machine_budget(limited, PlanRequest(reserve_bytes=4 * GIB))
    assert budget.system.usable_bytes == 12 * GIB
    assert "container limit" in budget.system.basis


def test_free_override_replaces_what_the_machine_reports() -> None:
    budget = machine_budget(mac(32, 21.33), PlanRequest(ram_free_bytes=11 * GIB))
    assert budget.system.usable_bytes == 11 * GIB
    assert budget.gpus[0].usable_bytes == 11 * GIB  # Metal is capped by the unified pool


def test_gpus_split_layers_by_what_each_may_hold() -> None:
    box = linux_box(64, 9)
    second = dataclasses.replace(box.gpus[0], index=1, total_bytes=17 * GIB, free_bytes=17 * GIB)
    budget = machine_budget(dataclasses.replace(box, gpus=(box.gpus[0], second)), PlanRequest())
    assert [gpu.name for gpu in budget.gpus] == ["CUDA0", "CUDA1"]
    assert split_by_free_memory(budget.gpus) == (round(8 / 24, 4), round(16 / 24, 4))


@pytest.mark.parametrize("field", ["reserve_bytes", "ram_free_bytes", "gpu_free_bytes"])
def test_negative_memory_is_a_settings_error(field: str) -> None:
    with pytest.raises(SettingsError, match="must not be negative"):
        PlanRequest(**{field: -1})


# --- placement -------------------------------------------------------------------


def test_full_gpu_when_every_layer_fits() -> None:
    result = plan(linux_box(32, 24))
    assert (result.verdict, result.n_gpu_layers, result.n_layers_total) == (Verdict.FITS, 11, 11)
    assert result.risk is Risk.SAFE


def test_partial_offload_takes_the_largest_layer_count_under_the_margin() -> None:
    # 8 GiB GPU, 1 GiB margin, 0.5 GiB overhead: 6 blocks of 1 GiB + 64 MiB KV fit, 7 do not.
    result = plan(linux_box(32, 8))
    assert result.verdict is Verdict.PARTIAL_OFFLOAD
    assert result.n_gpu_layers == 7  # the output layer and 6 blocks
    gpu = next(row for row in result.devices if row.kind == "gpu")
    assert gpu.total_bytes == 6 * (GIB + 64 * MIB) + 512 * MIB
    assert any(reason.device == "CUDA0" for reason in result.reasons)  # why not 8


def test_cpu_only_machine() -> None:
    result = plan(linux_box(32))
    assert result.verdict is Verdict.CPU_ONLY
    assert result.free_after_bytes == 32 * GIB - 10 * (GIB + 64 * MIB)


def test_refusal_says_why_in_figures() -> None:
    result = plan(linux_box(8), PlanRequest(settings=RunSettings(n_ctx=4096), propose_moves=False))
    assert (result.verdict, result.risk) == (Verdict.DOES_NOT_FIT, Risk.ABORT)
    (reason,) = result.reasons
    assert reason.needed_bytes == 10 * (GIB + 64 * MIB)
    assert reason.available_bytes == 6 * GIB
    assert "10.62 GiB" in reason.message and "6.00 GiB" in reason.message


def test_unified_memory_counts_cpu_and_metal_in_one_pool() -> None:
    assert plan(mac(32, 21.33)).verdict is Verdict.FITS
    tight = plan(
        mac(32, 21.33), PlanRequest(settings=RunSettings(n_ctx=4096), ram_free_bytes=14 * GIB)
    )
    assert (tight.verdict, tight.risk) == (Verdict.FITS, Risk.CAUTION)
    assert tight.free_after_bytes == 14 * GIB - (10 * (GIB + 64 * MIB) + 512 * MIB)


def test_metal_working_set_limits_the_gpu_share() -> None:
    result = plan(mac(64, 8))
    assert result.verdict is Verdict.PARTIAL_OFFLOAD
    assert result.n_gpu_layers == 8  # 7 blocks + output: 7 * 1.0625 + 0.5 = 7.94 GiB <= 8


def test_a_metal_working_set_filled_to_its_last_gib_is_tight_with_the_figure() -> None:
    # 10 blocks + output: 10 x 1.0625 GiB + 0.5 GiB = 11.125 GiB on a 12-GiB working set:
    # it loads (the working set is a soft limit), with less than llama.cpp's 1 GiB headroom.
    crowded = plan(mac(64, 11.5))
    assert crowded.verdict is Verdict.FITS and crowded.risk is Risk.TIGHT
    assert "Metal holds 11.12 GiB of the 11.50 GiB it may use (96.7%" in crowded.risk_reason
    assert "1.00 GiB llama.cpp's --fit keeps free" in crowded.risk_reason
    roomy = plan(mac(64, 13))
    assert roomy.risk is Risk.SAFE and "of system memory free after load" in roomy.risk_reason


def test_forced_layer_count_is_evaluated_as_given() -> None:
    request = PlanRequest(settings=RunSettings(n_ctx=4096), n_gpu_layers=3, propose_moves=False)
    assert plan(linux_box(32, 24), request).n_gpu_layers == 3


# --- several nodes --------------------------------------------------------------------


def test_equal_nodes_split_61_layers_like_llama_cpp_rpc() -> None:
    assert split_layers(61, [512, 512]) == [(0, 30), (31, 60)]


def test_split_is_weighted_by_memory() -> None:
    assert split_layers(8, [3, 1]) == [(0, 5), (6, 7)]
    assert split_layers(4, [0, 1]) == [None, (0, 3)]


def test_node_slice_renumbers_blocks_and_the_head_keeps_embeddings() -> None:
    model = uniform_model(10)
    worker = node_spec(model, 0, 4, holds_nonrepeating=False)
    head = node_spec(model, 5, 9, holds_nonrepeating=True)
    assert worker.n_layers == head.n_layers == 5
    assert worker.nonrepeating_bytes == 0 and head.nonrepeating_bytes == 2000
    assert head.tensors[0].name == "blk.0.ffn.q4_k" and head.tensors[0].layer == 0
    assert head.tensor_bytes + worker.tensor_bytes == model.tensor_bytes


def test_needs_cluster_when_one_node_is_not_enough() -> None:
    nodes = [linux_box(8), linux_box(8)]
    result = plan(nodes[0], nodes=nodes)
    assert result.verdict is Verdict.NEEDS_CLUSTER
    assert [(n.role, n.first_layer, n.last_layer) for n in result.nodes] == [
        ("worker", 0, 4),
        ("head", 5, 9),
    ]
    assert all(n.total_bytes == 5 * (GIB + 64 * MIB) for n in result.nodes)
    alone = plan(nodes[0], PlanRequest(settings=RunSettings(n_ctx=4096), propose_moves=False))
    assert alone.verdict is Verdict.DOES_NOT_FIT


def test_cluster_that_still_does_not_fit_names_the_node() -> None:
    nodes = [linux_box(4), linux_box(4)]
    result = plan(nodes[0], nodes=nodes)
    assert result.verdict is Verdict.DOES_NOT_FIT
    assert any("layers 0-4" in reason.message for reason in result.reasons)


def test_plan_serializes_to_the_json_contract() -> None:
    data = plan(linux_box(32, 8)).to_dict()
    assert data["verdict"] == "PARTIAL_OFFLOAD" and data["risk"] == "safe"
    assert data["totals"]["total_bytes"] == sum(d["total_bytes"] for d in data["devices"])
    assert {"ctx", "kv_type", "n_gpu_layers", "nodes", "predicted", "moves"} <= data.keys()
