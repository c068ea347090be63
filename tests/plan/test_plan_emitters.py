"""Engine settings from plans made on plain values."""

from __future__ import annotations

import dataclasses

from fake_plan_inputs import fake_estimate, linux_box, mac, uniform_model

from yoyu.estimate.types import RunSettings
from yoyu.plan.emit.cluster import exo_commands, rpc_commands
from yoyu.plan.emit.ollama import ollama_config
from yoyu.plan.emit.vllm import gpu_memory_utilization, tensor_parallel_size, vllm_command
from yoyu.plan.planner import make_plan
from yoyu.plan.types import Plan, PlanRequest
from yoyu.units import GIB


def make(machine, settings: RunSettings, **kwargs) -> Plan:  # type: ignore[no-untyped-def]
    request = PlanRequest(settings=settings)
    return make_plan(
        uniform_model(), machine, request, estimate=fake_estimate, speed=None, **kwargs
    )


def test_ollama_modelfile_and_environment() -> None:
    settings = RunSettings(
        n_ctx=8192, n_parallel=2, type_k="q8_0", type_v="q8_0", flash_attn=True, engine="ollama"
    )
    plan = make(linux_box(64, 8), settings)
    config = ollama_config(plan, "/models/m.gguf", mac(32, 21.33))
    assert config.modelfile.splitlines() == [
        "FROM /models/m.gguf",
        f"PARAMETER num_gpu {plan.n_gpu_layers}",
        "PARAMETER num_ctx 4096",  # Ollama's num_ctx is per slot: 8192 / 2
        "PARAMETER num_batch 512",
        "PARAMETER num_thread 8",  # performance cores
    ]
    assert config.environment == {
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_KV_CACHE_TYPE": "q8_0",
        "OLLAMA_NUM_PARALLEL": "2",
        "OLLAMA_MAX_LOADED_MODELS": "1",
    }
    assert config.dropin.startswith("[Service]\n")
    assert 'Environment="OLLAMA_KV_CACHE_TYPE=q8_0"' in config.dropin.splitlines()


def test_vllm_arguments() -> None:
    plan = make(linux_box(64, 16), RunSettings(n_ctx=4096, type_k="q8_0", type_v="q8_0"))
    command = vllm_command(plan, uniform_model(), "org/model", linux_box(64, 16), GIB)
    assert command.argv[:5] == ["vllm", "serve", "org/model", "--max-model-len", "4096"]
    assert command.argv[command.argv.index("--gpu-memory-utilization") + 1] == "0.93"  # 15/16
    assert command.argv[-2:] == ["--kv-cache-dtype", "fp8"]
    assert any("fp8" in note for note in command.notes)


def test_vllm_on_a_machine_without_a_usable_gpu_says_so() -> None:
    assert gpu_memory_utilization(mac(32, 21.33), GIB) is None
    assert gpu_memory_utilization(linux_box(64, 80), GIB) == 0.95


def test_tensor_parallel_size_divides_the_heads() -> None:
    assert tensor_parallel_size(4, 32) == 4
    assert tensor_parallel_size(3, 32) == 2
    assert tensor_parallel_size(0, 32) == 1


def test_rpc_commands_reproduce_the_layer_split() -> None:
    nodes = [linux_box(8), dataclasses.replace(linux_box(8), name="worker-box")]
    plan = make(nodes[0], RunSettings(n_ctx=4096), nodes=nodes)
    commands = rpc_commands(plan, "/models/m.gguf", hosts=["10.0.0.2"])
    worker, head = commands.commands
    assert (worker.role, worker.layers, worker.argv[0]) == ("worker", "0-4", "rpc-server")
    assert head.role == "head" and head.layers == "5-9"
    assert head.argv[head.argv.index("--rpc") + 1] == "10.0.0.2:50052"
    # RPC devices first, then the head with its blocks + the output layer
    assert head.argv[head.argv.index("-ts") + 1] == "5,6"
    assert head.argv[head.argv.index("-ngl") + 1] == "11"
    assert "rpc-server --host 0.0.0.0 --port 50052 -c" in commands.render()


def test_exo_runs_the_same_command_everywhere() -> None:
    nodes = [linux_box(8), linux_box(8)]
    plan = make(nodes[0], RunSettings(n_ctx=4096), nodes=nodes)
    commands = exo_commands(plan)
    assert [command.argv for command in commands.commands] == [["exo"], ["exo"]]
    assert [command.layers for command in commands.commands] == ["0-4", "5-9"]
