"""Weights split, repack decision, output buffer and compute phases on hand-built specs."""

from __future__ import annotations

import dataclasses
from typing import Any

from yoyu.estimate.compute_buffer import compute_bytes
from yoyu.estimate.context import resolve_context
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.output_buffer import output_buffer_bytes
from yoyu.estimate.repack import repacked_tensors
from yoyu.estimate.types import RunSettings
from yoyu.estimate.weights import place_layers
from yoyu.machine.types import CpuInfo, GpuInfo, Machine, MemoryInfo, OsInfo
from yoyu.models.spec import ModelSpec, TensorInfo

GIB = 1024**3


def machine(gpus: int = 0, simd: tuple[str, ...] = ("avx2",)) -> Machine:
    return Machine(
        name="m", source="test", os=OsInfo("Linux", "6", "", "x86_64"),
        cpu=CpuInfo("x", 8, 16, simd), memory=MemoryInfo(64 * GIB, 60 * GIB, 0, 0),
        gpus=tuple(GpuInfo("nvidia", i, "g", 16 * GIB, 16 * GIB, 0) for i in range(gpus)),
    )  # fmt: skip


def tiny_spec(n_layers: int = 4, tied: bool = False, weight_type: str = "Q4_0") -> ModelSpec:
    """A table laid out like a GGUF: token_embd, blocks, output_norm, output."""
    rows: list[tuple[str, tuple[int, ...], str, int | None]] = [
        ("token_embd.weight", (256, 1000), weight_type, None)
    ]
    for il in range(n_layers):
        rows += [
            (f"blk.{il}.attn_norm.weight", (256,), "F32", il),
            (f"blk.{il}.attn_q.weight", (256, 256), weight_type, il),
            (f"blk.{il}.ffn_down.weight", (512, 256), weight_type, il),
        ]
    rows.append(("output_norm.weight", (256,), "F32", None))
    if not tied:
        rows.append(("output.weight", (256, 1000), weight_type, None))
    tensors, offset = [], 1000
    for name, shape, type_name, layer in rows:
        count = 1
        for dim in shape:
            count *= dim
        n_bytes = count * 4 if type_name == "F32" else count // 32 * 18
        tensors.append(TensorInfo(name, type_name, shape, count, n_bytes, layer, 0, offset))
        offset += (n_bytes + 31) // 32 * 32
    return ModelSpec(
        name="t", architecture="llama", format="gguf", paths=(), file_bytes=offset,
        quantization=weight_type, n_layers=n_layers, n_embd=256, n_head=8, n_head_kv=2,
        head_dim_k=32, head_dim_v=32, n_ff=512, vocab_size=1000, context_length=4096,
        params_total=0, params_active=0, tensor_bytes=0, layer_bytes=(), nonrepeating_bytes=0,
        type_bytes={}, tensors=tuple(tensors),
    )  # fmt: skip


def test_output_layer_is_offloaded_first_and_token_embd_stays_on_cpu() -> None:
    spec = tiny_spec(n_layers=4)
    one = place_layers(spec, RunSettings(n_gpu_layers=1), machine(gpus=1))
    assert one.output == "CUDA0" and set(one.blocks) == {"CPU"}
    four = place_layers(spec, RunSettings(n_gpu_layers=4), machine(gpus=1))
    assert four.blocks == ("CPU", "CUDA0", "CUDA0", "CUDA0")  # ngl = n_layer leaves block 0
    full = place_layers(spec, RunSettings(n_gpu_layers=-1), machine(gpus=1))
    assert set(full.blocks) == {"CUDA0"}
    embd = next(t for t in spec.tensors if t.name == "token_embd.weight")
    assert full.device_of(embd) == "CPU"


def test_a_vision_tower_goes_where_the_output_layer_goes() -> None:
    """Offloaded, the vision tower and projector count in VRAM (an mmproj is offloaded
    by default, Ollama puts its projector on the GPU); with nothing offloaded, in RAM."""
    plain = tiny_spec(n_layers=2)
    vision = TensorInfo("v.vision_tower.weight", "F16", (1_000_000,), 1_000_000, 2_000_000,
                        None, 0, plain.file_bytes)  # fmt: skip
    projector = dataclasses.replace(vision, name="mm.0.weight", n_bytes=20_000)
    spec = dataclasses.replace(plain, tensors=(*plain.tensors, vision, projector))
    offloaded = place_layers(spec, RunSettings(n_gpu_layers=1), machine(gpus=1))
    assert offloaded.device_of(vision) == offloaded.device_of(projector) == "CUDA0"
    on_cpu = place_layers(spec, RunSettings(n_gpu_layers=0), machine(gpus=1))
    assert on_cpu.device_of(vision) == "CPU"
    with_tower = estimate_memory(spec, machine(gpus=1), RunSettings(n_gpu_layers=-1))
    without = estimate_memory(plain, machine(gpus=1), RunSettings(n_gpu_layers=-1))
    added = with_tower.device("CUDA0").weights_bytes - without.device("CUDA0").weights_bytes
    assert added >= 2_020_000  # both tensors, padded to CUDA's alignment
    assert with_tower.device("CPU").weights_bytes == without.device("CPU").weights_bytes


def test_tensor_split_shares_layers_between_gpus() -> None:
    spec = tiny_spec(n_layers=4)
    split = place_layers(spec, RunSettings(n_gpu_layers=-1, tensor_split=(3, 1)), machine(gpus=2))
    # slots 0..4 at shares 0, .2, .4, .6, .8 against cumulative (.75, 1.0)
    assert split.blocks == ("CUDA0", "CUDA0", "CUDA0", "CUDA0") and split.output == "CUDA1"


def test_no_gpu_means_everything_on_cpu_whatever_ngl() -> None:
    placement = place_layers(tiny_spec(), RunSettings(n_gpu_layers=-1), machine(gpus=0))
    assert set(placement.blocks) == {"CPU"} and placement.output == "CPU"


def test_tied_embeddings_are_copied_to_the_output_gpu() -> None:
    tied = tiny_spec(tied=True)
    embd_bytes = next(t.n_bytes for t in tied.tensors if t.name == "token_embd.weight")
    estimate = estimate_memory(tied, machine(gpus=1), RunSettings(n_gpu_layers=-1))
    gpu = estimate.device("CUDA0")
    blocks = sum(t.n_bytes for t in tied.tensors if t.layer is not None)
    assert gpu.weights_bytes >= blocks + embd_bytes  # the copy is there (plus CUDA padding)
    assert estimate.device("CPU").weights_bytes >= embd_bytes  # and the original stays


def test_cpu_mapped_span_covers_gpu_tensors_between_cpu_ones() -> None:
    spec = tiny_spec(n_layers=4)
    cpu_only = estimate_memory(spec, machine(), RunSettings())
    tensors = spec.tensors
    # output.weight (last, Q4_0) lives in the CPU_REPACK copy; the mapping ends at output_norm
    assert tensors[-1].name == "output.weight" and tensors[-2].name == "output_norm.weight"
    assert cpu_only.mapped_bytes == tensors[-2].offset + tensors[-2].n_bytes - tensors[0].offset
    unrepacked = estimate_memory(spec, machine(), RunSettings(repack=False))
    assert unrepacked.mapped_bytes == tensors[-1].offset + tensors[-1].n_bytes - tensors[0].offset
    offloaded = estimate_memory(spec, machine(gpus=1), RunSettings(n_gpu_layers=-1))
    assert offloaded.mapped_bytes == tensors[0].n_bytes  # token_embd only


def test_repack_on_avx2_cpu_only_never_token_embd_nor_norms() -> None:
    spec = tiny_spec(n_layers=2)
    repacked = repacked_tensors(spec.tensors, machine(), RunSettings())
    names = {t.name for t in repacked}
    assert "token_embd.weight" not in names and not any("norm" in n for n in names)
    assert {"blk.0.attn_q.weight", "blk.1.ffn_down.weight", "output.weight"} <= names
    estimate = estimate_memory(spec, machine(), RunSettings())
    assert estimate.device("CPU").repack_bytes == sum(t.n_bytes for t in repacked)


def test_no_repack_with_a_gpu_or_without_simd_or_when_disabled() -> None:
    spec = tiny_spec(n_layers=2)
    assert repacked_tensors(spec.tensors, machine(gpus=1), RunSettings()) == ()
    assert repacked_tensors(spec.tensors, machine(simd=("sse4_2",)), RunSettings()) == ()
    assert repacked_tensors(spec.tensors, machine(), RunSettings(repack=False)) == ()
    q8 = tiny_spec(n_layers=2, weight_type="Q8_0")
    assert repacked_tensors(q8.tensors, machine(), RunSettings()) == ()  # x86 does not repack Q8_0
    assert repacked_tensors(q8.tensors, machine(simd=("neon", "i8mm")), RunSettings()) != ()


def test_output_buffer_is_vocab_times_sequences_not_ubatch() -> None:
    spec = tiny_spec()

    def output(**settings: Any) -> int:
        run = RunSettings(**settings)
        return output_buffer_bytes(spec, run, resolve_context(spec, run))

    assert output() == 1000 * 4
    assert output(n_parallel=4, engine="llama-server") == 1000 * 4 * 4
    assert output(embeddings=True) == (1000 + 256) * 4
    # every token's logits: llama.cpp grows the buffer to a whole batch of rows
    assert output(logits_all=True, n_batch=256) == 1000 * 4 * 256


def test_compute_without_flash_attention_grows_with_context_times_heads() -> None:
    spec = tiny_spec()
    small = RunSettings(n_ctx=4096)
    big = RunSettings(n_ctx=8192)
    growth = compute_bytes(spec, big, resolve_context(spec, big)) - compute_bytes(
        spec, small, resolve_context(spec, small)
    )
    # KQ scores (8 heads) + mask (1), 4096 more cells, 512 tokens, F32
    assert growth == 4096 * 512 * (8 + 1) * 4
    flash = RunSettings(n_ctx=8192, flash_attn=True)
    assert (
        compute_bytes(spec, flash, resolve_context(spec, flash))
        < compute_bytes(spec, big, resolve_context(spec, big)) // 10
    )


def test_a_catalog_model_counts_every_cpu_weight_despite_having_no_file_offsets() -> None:
    """Catalog entries have no GGUF layout (all offsets 0): the mmap span rule
    must not shrink their CPU weights to nothing."""
    from yoyu.estimate.estimator import estimate_memory
    from yoyu.estimate.types import RunSettings
    from yoyu.machine.presets import load_machine
    from yoyu.models.catalog import catalog_model

    spec = catalog_model("deepseek-r1:32b")
    assert spec is not None and spec.format == "catalog"
    estimate = estimate_memory(spec, load_machine("linux-cpu-32g"), RunSettings(n_ctx=4096))
    cpu = estimate.device("CPU")
    assert cpu.weights_bytes + cpu.repack_bytes >= spec.tensor_bytes  # Q4_K rows repacked
    assert cpu.repack_bytes > 0  # catalog tensors carry real shapes, so CPU_REPACK applies
    assert estimate.mapped_bytes == 0


def rpc_machine(endpoints: tuple[str, ...]) -> Machine:
    gpus = tuple(GpuInfo("rpc", i, ep, 16 * GIB, 16 * GIB, 0) for i, ep in enumerate(endpoints))
    return dataclasses.replace(machine(), gpus=gpus)


def test_rpc_servers_are_devices_named_by_endpoint_and_never_repack() -> None:
    nodes = rpc_machine(("10.0.0.2:50052", "10.0.0.3:50052"))
    split = place_layers(tiny_spec(), RunSettings(n_gpu_layers=-1, tensor_split=(1, 1)), nodes)
    assert split.gpu_names == ("RPC[10.0.0.2:50052]", "RPC[10.0.0.3:50052]")
    assert split.output == "RPC[10.0.0.3:50052]"
    estimate = estimate_memory(tiny_spec(), nodes, RunSettings(n_gpu_layers=-1))
    assert all(device.overhead_bytes == 0 for device in estimate.devices[1:])  # the worker's
    assert estimate.devices[0].repack_bytes == 0


def test_several_devices_holding_every_layer_keep_four_copies_of_their_inputs() -> None:
    """llama.cpp's pipeline parallelism (its log: "sched copies = 4")."""
    spec, settings = tiny_spec(), RunSettings(n_ctx=512, n_gpu_layers=-1)
    single = estimate_memory(spec, rpc_machine(("a:1",)), settings)
    pipelined = estimate_memory(spec, rpc_machine(("a:1", "b:1")), settings)
    cpu_once = single.devices[0].compute_bytes
    embedding_row_bytes = 256 * 512 * 4
    assert pipelined.devices[0].compute_bytes == 4 * cpu_once + embedding_row_bytes
    one_device_compute = single.devices[1].compute_bytes
    assert all(d.compute_bytes >= one_device_compute + 3 * cpu_once for d in pipelined.devices[1:])
    partial = estimate_memory(
        spec, rpc_machine(("a:1", "b:1")), dataclasses.replace(settings, n_gpu_layers=3)
    )
    assert all(d.compute_bytes <= one_device_compute for d in partial.devices[1:])  # no pipeline


def apple_machine() -> Machine:
    gpu = GpuInfo("apple", 0, "Apple M2 Max", 24 * GIB, 24 * GIB, 0)
    return dataclasses.replace(machine(simd=("neon", "dotprod")), gpus=(gpu,))


def test_cpu_layers_beside_metal_or_rpc_devices_are_repacked_but_not_beside_cuda() -> None:
    """llama.cpp puts CPU weights in the first device's pinned host buffer when it has
    one (CUDA/HIP, SYCL/Vulkan); Metal and RPC have none, so CPU_REPACK is used."""
    settings = RunSettings(n_gpu_layers=2)  # blocks 0-2 stay on the CPU
    for beside in (rpc_machine(("a:1",)), apple_machine()):
        cpu = estimate_memory(tiny_spec(), beside, settings).device("CPU")
        assert cpu.repack_bytes > 0
    assert estimate_memory(tiny_spec(), machine(gpus=1), settings).device("CPU").repack_bytes == 0


def test_a_device_of_sliding_window_layers_only_attends_to_the_window() -> None:
    """Its compute does not grow with the context; the device with a full-attention
    layer does (each device holds the masks of its own layers' caches)."""
    spec = dataclasses.replace(tiny_spec(n_layers=4), sliding_window=128, swa_layers=(0, 1, 2))
    nodes = rpc_machine(("a:1", "b:1"))

    def compute(n_ctx: int) -> tuple[int, int]:
        settings = RunSettings(n_ctx=n_ctx, n_gpu_layers=-1, engine="llama-server")
        estimate = estimate_memory(spec, nodes, settings)
        assert place_layers(spec, settings, nodes).blocks == ("RPC[a:1]",) * 3 + ("RPC[b:1]",)
        return estimate.device("RPC[a:1]").compute_bytes, estimate.device("RPC[b:1]").compute_bytes

    (window_4k, full_4k), (window_16k, full_16k) = compute(4096), compute(16384)
    assert window_16k == window_4k and full_16k > full_4k
