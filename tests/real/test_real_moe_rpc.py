"""MoE experts on the CPU beside a device, as llama.cpp really allocates them: a `yoyu node`
worker on 127.0.0.1 is the device (llama.cpp treats an rpc-server as it treats a GPU and
prints its buffers), llama-server the head, both as ``yoyu engine install`` builds them.

The plan picks how many blocks' experts stay on the CPU from the node's live offer;
the run starts llama-server with that ``--n-cpu-moe``; every buffer llama.cpp prints is
compared with the plan, device by device.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psutil
import pytest

from yoyu.backends.llamacpp_log import ReportedBuffers
from yoyu.backends.llamacpp_server import LlamaCppEngine, LlamaCppServerBackend
from yoyu.backends.protocol import ChatMessage, ModelRef
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import MemoryEstimate, RunSettings
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.plan.emit.llama_cpp import engine_load_settings, rpc_endpoints
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest, Verdict
from yoyu.runner import ModelRun, RunConfig, SettlePolicy
from yoyu.testing.nodes import cluster, started_nodes
from yoyu.testing.sparse_models import write_sparse_model
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import GIB, MIB

pytestmark = pytest.mark.slow

PRINTED = MIB // 100  # llama.cpp prints MiB with two decimals
# 4 blocks of 16 experts (2 used), Q4_0: 13.5 MiB of experts per block, 81 MiB on a device
# that holds all of it at ctx 1024
MOE = {"n_layers": 4, "n_embd": 512, "n_head": 8, "n_head_kv": 2, "n_ff": 1024,
       "vocab_size": 259, "n_experts": 16, "n_experts_used": 2}  # fmt: skip
SMALL_NODE = 120 * MIB  # offers half: 60 MiB


def server(tmp_path: Path, built_llama_server: Path) -> LlamaCppServerBackend:
    engine = LlamaCppEngine("llama-server", str(built_llama_server))
    return LlamaCppServerBackend(engine=engine, log_dir=tmp_path / "logs")


def assert_held_as_planned(estimate: MemoryEstimate, buffers: ReportedBuffers) -> None:
    """Model and KV buffers to the printed precision on every device, the CPU's compute
    buffer within 0.05 MiB, a device's compute never below what llama.cpp reserved."""
    cpu = estimate.device("CPU")
    assert abs(buffers.device("model", "CPU_Mapped") - estimate.mapped_bytes) <= PRINTED
    assert abs(buffers.device("model", "CPU_REPACK") - cpu.repack_bytes) <= PRINTED
    assert abs(buffers.device("compute", "CPU") - cpu.compute_bytes) <= 5 * PRINTED
    for device in estimate.devices[1:]:
        assert abs(buffers.device("model", device.name) - device.weights_bytes) <= PRINTED
        assert buffers.device("kv", device.name) == device.kv_bytes
        printed_compute = buffers.device("compute", device.name)
        assert printed_compute <= device.compute_bytes <= printed_compute + 8 * MIB


def test_a_moe_over_a_small_node_keeps_its_layers_there_and_the_first_experts_on_the_cpu(
    tmp_path: Path, built_llama_server: Path, built_rpc_server: Path
) -> None:
    model = tmp_path / "moe.gguf"
    write_tiny_model(model, "moe", weight_type="Q4_0", **MOE)
    spec = read_gguf_model(model)
    with started_nodes((SMALL_NODE,), built_rpc_server, tmp_path / "nodes") as workers:
        machine = cluster(workers)
        config = RunConfig(
            str(model), RunSettings(n_ctx=1024), settle=SettlePolicy(window_s=0.3, cap_s=5.0)
        )
        backend = server(tmp_path, built_llama_server)
        with ModelRun(config, backend=backend, seed=1, machine=machine) as run:
            answer = run.ask([ChatMessage("user", "Say something.")], max_tokens=8)
            buffers = run.loaded.buffers if run.loaded else None
            prediction = run.prediction
            argv = psutil.Process(backend.pids()[-1]).cmdline()
    assert prediction is not None and buffers is not None
    settings = prediction.settings
    blocks = settings.n_cpu_moe
    assert 0 < blocks < spec.n_layers and settings.n_gpu_layers == spec.n_layers + 1
    assert argv[argv.index("--n-cpu-moe") + 1] == str(blocks)  # what runs is what was planned
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    estimate = estimate_memory(spec, machine, settings)
    assert_held_as_planned(estimate, buffers)
    device = estimate.devices[1]
    assert device.total_bytes <= workers[0].status().offer_bytes
    fewer = estimate_memory(spec, machine, dataclasses.replace(settings, n_cpu_moe=blocks - 1))
    assert fewer.devices[1].total_bytes > workers[0].status().offer_bytes  # the fewest that fit


def test_gpt_oss_20bs_real_shape_over_a_node_is_held_as_planned(
    tmp_path: Path, built_llama_server: Path, built_rpc_server: Path
) -> None:
    """gpt-oss-20b's tensor table (data a sparse hole: the node still allocates and
    receives every byte of its share, 2.8 GiB), experts of most blocks on the CPU."""
    if psutil.virtual_memory().available < 12 * GIB:
        pytest.skip("needs 12 GiB free: the node receives 2.8 GiB and the head maps 9 GiB")
    model = write_sparse_model(tmp_path, "gpt-oss-20b-mxfp4").paths[0]
    spec = read_gguf_model(model)
    # repack off: MXFP4 experts on the CPU would otherwise be copied (8 GiB, 40 s here)
    settings = RunSettings(n_ctx=4096, engine="llama-server", flash_attn=True, repack=False)
    with started_nodes((8 * GIB,), built_rpc_server, tmp_path / "nodes") as workers:
        machine = cluster(workers)
        plan = make_plan(spec, machine, PlanRequest(settings=settings))
        load = {**engine_load_settings(plan.settings), "rpc": rpc_endpoints(machine)}
        backend = server(tmp_path, built_llama_server)
        try:
            buffers = backend.load(ModelRef("oss", model), load).buffers
            held = workers[0].status().engine_rss_bytes
        finally:
            backend.close()
    assert plan.verdict is Verdict.PARTIAL_OFFLOAD and buffers is not None
    assert plan.n_gpu_layers == spec.n_layers + 1 and 0 < plan.settings.n_cpu_moe < spec.n_layers
    assert_held_as_planned(plan.estimate, buffers)
    assert held <= plan.estimate.devices[1].total_bytes + 32 * MIB  # + rpc-server's own
