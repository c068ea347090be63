"""The issue's acceptance scenarios, on sparse GGUFs with the real tensor shapes,
the real estimator and the bundled machine presets and catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoyu.errors import MachineError, SettingsError
from yoyu.estimate.types import RunSettings
from yoyu.machine.presets import load_machine
from yoyu.models.catalog import catalog_entries, catalog_model, catalog_spec
from yoyu.models.resolve import read_model_path
from yoyu.models.spec import ModelSpec
from yoyu.plan.planner import make_plan
from yoyu.plan.types import Plan, PlanRequest, Risk, Verdict
from yoyu.testing.sparse_models import write_sparse_model
from yoyu.units import GIB

RTX_5060_TI = "linux-rtx5060ti-16g"
M2_MAX_32G = "mac-studio-m2-max-32g"
M3_ULTRA_512G = "mac-studio-m3-ultra-512g"


@pytest.fixture(scope="module")
def sparse_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sparse")


def sparse_spec(folder: Path, name: str) -> ModelSpec:
    model = write_sparse_model(folder, name, tokenizer=False)
    return read_model_path(Path(model.paths[0]))


def catalog() -> list[ModelSpec]:
    return [catalog_spec(entry) for entry in catalog_entries()]


def plan_for(spec: ModelSpec, machine: str, ctx: int, **request: object) -> Plan:
    settings = RunSettings(n_ctx=ctx)
    return make_plan(
        spec, load_machine(machine), PlanRequest(settings=settings, **request), catalog=catalog()
    )  # type: ignore[arg-type]


def test_llama_8b_q4_k_m_fits_entirely_on_a_16_gb_card(sparse_folder: Path) -> None:
    plan = plan_for(sparse_spec(sparse_folder, "llama-3.1-8b-q4_k_m"), RTX_5060_TI, 8192)
    assert plan.verdict is Verdict.FITS and plan.risk is Risk.SAFE
    assert (plan.n_gpu_layers, plan.n_layers_total) == (33, 33)
    gpu = next(row for row in plan.devices if row.kind == "gpu")
    assert gpu.name == "CUDA0" and gpu.layers == 33
    assert gpu.free_after_bytes >= 1 * GIB
    assert plan.predicted is not None and plan.predicted.decode_tps > 0
    assert "CUDA0" in plan.predicted.bound
    assert plan.moves == ()


def test_gpt_oss_20b_at_131072_gets_a_move_onto_the_gpu_with_numbers(sparse_folder: Path) -> None:
    spec = sparse_spec(sparse_folder, "gpt-oss-20b-mxfp4")
    plan = plan_for(spec, RTX_5060_TI, 131072)
    on_gpu = [
        move
        for move in (*plan.moves, *([plan.applied_move] if plan.applied_move else []))
        if move.resulting_verdict is Verdict.FITS and move.n_gpu_layers == spec.n_layers + 1
    ]
    if plan.verdict is Verdict.PARTIAL_OFFLOAD:
        assert 0 < plan.n_gpu_layers < spec.n_layers + 1
    else:
        assert plan.verdict in (Verdict.FITS_WITH_CHANGES, Verdict.FITS)
    assert on_gpu, [move.description for move in plan.moves]
    for move in on_gpu:
        assert move.total_bytes is not None and "GiB" in move.description
    assert any(move.action in ("reduce_ctx", "quantize_kv") for move in on_gpu)


def test_32b_on_a_busy_32_gb_mac_aborts_and_names_a_fallback(sparse_folder: Path) -> None:
    spec = sparse_spec(sparse_folder, "qwen2.5-32b-q4_k_m")
    plan = plan_for(spec, M2_MAX_32G, 4096, ram_free_bytes=11 * GIB)
    assert plan.risk in (Risk.CAUTION, Risk.ABORT)
    assert plan.verdict is Verdict.DOES_NOT_FIT
    assert plan.reasons and "unified memory" in plan.reasons[0].message
    fallbacks = {move.action: move for move in plan.moves}
    assert "remote" in fallbacks
    assert "smaller_model" in fallbacks  # a smaller qwen2-architecture model from the catalog


def test_deepseek_r1_32b_on_the_same_mac_names_the_8b() -> None:
    spec = catalog_model("deepseek-r1:32b")
    assert spec is not None
    plan = plan_for(spec, M2_MAX_32G, 4096, ram_free_bytes=11 * GIB)
    assert plan.risk is Risk.ABORT
    smaller = next(move for move in plan.moves if move.action == "smaller_model")
    assert smaller.settings_change == {"model": "deepseek-r1:8b"}
    assert smaller.resulting_verdict is Verdict.FITS


def test_deepseek_r1_32b_on_the_m2_max_preset_is_tight_not_safe() -> None:
    """The preset assumes a desktop's apps and macOS; Metal at 99.5 % is not 'safe'."""
    spec = catalog_model("deepseek-r1:32b")
    assert spec is not None
    plan = plan_for(spec, M2_MAX_32G, 8192)
    assert plan.risk is not Risk.SAFE
    assert "Metal holds" in plan.risk_reason and "99." in plan.risk_reason
    assert any("assumed 6.00 GiB already in use" in note for note in plan.notes)
    cpu = next(row for row in plan.devices if row.kind == "cpu")
    assert cpu.usable_bytes == 26 * GIB  # 32 GiB less the 6 GiB the preset assumes in use


def test_kimi_k2_needs_two_512_gb_macs(sparse_folder: Path) -> None:
    spec = sparse_spec(sparse_folder, "kimi-k2-q4_k_m")
    assert spec.n_layers == 61
    nodes = [load_machine(M3_ULTRA_512G), load_machine(M3_ULTRA_512G)]
    plan = make_plan(spec, nodes[0], PlanRequest(settings=RunSettings(n_ctx=4096)), nodes=nodes)
    assert plan.verdict is Verdict.NEEDS_CLUSTER
    assert [(n.first_layer, n.last_layer) for n in plan.nodes] == [(0, 30), (31, 60)]
    assert [n.role for n in plan.nodes] == ["worker", "head"]
    for node in plan.nodes:
        assert node.fits and node.total_bytes > 250 * GIB
        assert node.free_after_bytes == node.usable_bytes - node.total_bytes
    halves = sum(node.total_bytes for node in plan.nodes)
    assert halves > spec.tensor_bytes  # every weight is somewhere, plus caches and overheads


def test_kimi_k2_on_one_512_gb_mac_does_not_fit(sparse_folder: Path) -> None:
    spec = sparse_spec(sparse_folder, "kimi-k2-q4_k_m")
    plan = plan_for(spec, M3_ULTRA_512G, 4096)
    assert plan.verdict is Verdict.DOES_NOT_FIT and plan.risk is Risk.ABORT
    assert plan.reasons[0].needed_bytes > plan.reasons[0].available_bytes
    assert any(move.action == "cluster" for move in plan.moves)


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(SettingsError, match="ctx must be"):
        RunSettings(n_ctx=-1)
    with pytest.raises(SettingsError, match="must not be negative"):
        PlanRequest(ram_free_bytes=-GIB)
    with pytest.raises(MachineError, match="unknown machine preset"):
        load_machine("mac-studio-m9-ultra")
