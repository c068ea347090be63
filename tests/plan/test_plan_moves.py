"""Fitting moves on plain values: each is assessed, ranked by cost, and explained."""

from __future__ import annotations

from fake_plan_inputs import KV_PER_TOKEN, fake_estimate, linux_box, uniform_model

from yoyu.estimate.types import RunSettings
from yoyu.models.spec import ModelSpec
from yoyu.plan.moves import quantized_bits_per_weight, requantized, smaller_relatives
from yoyu.plan.planner import make_plan
from yoyu.plan.types import Plan, PlanRequest, Risk, Verdict
from yoyu.units import GIB


def plan_at(ctx: int, machine, **kwargs) -> Plan:  # type: ignore[no-untyped-def]
    request = PlanRequest(settings=RunSettings(n_ctx=ctx), **kwargs.pop("request", {}))
    return make_plan(
        kwargs.pop("model", uniform_model()), machine, request,
        estimate=fake_estimate, speed=None, **kwargs,
    )  # fmt: skip


def actions(result: Plan) -> list[str]:
    return [move.action for move in result.moves]


def test_an_ideal_plan_proposes_nothing() -> None:
    assert plan_at(4096, linux_box(32, 24)).moves == ()


def test_shorter_context_brings_a_partial_offload_onto_the_gpu() -> None:
    # 13 GiB GPU -> 12 GiB limit; at 32768 each block needs 1.5 GiB, at 8192 1.125 GiB.
    result = plan_at(32768, linux_box(64, 13))
    assert result.verdict is Verdict.PARTIAL_OFFLOAD and result.n_gpu_layers == 8
    move = result.moves[0]
    assert move.action == "reduce_ctx"
    assert move.settings_change == {"n_ctx": 8192}  # the largest context that fits, not 2048
    assert move.resulting_verdict is Verdict.FITS
    assert move.total_bytes == 10 * (GIB + 8192 * KV_PER_TOKEN) + 512 * 1024**2
    assert "ctx 32768 -> 8192" in move.description and "all 11 layers" in move.description


def test_quantized_kv_is_offered_with_flash_attention() -> None:
    result = plan_at(32768, linux_box(64, 13))
    move = next(move for move in result.moves if move.action == "quantize_kv")
    assert move.settings_change["flash_attn"] is True
    assert move.settings_change["type_k"] == move.settings_change["type_v"]


def test_moves_are_ordered_by_cost_and_end_with_a_remote_model() -> None:
    found = actions(plan_at(32768, linux_box(64, 13)))
    cost_order = ["flash_attn", "reduce_ctx", "quantize_kv", "reduce_batch", "fewer_gpu_layers",
                  "smaller_quant", "smaller_model", "cluster", "remote"]  # fmt: skip
    assert found == sorted(found, key=cost_order.index)
    assert found[-1] == "remote"


def test_does_not_fit_becomes_fits_with_changes_at_the_least_drastic_context() -> None:
    # 16 GiB RAM, no GPU: at 131072 the KV cache alone is 20 GiB.
    result = plan_at(131072, linux_box(16))
    assert result.verdict is Verdict.FITS_WITH_CHANGES
    assert result.applied_move is not None and result.applied_move.action == "reduce_ctx"
    # 16384 leaves 3.5 GiB (caution); 8192 leaves 4.75 GiB (safe): the first safe one wins
    assert result.settings.n_ctx == 8192 and result.risk is Risk.SAFE
    assert result.reasons and result.reasons[0].needed_bytes > result.reasons[0].available_bytes
    assert "reduce_ctx" not in actions(result)  # the adopted move is not offered again


def test_a_forced_layer_count_that_overflows_gets_fewer_gpu_layers() -> None:
    result = plan_at(4096, linux_box(32, 8), request={"n_gpu_layers": 11})
    assert result.verdict is Verdict.FITS_WITH_CHANGES
    assert result.applied_move is not None
    assert result.applied_move.action == "fewer_gpu_layers"
    assert result.n_gpu_layers == 7


def test_smaller_model_of_the_same_family_from_the_catalog() -> None:
    big = uniform_model(10, name="family:10b", params_per_layer=10**9)
    catalog = [
        uniform_model(3, name="family:3b", params_per_layer=10**9),
        uniform_model(2, name="stranger:2b", architecture="qwen2"),
        uniform_model(12, name="family:12b"),
    ]
    result = plan_at(4096, linux_box(8), model=big, catalog=catalog)
    move = next(move for move in result.moves if move.action == "smaller_model")
    assert move.settings_change == {"model": "family:3b"}
    assert move.resulting_verdict is Verdict.CPU_ONLY


def test_a_catalog_given_as_a_function_is_read_only_when_a_smaller_model_is_weighed() -> None:
    reads: list[str] = []

    def read_catalog() -> list[ModelSpec]:
        reads.append("catalog")
        return [uniform_model(3, name="family:3b", params_per_layer=10**9)]

    plan_at(4096, linux_box(32, 24), catalog=read_catalog)  # ideal: no move is weighed
    assert reads == []
    big = uniform_model(10, name="family:10b", params_per_layer=10**9)
    result = plan_at(4096, linux_box(8), model=big, catalog=read_catalog)
    assert reads == ["catalog"] and "smaller_model" in actions(result)


def test_relatives_fall_back_to_the_same_architecture() -> None:
    model = uniform_model(10, name="Some Finetune 10B", architecture="qwen2")
    catalog = [
        uniform_model(3, name="qwen:3b", architecture="qwen2"),
        uniform_model(3, name="llama:3b"),
    ]
    assert [m.name for m in smaller_relatives(model, catalog)] == ["qwen:3b"]


def test_cluster_move_counts_machines_like_this_one() -> None:
    result = plan_at(4096, linux_box(8))
    move = next(move for move in result.moves if move.action == "cluster")
    assert move.settings_change == {"nodes": 2}
    assert move.resulting_verdict is Verdict.NEEDS_CLUSTER
    assert "layers 0-4, 5-9" in move.description


def test_requantizing_scales_block_weights_only() -> None:
    model = uniform_model(4)
    smaller = requantized(model, "Q2_K", 0.5)
    assert smaller.layer_bytes == (GIB // 2,) * 4
    assert smaller.nonrepeating_bytes == model.nonrepeating_bytes
    assert quantized_bits_per_weight(model) == 8 * GIB / 10**9
