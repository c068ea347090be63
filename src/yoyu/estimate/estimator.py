"""``estimate_memory``: bytes per component per device for a llama.cpp run.

The one public entry of ``yoyu.estimate``. Pure: it reads the model's tensor
table and the machine description it is given, never the disk or the live
system, so a plan can be made for a machine yoyu is not running on. The
engine named in the settings (``yoyu.estimate.engine``) is part of the
answer: its process, its sliding-window cache choice and the arrays it keeps
around llama.cpp are counted on the host.
"""

from __future__ import annotations

from collections import defaultdict

from yoyu.estimate.compute_buffer import cpu_matmul_work_bytes, split_compute
from yoyu.estimate.context import ContextCells, resolve_context
from yoyu.estimate.engine import VLLM_NAME, engine_profile
from yoyu.estimate.kv_cache import is_mla_vless, kv_layer_bytes
from yoyu.estimate.output_buffer import output_buffer_bytes
from yoyu.estimate.overhead import (
    engine_side_bytes,
    process_overhead_bytes,
    runtime_overhead_bytes,
)
from yoyu.estimate.repack import repack_bytes, repacked_tensors
from yoyu.estimate.types import DeviceMemory, MemoryEstimate, RunSettings
from yoyu.estimate.vllm import estimate_vllm_memory
from yoyu.estimate.weights import (
    CPU,
    LayerPlacement,
    cpu_expert_layers,
    device_tensor_bytes,
    mapped_span_bytes,
    place_layers,
    tied_output_copy,
)
from yoyu.i18n import message_of
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec, TensorInfo
from yoyu.units import format_bytes


def estimate_memory(spec: ModelSpec, machine: Machine, settings: RunSettings) -> MemoryEstimate:
    """Predict what llama.cpp allocates on each device for ``spec`` under ``settings``
    (or, for the vLLM engine, what vLLM takes: ``yoyu.estimate.vllm``)."""
    if settings.engine == VLLM_NAME:
        return estimate_vllm_memory(spec, machine, settings)
    cells = resolve_context(spec, settings)
    kv_by_layer = kv_layer_bytes(spec, settings, cells)
    placement = place_layers(spec, settings, machine)
    tensors = _tensors_by_device(spec, placement)
    cpu_tensors = tensors.get(CPU, [])
    repacked = repacked_tensors(cpu_tensors, machine, settings)
    compute = split_compute(
        spec, settings, cells, placement.blocks, placement.output, cpu_expert_layers(placement)
    )
    kv_by_device = _kv_by_device(kv_by_layer, placement, settings.offload_kqv)
    cpu_runs_attention = CPU in placement.blocks
    cpu_work = cpu_matmul_work_bytes(spec, settings, cells) if cpu_runs_attention else 0
    maps_file = _maps_file(spec, settings)
    mapped = _mapped_tensors(cpu_tensors, repacked)
    cpu = DeviceMemory(
        name=CPU,
        kind="cpu",
        layers=placement.layers_on(CPU),
        weights_bytes=mapped_span_bytes(mapped) if maps_file else device_tensor_bytes(CPU, mapped),
        repack_bytes=repack_bytes(repacked),
        kv_bytes=kv_by_device.get(CPU, 0),
        compute_bytes=compute.cpu_bytes,
        output_bytes=output_buffer_bytes(spec, settings, cells),
        engine_bytes=engine_side_bytes(spec, settings, cells),
        overhead_bytes=process_overhead_bytes(spec, settings) + cpu_work,
    )
    gpus = tuple(
        DeviceMemory(
            name=name,
            kind="gpu",
            layers=placement.layers_on(name),
            weights_bytes=device_tensor_bytes(name, tensors.get(name, [])),
            kv_bytes=kv_by_device.get(name, 0),
            compute_bytes=compute.gpu_bytes.get(name, 0),
            overhead_bytes=runtime_overhead_bytes(name),
        )
        for name in placement.gpu_names
        if placement.layers_on(name)
    )
    return MemoryEstimate(
        settings=settings,
        n_ctx=cells.n_ctx,
        n_ctx_swa=cells.swa_cells,
        devices=(cpu, *gpus),
        mapped_bytes=mapped_span_bytes(mapped) if maps_file else 0,
        notes=_notes(spec, settings, cells, repacked) + _engine_notes(spec, settings, cpu),
    )


def _tensors_by_device(spec: ModelSpec, placement: LayerPlacement) -> dict[str, list[TensorInfo]]:
    by_device: dict[str, list[TensorInfo]] = defaultdict(list)
    for tensor in spec.tensors:
        by_device[placement.device_of(tensor)].append(tensor)
    tied = tied_output_copy(spec, placement)
    if tied is not None:
        by_device[placement.output].append(tied)
    return by_device


def _maps_file(spec: ModelSpec, settings: RunSettings) -> bool:
    """llama.cpp maps a GGUF file as is; other sources (a catalog entry, a
    safetensors folder) have no GGUF layout yet, so their tensor offsets say
    nothing about the span that will be mapped once converted."""
    return settings.use_mmap and spec.format == "gguf"


def _mapped_tensors(
    cpu_tensors: list[TensorInfo], repacked: tuple[TensorInfo, ...]
) -> list[TensorInfo]:
    """The CPU tensors llama.cpp serves from the file (or, without mmap, reads into
    its CPU buffer): all but the repacked ones, which live in the CPU_REPACK copy.

    With mmap the span between the first and last of them stays mapped; the
    originals of repacked tensors outside it are read once through the page cache
    and unmapped after loading (``unmap_fragment``). That matters for experts
    kept on the CPU beside an offloaded model: measured on a generated Q4_0 MoE
    over an rpc-server with ``--n-cpu-moe 2``, CPU_Mapped 0.04 MiB (only the token
    embeddings) and CPU_REPACK 3.38 MiB, where the span of every CPU tensor is 3.61.
    """
    repacked_names = {tensor.name for tensor in repacked}
    return [tensor for tensor in cpu_tensors if tensor.name not in repacked_names]


def _kv_by_device(
    kv_by_layer: tuple[int, ...], placement: LayerPlacement, offload_kqv: bool
) -> dict[str, int]:
    by_device: dict[str, int] = defaultdict(int)
    for layer, kv_bytes in enumerate(kv_by_layer):
        by_device[placement.blocks[layer] if offload_kqv else CPU] += kv_bytes
    return dict(by_device)


def _notes(
    spec: ModelSpec, settings: RunSettings, cells: ContextCells, repacked: tuple[TensorInfo, ...]
) -> tuple[str, ...]:
    notes = []
    requested = settings.n_ctx or spec.context_length
    if cells.n_ctx != requested:
        notes.append(
            message_of(
                "llama.cpp pads the context from {requested} to {cells} cells",
                requested=requested, cells=cells.n_ctx,
            )
        )  # fmt: skip
    if cells.swa_cells is not None:
        notes.append(
            message_of(
                "sliding-window layers ({swa} of {layers}) keep {cells} cells per sequence",
                swa=len(spec.swa_layers), layers=spec.n_layers, cells=cells.swa_cells,
            )
        )  # fmt: skip
    if is_mla_vless(spec):
        notes.append(
            message_of("MLA model: the cache holds the compressed latent only (no V cache)")
        )
    if repacked:
        notes.append(
            message_of(
                "{count} weight tensors are repacked for this CPU (CPU_REPACK copy)",
                count=len(repacked),
            )
        )
    return tuple(notes)


def _engine_notes(spec: ModelSpec, settings: RunSettings, cpu: DeviceMemory) -> tuple[str, ...]:
    profile = engine_profile(settings.engine)
    notes = [
        message_of(
            "planned for {program}: its process and vocabulary are in the overhead",
            program=profile.program,
        )
    ]
    if settings.logits_all:
        notes.append(
            message_of(
                "logits_all keeps every token's logits ({vocab} floats per token, {size} at this "
                "context): turn it off unless completion logprobs are needed",
                vocab=spec.vocab_size, size=format_bytes(cpu.engine_bytes),
            )
        )  # fmt: skip
    if profile.has_ctx_checkpoints and cpu.engine_bytes and settings.ctx_checkpoints:
        notes.append(
            message_of(
                "{count} sliding-window checkpoint(s) per slot are counted as engine memory "
                "(ctx_checkpoints)",
                count=settings.ctx_checkpoints,
            )
        )
    return tuple(notes)
