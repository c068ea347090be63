"""MoE experts kept on the CPU beside offloaded blocks (llama-server's ``--n-cpu-moe N``).

The figures each rule stands for were measured with llama-server and an
rpc-server on 127.0.0.1 (``tests/real/test_real_moe_rpc.py`` checks them on
real loads); here they are checked on generated MoE files, fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from yoyu.errors import SettingsError
from yoyu.estimate.compute_buffer import cpu_experts_bytes
from yoyu.estimate.context import resolve_context
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import RunSettings
from yoyu.estimate.weights import moved_by_cpu_moe, place_layers
from yoyu.machine.types import CpuInfo, GpuInfo, Machine, MemoryInfo, OsInfo
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.models.spec import ModelSpec
from yoyu.testing.tiny_models import write_tiny_model

GIB = 1024**3
MIB = 1024**2
SHAPE = {"n_layers": 4, "n_embd": 256, "n_head": 8, "n_head_kv": 2, "n_ff": 512}
MOE = {**SHAPE, "vocab_size": 259, "n_experts": 8, "n_experts_used": 2}


def rpc_machine(*endpoints: str) -> Machine:
    gpus = tuple(GpuInfo("rpc", i, ep, 16 * GIB, 16 * GIB, 0) for i, ep in enumerate(endpoints))
    return Machine(
        name="m", source="test", os=OsInfo("Linux", "6", "", "x86_64"),
        cpu=CpuInfo("x", 2, 2, ("avx2", "avx512f")), memory=MemoryInfo(64 * GIB, 60 * GIB, 0, 0),
        gpus=gpus,
    )  # fmt: skip


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    path = tmp_path_factory.mktemp("moe") / "moe.gguf"
    write_tiny_model(path, "moe", weight_type="Q4_0", **MOE)
    return read_gguf_model(path)


def server(**fields: object) -> RunSettings:
    return RunSettings(n_ctx=1024, n_gpu_layers=-1, engine="llama-server", **fields)  # type: ignore[arg-type]


def test_the_pattern_is_llama_cpps_expert_stacks_not_the_router_nor_shared_experts() -> None:
    for name in ("blk.0.ffn_up_exps.weight", "blk.3.ffn_gate_up_exps.weight",
                 "blk.1.ffn_down_exps.bias", "blk.2.ffn_down_chexps.weight"):  # fmt: skip
        assert moved_by_cpu_moe(name), name
    for name in ("blk.0.ffn_gate_inp.weight", "blk.0.ffn_up_shexp.weight", "blk.0.ffn_up.weight"):
        assert not moved_by_cpu_moe(name), name


def test_the_experts_of_the_first_n_blocks_move_to_the_cpu_and_nothing_else(
    moe: ModelSpec,
) -> None:
    device = "RPC[a:1]"
    placement = place_layers(moe, server(n_cpu_moe=2), rpc_machine("a:1"))
    on_cpu = {t.name for t in moe.tensors if placement.device_of(t) == "CPU"}
    expected = {"token_embd.weight"} | {
        t.name for t in moe.tensors if t.layer in (0, 1) and moved_by_cpu_moe(t.name)
    }
    assert on_cpu == expected and len(expected) == 7  # up, gate, down of two blocks
    assert placement.blocks == (device,) * 4  # the blocks themselves stay offloaded
    assert place_layers(moe, server(n_cpu_moe=99), rpc_machine("a:1")).cpu_expert_blocks == 4


def test_moved_experts_leave_the_device_for_the_cpus_repacked_copy(moe: ModelSpec) -> None:
    """Measured (Q4_0 over an rpc-server, --n-cpu-moe 2): CPU_Mapped 0.04 MiB (the token
    embeddings only), CPU_REPACK 3.38 MiB, RPC0 model 3.80 MiB; all off: RPC0 7.18."""
    nodes = rpc_machine("a:1")
    offloaded = estimate_memory(moe, nodes, server())
    two = estimate_memory(moe, nodes, server(n_cpu_moe=2))
    experts = sum(t.n_bytes for t in moe.tensors if t.layer in (0, 1) and moved_by_cpu_moe(t.name))
    device = "RPC[a:1]"
    assert two.device(device).weights_bytes == offloaded.device(device).weights_bytes - experts
    assert two.device("CPU").repack_bytes == experts  # Q4_0 repacked for AVX2, same size
    # the repacked originals are read once and unmapped: the mapping stays the embeddings'
    assert two.mapped_bytes == offloaded.mapped_bytes
    assert two.device("CPU").weights_bytes == offloaded.device("CPU").weights_bytes


def test_the_cpu_buffer_holds_the_experts_phase_and_nothing_is_pipelined(moe: ModelSpec) -> None:
    """llama.cpp turns pipeline parallelism off when tensors are overridden, and the CPU
    runs the experts' FFN for a ubatch (measured 8.76 MiB at ubatch 512, 3.26 without;
    over two devices 9.27: one more row of the hidden state)."""
    settings = server(n_cpu_moe=1)
    cells = resolve_context(moe, settings)
    experts_bytes = cpu_experts_bytes(moe, settings, cells)
    one_device = estimate_memory(moe, rpc_machine("a:1"), settings)
    assert one_device.device("CPU").compute_bytes == experts_bytes
    nodes = rpc_machine("a:1", "b:1")
    with_experts = estimate_memory(moe, nodes, settings)
    row_bytes = moe.n_embd * cells.n_tokens_reserved * 4
    assert cpu_experts_bytes(moe, settings, cells, devices=2) == experts_bytes + row_bytes
    assert with_experts.device("CPU").compute_bytes == experts_bytes + row_bytes
    pipelined = estimate_memory(moe, nodes, server())
    assert with_experts.device("CPU").compute_bytes < pipelined.device("CPU").compute_bytes
    for name in ("RPC[a:1]", "RPC[b:1]"):
        assert with_experts.device(name).compute_bytes < pipelined.device(name).compute_bytes


def test_a_device_whose_blocks_all_send_their_experts_away_skips_the_ffn_phase(
    moe: ModelSpec,
) -> None:
    """Measured over two rpc-servers (fa on, ubatch 512): the first device, whose three
    blocks' experts are all on the CPU, 3.51 MiB; 7.03 with one block's experts kept."""
    nodes = rpc_machine("a:1", "b:1")

    def first_device(n_cpu_moe: int) -> int:
        settings = server(n_cpu_moe=n_cpu_moe, tensor_split=(1.0, 1.0), flash_attn=True)
        assert place_layers(moe, settings, nodes).blocks[:3] == ("RPC[a:1]",) * 3
        return estimate_memory(moe, nodes, settings).device("RPC[a:1]").compute_bytes

    assert 3.51 * MIB <= first_device(3) < 4 * MIB < 7.03 * MIB <= first_device(2)


def test_a_dense_model_ignores_n_cpu_moe(tmp_path: Path) -> None:
    path = tmp_path / "dense.gguf"
    write_tiny_model(path, "llama", weight_type="Q4_0", **SHAPE, vocab_size=259)
    dense = read_gguf_model(path)
    nodes = rpc_machine("a:1")
    assert (
        estimate_memory(dense, nodes, server(n_cpu_moe=2)).devices
        == estimate_memory(dense, nodes, server()).devices
    )
    # but its pattern still turns llama.cpp's pipeline parallelism off over two devices
    two = rpc_machine("a:1", "b:1")
    plain = estimate_memory(dense, two, server()).device("CPU").compute_bytes
    assert estimate_memory(dense, two, server(n_cpu_moe=2)).device("CPU").compute_bytes < plain


def test_only_an_engine_that_places_tensors_takes_n_cpu_moe() -> None:
    with pytest.raises(SettingsError, match="llama-server engine"):
        RunSettings(n_cpu_moe=2, engine="llama-cpp-python")
    with pytest.raises(SettingsError, match="llama-server engine"):
        RunSettings(n_cpu_moe=2, engine="ollama")
    with pytest.raises(SettingsError, match="0 or more"):
        RunSettings(n_cpu_moe=-1, engine="llama-server")
