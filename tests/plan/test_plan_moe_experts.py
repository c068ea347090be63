"""A MoE model on a GPU too small for it: every layer on the GPU with the experts of the
first N blocks on the CPU (llama-server's ``--n-cpu-moe N``) when that decodes faster
than fewer layers, on gpt-oss-20b's real tensor table (a sparse GGUF)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import RunSettings
from yoyu.machine.presets import load_machine
from yoyu.machine.types import Machine
from yoyu.models.resolve import read_model_path
from yoyu.models.spec import ModelSpec
from yoyu.plan.budget import machine_budget
from yoyu.plan.emit.llama_cpp import llama_server_argv
from yoyu.plan.emit.ollama import ollama_modelfile
from yoyu.plan.engine_defaults import llama_server_defaults
from yoyu.plan.placement import decode_tps, search_gpu_layers
from yoyu.plan.planner import make_plan
from yoyu.plan.types import Plan, PlanRequest, Verdict
from yoyu.testing.sparse_models import write_sparse_model
from yoyu.units import GIB, format_bytes

GPU_FREE = 8 * GIB  # a 16 GB card with a desktop and a browser on it


@pytest.fixture(scope="module")
def gpt_oss(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    folder = tmp_path_factory.mktemp("sparse")
    model = write_sparse_model(folder, "gpt-oss-20b-mxfp4", tokenizer=False)
    return read_model_path(Path(model.paths[0]))


@pytest.fixture(scope="module")
def card() -> Machine:
    return load_machine("linux-rtx5060ti-16g")


def plan(spec: ModelSpec, machine: Machine, engine: str, **fields: object) -> Plan:
    settings = RunSettings(n_ctx=8192, engine=engine, **fields)  # type: ignore[arg-type]
    request = PlanRequest(settings=settings, gpu_free_bytes=GPU_FREE)
    return make_plan(spec, machine, request)


def test_llama_server_keeps_every_layer_on_the_gpu_and_the_first_blocks_experts_on_the_cpu(
    gpt_oss: ModelSpec, card: Machine
) -> None:
    chosen = plan(gpt_oss, card, "llama-server")
    blocks = chosen.settings.n_cpu_moe
    assert chosen.verdict is Verdict.PARTIAL_OFFLOAD  # experts on the CPU: not all on the GPU
    assert chosen.n_gpu_layers == gpt_oss.n_layers + 1 and 0 < blocks < gpt_oss.n_layers
    # the fewest blocks: one fewer would overfill the card, and the plan says by how much
    limit = next(r for r in chosen.reasons if f"experts of {blocks - 1} blocks" in r.message)
    fewer = dataclasses.replace(chosen.settings, n_cpu_moe=blocks - 1)
    assert estimate_memory(gpt_oss, card, fewer).device("CUDA0").total_bytes == limit.needed_bytes
    gpu = next(row for row in chosen.devices if row.kind == "gpu")
    assert gpu.total_bytes <= limit.available_bytes < limit.needed_bytes
    # and it is the faster of the two placements llama.cpp could be given
    budget = machine_budget(card, PlanRequest(gpu_free_bytes=GPU_FREE))
    by_layers = search_gpu_layers(
        gpt_oss, card, dataclasses.replace(chosen.settings, n_cpu_moe=0, n_gpu_layers=0),
        budget, estimate_memory,
    )  # fmt: skip
    assert by_layers.n_gpu_layers < gpt_oss.n_layers + 1
    assert chosen.predicted is not None
    assert chosen.predicted.decode_tps > decode_tps(gpt_oss, card, by_layers)
    assert f"--n-cpu-moe {blocks}" in " ".join(llama_server_argv(chosen.settings, "/m.gguf"))


def test_a_count_the_user_gives_is_kept_and_a_big_card_needs_none(
    gpt_oss: ModelSpec, card: Machine
) -> None:
    assert plan(gpt_oss, card, "llama-server", n_cpu_moe=20).settings.n_cpu_moe == 20
    roomy = make_plan(
        gpt_oss, card, PlanRequest(settings=RunSettings(n_ctx=8192, engine="llama-server"))
    )
    assert roomy.verdict is Verdict.FITS and roomy.settings.n_cpu_moe == 0


def test_an_engine_that_offloads_whole_layers_is_told_what_llama_server_would_do(
    gpt_oss: ModelSpec, card: Machine
) -> None:
    server = plan(gpt_oss, card, "llama-server")
    for engine in ("llama-cpp-python", "ollama"):
        layered = plan(gpt_oss, card, engine)
        assert layered.settings.n_cpu_moe == 0 and layered.n_gpu_layers < gpt_oss.n_layers + 1
        move = next(move for move in layered.moves if move.action == "experts_on_cpu")
        blocks = server.settings.n_cpu_moe
        assert move.settings_change == {"engine": "llama-server", "n_cpu_moe": blocks}
        assert move.n_gpu_layers == gpt_oss.n_layers + 1
        assert f"--n-cpu-moe {blocks}" in move.description and "tok/s" in move.description
    modelfile = ollama_modelfile(plan(gpt_oss, card, "ollama"), "gpt-oss:20b", card)
    assert modelfile.startswith("# Ollama offloads whole layers")
    assert f"--n-cpu-moe {server.settings.n_cpu_moe}" in modelfile


def test_a_dense_model_is_never_given_experts_on_the_cpu(tmp_path: Path, card: Machine) -> None:
    model = write_sparse_model(tmp_path, "qwen2.5-32b-q4_k_m", tokenizer=False)
    dense = read_model_path(Path(model.paths[0]))
    chosen = plan(dense, card, "llama-server")
    assert chosen.verdict is Verdict.PARTIAL_OFFLOAD and chosen.settings.n_cpu_moe == 0
    assert all(move.action != "experts_on_cpu" for move in plan(dense, card, "ollama").moves)


def test_a_llama_server_plan_says_what_its_own_defaults_would_hold(
    gpt_oss: ModelSpec, card: Machine
) -> None:
    """--parallel auto, the trained context, 8 GiB of prompt cache, 32 checkpoints: the
    note gives their figure, computed by the same estimator."""
    chosen = plan(gpt_oss, card, "llama-server")
    [note] = [note for note in chosen.notes if "llama-server's own defaults" in note]
    defaults = estimate_memory(gpt_oss, card, llama_server_defaults(chosen.settings, gpt_oss))
    assert defaults.n_ctx == gpt_oss.context_length == 131072 and "ctx 131072" in note
    assert format_bytes(defaults.total_bytes - chosen.estimate.total_bytes) in note
    assert "--fit off" in note
    for engine in ("llama-cpp-python", "ollama"):
        assert not any("own defaults" in note for note in plan(gpt_oss, card, engine).notes)
    quiet = make_plan(
        gpt_oss, card, PlanRequest(settings=chosen.settings, propose_moves=False)
    )  # what `yoyu run` plans: no extra estimate
    assert not any("own defaults" in note for note in quiet.notes)
