"""One model over several machines with llama.cpp RPC, on this machine: `yoyu node`
workers on 127.0.0.1 with different budgets, the real Gemma 3 270M split over them by
their live offers, llama-server as the head (as ``yoyu engine install`` builds both).

The greedy answer over the cluster equals the single-machine answer; each node holds
what the plan put on it (llama-server prints every RPC device's buffers); a node that
dies mid-answer fails the request with its address and leaves no head engine behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from yoyu.backends.llamacpp_server import LlamaCppEngine, LlamaCppServerBackend
from yoyu.backends.protocol import ChatMessage, ChatRequest, ModelRef
from yoyu.errors import BackendCrashedError
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import RunSettings
from yoyu.estimate.weights import rpc_device_name
from yoyu.machine.types import Machine
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.node.worker import NodeWorker
from yoyu.plan.emit.llama_cpp import engine_load_settings, rpc_endpoints
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest, Verdict
from yoyu.runner import ModelRun, RunConfig, SettlePolicy
from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.nodes import cluster, started_nodes
from yoyu.testing.sparse_models import write_sparse_model
from yoyu.units import GIB, MIB

pytestmark = pytest.mark.slow

CTX = 2048
BUDGETS_MIB = (500, 900)  # offers 250 / 450 MiB: an uneven split
FAST_SETTLE = SettlePolicy(tolerance_bytes=2 * MIB, window_s=0.3, cap_s=5.0)
QUESTION = [ChatMessage("user", "Name three colours of the rainbow.")]


@pytest.fixture
def nodes(built_rpc_server: Path, tmp_path: Path) -> Iterator[list[NodeWorker]]:
    budgets = tuple(budget_mib * MIB for budget_mib in BUDGETS_MIB)
    with started_nodes(budgets, built_rpc_server, tmp_path / "nodes") as workers:
        yield workers


def server(tmp_path: Path, built_llama_server: Path) -> LlamaCppServerBackend:
    engine = LlamaCppEngine("llama-server", str(built_llama_server))
    return LlamaCppServerBackend(engine=engine, log_dir=tmp_path / "logs")


def greedy_run(model: Path, backend: LlamaCppServerBackend, machine: Machine | None) -> ModelRun:
    config = RunConfig(str(model), RunSettings(n_ctx=CTX), settle=FAST_SETTLE)
    return ModelRun(config, backend=backend, seed=1, machine=machine)


def test_an_answer_over_two_uneven_nodes_is_the_single_machine_answer_and_as_planned(
    real_gemma: Path, tmp_path: Path, built_llama_server: Path, nodes: list[NodeWorker]
) -> None:
    idle_rss = [worker.status().engine_rss_bytes for worker in nodes]
    machine = cluster(nodes)
    with greedy_run(real_gemma, server(tmp_path, built_llama_server), machine) as run:
        over_nodes = run.ask(QUESTION, max_tokens=24, temperature=0.0)
        loaded_rss = [worker.status().engine_rss_bytes for worker in nodes]
        buffers = run.loaded.buffers if run.loaded else None
        settings = run.prediction.settings if run.prediction else None
        shares = run.report()["nodes"]  # what `yoyu run --node` prints
    with greedy_run(real_gemma, server(tmp_path, built_llama_server), None) as single:
        alone = single.ask(QUESTION, max_tokens=24, temperature=0.0)
    assert over_nodes.text and over_nodes.text == alone.text
    assert buffers is not None and settings is not None
    estimate = estimate_memory(read_gguf_model(real_gemma), machine, settings)
    planned = {device.name: device for device in estimate.devices}
    layers = []
    for worker, idle, loaded in zip(nodes, idle_rss, loaded_rss, strict=True):
        device = planned[rpc_device_name(f"127.0.0.1:{worker.options.rpc_port}")]
        layers.append(len(device.layers))
        printed_model = buffers.device("model", device.name)
        assert abs(printed_model - device.weights_bytes) <= MIB // 100
        assert buffers.device("kv", device.name) == device.kv_bytes
        printed_compute = buffers.device("compute", device.name)
        assert printed_compute <= device.compute_bytes <= 1.05 * printed_compute
        # what the node's rpc-server really took stays within what the plan put there
        assert 0 < loaded - idle <= device.total_bytes
        assert device.total_bytes <= worker.status().offer_bytes
    assert layers[0] < layers[1]  # the bigger offer holds more of the model
    assert [share["layers"] for share in shares] == layers
    assert all(abs(s["printed_bytes"] - s["planned_bytes"]) < MIB // 10 for s in shares)


def test_a_node_that_dies_mid_answer_fails_the_request_naming_it(
    real_gemma: Path, tmp_path: Path, built_llama_server: Path, nodes: list[NodeWorker]
) -> None:
    backend = server(tmp_path, built_llama_server)
    victim = nodes[1]
    with greedy_run(real_gemma, backend, cluster(nodes)) as run:
        assert run.loaded is not None
        request = ChatRequest(run.loaded.id, tuple(QUESTION), max_tokens=2000)
        chunks = backend.stream_chat(request)
        next(chunks)  # the answer has started
        assert victim.engine is not None
        victim.engine.stop(1.0)
        with pytest.raises(BackendCrashedError) as failure:
            for _ in chunks:
                pass
    assert f"after losing node 127.0.0.1:{victim.options.rpc_port}" in str(failure.value)
    assert backend.pids() == []  # the head's engine went with the node
    assert victim.status().engine_pid is None and victim.status().stopped_reason


def test_the_gateway_serves_a_split_model_and_falls_back_when_a_node_dies(
    real_gemma: Path, tmp_path: Path, built_llama_server: Path, nodes: list[NodeWorker]
) -> None:
    addresses = ", ".join(f'"127.0.0.1:{worker.status_port}"' for worker in nodes)
    config = tmp_path / "yoyu.toml"
    config.write_text(
        f"""
[backends.server]
kind = "llama.cpp"
server_binary = "{built_llama_server}"

[served.split]
backend = "server"
path = "{real_gemma}"
nodes = [{addresses}]
settings = {{ n_ctx = {CTX} }}

[served.alone]
backend = "server"
path = "{real_gemma}"
settings = {{ n_ctx = {CTX} }}

[routes.auto]
chain = ["split", "alone"]
""",
        encoding="utf-8",
    )
    question: list[Any] = [{"role": "user", "content": "Name three colours of the rainbow."}]
    with GatewayProcess(["--config", str(config)], log_path=tmp_path / "serve.log") as gateway:
        client = OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
        first = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=question,
            max_tokens=8,
        )
        assert first.headers["x-yoyu-route"] == "split"
        assert nodes[1].engine is not None
        nodes[1].engine.stop(1.0)
        direct = httpx.post(
            f"{gateway.base_url}/chat/completions",
            json={"model": "split", "messages": question, "max_tokens": 8},
            timeout=60,
        )
        after = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=question,
            max_tokens=8,
        )
        assert after.headers["x-yoyu-route"] == "alone"
        assert after.parse().choices[0].message.content
    assert direct.status_code >= 500
    assert f"127.0.0.1:{nodes[1].options.rpc_port}" in direct.json()["error"]["message"]


def test_a_full_size_8b_shape_over_two_nodes_is_held_as_planned(
    tmp_path: Path, built_llama_server: Path, built_rpc_server: Path
) -> None:
    """Llama 3.1 8B Q4_K_M's real tensor table (data a sparse hole: the nodes still
    allocate and receive every byte), 4.6 GiB over two workers of 7 and 9 GiB."""
    model = write_sparse_model(tmp_path, "llama-3.1-8b-q4_k_m").paths[0]
    spec = read_gguf_model(model)
    with started_nodes((7 * GIB, 9 * GIB), built_rpc_server, tmp_path / "nodes") as workers:
        machine = cluster(workers)
        request = PlanRequest(settings=RunSettings(n_ctx=4096, engine="llama-server"))
        plan = make_plan(spec, machine, request)
        settings = {**engine_load_settings(plan.settings), "rpc": rpc_endpoints(machine)}
        backend = server(tmp_path, built_llama_server)
        try:
            buffers = backend.load(ModelRef("big", model), settings).buffers
            held = [worker.status().engine_rss_bytes for worker in workers]
        finally:
            backend.close()
    assert plan.verdict is Verdict.FITS and buffers is not None
    devices = [d for d in plan.estimate.devices if d.name.startswith("RPC[")]
    assert [len(d.layers) for d in devices] == [14, 19]  # 33 slots split by the offers
    for device, rss in zip(devices, held, strict=True):
        assert abs(buffers.device("model", device.name) - device.weights_bytes) <= MIB // 100
        assert buffers.device("kv", device.name) == device.kv_bytes
        assert abs(buffers.device("compute", device.name) - device.compute_bytes) <= MIB // 10
        assert rss <= device.total_bytes + 32 * MIB  # + rpc-server's own process
