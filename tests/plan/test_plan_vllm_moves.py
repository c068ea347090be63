"""vLLM's fitting moves size its pool: the largest pool in whole blocks that reaches the
best verdict and risk, a shorter max_model_len or an fp8 cache where even one sequence's
pool does not fit, and on a GPU the utilization that gives the same pool."""

from __future__ import annotations

import dataclasses

import pytest

from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import RunSettings
from yoyu.estimate.vllm import CPU_BLOCK_TOKENS, GPU_BLOCK_TOKENS, VLLM_PROCESS_BYTES
from yoyu.machine.presets import load_machine
from yoyu.machine.types import Machine
from yoyu.models.hf_model import read_hf_model
from yoyu.models.spec import ModelSpec
from yoyu.plan.assess import assess
from yoyu.plan.emit.vllm import vllm_command
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest, Risk, Verdict
from yoyu.testing.hf_folders import LLAMA_3_2_1B, write_llama_folder
from yoyu.units import GIB, MIB

TOKEN_BYTES = 16 * 2 * 8 * 64 * 2  # Llama 3.2 1B: K and V of 16 layers x 8 heads of 64 in bf16


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    folder = tmp_path_factory.mktemp("hf") / "llama-3.2-1b"
    return read_hf_model(write_llama_folder(folder, LLAMA_3_2_1B))


def cpu_box(available: int) -> Machine:
    machine = load_machine("linux-cpu-32g")
    memory = dataclasses.replace(machine.memory, available_bytes=available)
    return dataclasses.replace(machine, memory=memory)


def vllm(**fields: object) -> RunSettings:
    return RunSettings(engine="vllm", **fields)  # type: ignore[arg-type]


def test_a_pool_too_big_for_the_cpu_becomes_the_largest_safe_one_in_whole_blocks(
    spec: ModelSpec,
) -> None:
    machine = cpu_box(10 * GIB)  # 4 GiB are kept free for "safe": 6 GiB for vLLM
    request = PlanRequest(settings=vllm(n_ctx=8192, kv_cache_bytes=8 * GIB))
    plan = make_plan(spec, machine, request)
    assert plan.verdict is Verdict.FITS_WITH_CHANGES and plan.risk is Risk.SAFE
    assert plan.applied_move is not None and plan.applied_move.action == "kv_pool"
    pool = plan.settings.kv_cache_bytes
    assert pool is not None and pool % (TOKEN_BYTES * CPU_BLOCK_TOKENS) == 0
    held = spec.tensor_bytes + sum(VLLM_PROCESS_BYTES.values())
    assert 6 * GIB - TOKEN_BYTES * CPU_BLOCK_TOKENS < held + pool <= 6 * GIB
    one_block_more = dataclasses.replace(plan.settings, kv_cache_bytes=pool + 4 * MIB)
    judged = assess(spec, machine, request, one_block_more, estimate_memory)
    assert judged.risk is not Risk.SAFE  # the largest: a block more is no longer safe
    argv = vllm_command(plan, spec, "/m", machine, GIB).argv
    assert argv[argv.index("--kv-cache-memory-bytes") + 1] == str(pool)
    assert f"{pool // TOKEN_BYTES / 8192:.1f} sequences of 8,192" in plan.applied_move.description


def test_where_one_sequence_does_not_fit_the_context_shrinks_or_the_cache_goes_fp8(
    spec: ModelSpec,
) -> None:
    """131,072 tokens of this model are 4 GiB; 11 GiB available less 4 kept free less the
    weights (2.30 GiB) and vLLM's processes (1.85 GiB) leave 2.85 GiB for the pool: no pool
    vLLM would start with fits at 131,072 tokens; 65,536 tokens (2 GiB) or fp8 (2 GiB) do."""
    machine = cpu_box(11 * GIB)
    plan = make_plan(spec, machine, PlanRequest(settings=vllm(n_ctx=131072)))
    moves = {move.action: move for move in (plan.applied_move, *plan.moves) if move}
    assert "kv_pool" not in moves or moves["kv_pool"].resulting_risk is not Risk.SAFE
    shorter, fp8 = moves["reduce_ctx"], moves["quantize_kv"]
    assert shorter.settings_change["n_ctx"] == 65536
    assert shorter.settings_change["kv_cache_bytes"] >= 65536 * TOKEN_BYTES
    assert shorter.resulting_risk is Risk.SAFE and fp8.resulting_risk is Risk.SAFE
    assert fp8.settings_change["kv_cache_bytes"] >= 131072 * TOKEN_BYTES // 2
    assert fp8.settings_change["type_k"] == "q8_0"  # emitted as --kv-cache-dtype fp8


def test_on_a_shared_gpu_the_pool_shrinks_to_its_free_memory_and_says_the_utilization(
    spec: ModelSpec,
) -> None:
    """vLLM takes utilization x the card's total whatever else runs on it; a card with
    9 GiB of its 16 free gets the pool that fits beside the others."""
    card = load_machine("linux-rtx5060ti-16g")
    busy = dataclasses.replace(card.gpus[0], free_bytes=9 * GIB)
    machine = dataclasses.replace(card, gpus=(busy,))
    request = PlanRequest(settings=vllm(n_ctx=8192, n_parallel=256))
    assert make_plan(spec, card, request).verdict is Verdict.FITS  # an idle card: as asked
    plan = make_plan(spec, machine, request)
    assert plan.applied_move is not None and plan.applied_move.action == "kv_pool"
    pool = plan.settings.kv_cache_bytes
    assert pool is not None and pool % (TOKEN_BYTES * GPU_BLOCK_TOKENS) == 0
    [gpu] = [device for device in plan.estimate.devices if device.kind == "gpu"]
    assert gpu.total_bytes <= 9 * GIB - GIB  # the 1 GiB margin kept on the card
    utilization = f"--gpu-memory-utilization {gpu.total_bytes / busy.total_bytes:.2f}"
    assert utilization in plan.applied_move.description


def test_llama_cpp_moves_are_not_offered_to_vllm(spec: ModelSpec) -> None:
    plan = make_plan(spec, cpu_box(8 * GIB), PlanRequest(settings=vllm(n_ctx=8192)))
    actions = {move.action for move in (plan.applied_move, *plan.moves) if move}
    assert actions & {"flash_attn", "reduce_batch", "fewer_gpu_layers", "cluster"} == set()
    assert "kv_pool" in actions
