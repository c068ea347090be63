"""Compute buffer: the peak of ggml-alloc over llama.cpp's worst-case graph.

At context creation llama.cpp reserves the graph of a prompt of
``n_tokens = min(n_ctx, n_ubatch)`` tokens attending to the whole cache
(``llama_context::sched_reserve`` / ``graph_reserve``); ggml-alloc places
the graph's intermediate tensors in one buffer per backend, reusing memory
once a tensor's last consumer has run, so the buffer is the largest set of
tensors alive at the same time. That set is reached in one of three phases
of one layer, each a number of F32 values per token times ``n_tokens``:

- attention without flash attention: the scores ``KQ`` (``n_head * n_kv``
  per token, softmax runs in place) beside the layer's residual, norm,
  Q/KQV outputs (``3 n_embd + 2 q_width``);
- attention with flash attention: only Q, K, V and the output
  (``2 q_width + 2 kv_width + 2 n_embd``);
- the FFN: gate, up and the SwiGLU product (``3 n_ff``, per used expert for
  a MoE) beside 3-4 ``n_embd`` wide tensors;
- the output: logits ``n_vocab`` per output row (``reserved_outputs``:
  one per sequence, or every token with ``logits_all`` or embeddings)
  once the KQ mask is freed.

The graph inputs live throughout: the KQ mask (``n_kv`` per token, F32, or
F16 with flash attention, one per cache: full and sliding window), token
ids, positions, output ids and the cache row indices (without flash
attention V is written transposed, one int64 index per element).

The coefficients were read off llama.cpp's printed sizes on tiny llama,
qwen2, qwen3, gemma2 and MoE models across ctx, ubatch, heads, head size,
FFN and vocabulary sizes (``benchmarks/estimate_accuracy.py`` re-checks
them); the extra ``n_embd`` of the FFN phase once ``n_ff >= 4 n_embd`` is
ggml-alloc fragmentation seen in those runs, not a tensor.

With GPUs each backend reserves its own buffer: a GPU holds the phases of
the blocks (and output) it runs; the CPU holds the input embeddings and the
inputs when everything is offloaded, or the phases of its own blocks.
The split between CPU and GPU is modelled; it was measured here with RPC
devices (llama.cpp's rpc-server, a device like a GPU to the scheduler).

Pipeline parallelism: with more than one such device, every layer and the
output offloaded and the cache beside its layers, llama.cpp's scheduler keeps
``PIPELINE_COPIES`` copies of each split's inputs so devices can work on
consecutive ubatches at once ("pipeline parallelism enabled", "sched copies
= 4"). Then the CPU buffer is 4 copies of its single-copy size plus one more
embedding row per token, and each device's grows by 3 copies of the inputs
its own layers read (a device of sliding-window layers copies only their
mask). Measured on Gemma 3 270M over 2-3 rpc-servers (ctx 2048-4096, ubatch
128-512, flash attention on and off, 1 or 4 slots, even and 1:3 splits): the
CPU within 0.01 MiB; each device exact or up to 3 % above, never below.
"""

from __future__ import annotations

from dataclasses import dataclass

from yoyu.estimate.context import ContextCells
from yoyu.estimate.kv_cache import kv_heads
from yoyu.estimate.types import RunSettings
from yoyu.models.spec import ModelSpec

_F32 = 4
_SCALAR_INPUTS = 3  # token ids, positions, output ids (one 32-bit value per token)


@dataclass(frozen=True)
class GraphDims:
    """The widths (values per token) the compute graph is built from."""

    n_embd: int
    n_head: int
    q_width: int
    kv_width: int
    v_width: int
    ffn_width: int  # n_ff, or n_ff_exp * n_expert_used for a MoE
    n_expert: int
    n_vocab: int
    n_expert_used: int = 0
    expert_biases: bool = False  # experts with bias vectors (gpt-oss)

    @classmethod
    def of(cls, spec: ModelSpec) -> GraphDims:
        heads_kv = max((kv_heads(spec, il) for il in range(spec.n_layers)), default=spec.n_head_kv)
        if spec.is_moe:
            ffn_width = (spec.expert_ff_length or spec.n_ff) * spec.n_experts_used
        else:
            ffn_width = spec.n_ff
        return cls(
            n_embd=spec.n_embd,
            n_head=spec.n_head,
            q_width=spec.n_head * spec.head_dim_k,
            kv_width=spec.head_dim_k * heads_kv,
            v_width=spec.head_dim_v * heads_kv,
            ffn_width=ffn_width,
            n_expert=spec.n_experts if spec.is_moe else 0,
            n_vocab=spec.vocab_size,
            n_expert_used=spec.n_experts_used if spec.is_moe else 0,
            expert_biases=spec.is_moe and any(t.name.endswith("_exps.bias") for t in spec.tensors),
        )


def cache_kv_lengths(
    spec: ModelSpec, cells: ContextCells, layers: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """Cells a token attends to at reserve time, per cache: full, then SWA.

    Without a unified cache each sequence has its own stream, and a token
    attends to its stream's cells only (the graph holds ``n_stream`` blocks
    of ``n_ctx_seq``), so the scores and masks are ``n_ctx_seq`` wide, not
    ``n_ctx``: 4 slots of a 16384-cell context cost what one 4096-cell does.

    ``layers``: only the caches these blocks use (a device holds a copy of
    the masks its own layers read): a device of sliding-window layers only
    attends to the window. Measured: Gemma 3 270M over two rpc-servers split
    1:3, the first device (layers 0-4, all sliding) printed 31.52 MiB of
    compute where the full-context figure was 91.55.
    """
    full = cells.n_ctx_seq
    if cells.swa_cells is None:
        return (full,)
    swa = min(cells.swa_cells, full)
    swa_layers = set(spec.swa_layers)
    blocks = range(spec.n_layers) if layers is None else [il for il in layers if il < spec.n_layers]
    uses_swa = any(il in swa_layers for il in blocks)
    uses_full = any(il not in swa_layers for il in blocks)
    if uses_swa and not uses_full:
        return (swa,)
    if uses_full and not uses_swa and layers is not None:
        return (full,)
    return (full, swa)


def input_values(dims: GraphDims, kv_lengths: tuple[int, ...], flash_attn: bool) -> float:
    """Values per token of the graph inputs, alive for the whole graph."""
    per_cache_idx = 4 if flash_attn else 2 + 2 * dims.v_width  # int64 K rows + V rows/elements
    masks = sum(kv / 2 if flash_attn else kv for kv in kv_lengths)  # F16 mask with flash attention
    return _SCALAR_INPUTS + per_cache_idx * len(kv_lengths) + masks


def attention_values(dims: GraphDims, n_kv: int, flash_attn: bool) -> int:
    if flash_attn:
        return 2 * dims.q_width + 2 * dims.kv_width + 2 * dims.n_embd
    return dims.n_head * n_kv + 3 * dims.n_embd + 2 * dims.q_width


def ffn_values(dims: GraphDims, flash_attn: bool = False) -> int:
    """Values per token alive in the FFN phase.

    With flash attention ggml-alloc leaves the FFN's tensors among holes of
    the attention's, by up to ``n_embd + q_width`` per token on real-size
    shapes (Llama 3.1 8B at ctx 16384: +4096; Gemma 3 270M: +1022 to +1294;
    DeepSeek-R1-Distill-Qwen-7B: 0). The estimate takes that ceiling, so it
    is 0 to 6 % above llama.cpp's figure there, never below.
    """
    if dims.n_expert:
        return 3 * dims.ffn_width + 4 * dims.n_embd + 2 * dims.n_expert
    if flash_attn:
        return 3 * dims.ffn_width + 4 * dims.n_embd + dims.q_width
    beside = 4 if dims.ffn_width >= 4 * dims.n_embd else 3
    return 3 * dims.ffn_width + beside * dims.n_embd


def routed_values(dims: GraphDims) -> int:
    """A device whose blocks' experts run on the CPU: the experts' outputs come back
    to it (one ``n_embd`` row per used expert, then weighted) beside its hidden state;
    its attention phase keeps one more row too. Ceilings fitted over rpc-servers:
    exact on a generated MoE (n_embd 256, 2 used: 3.51 MiB), 0.4-7 MiB over on gpt-oss
    shapes with 2-4 used (39.26-562.89 MiB printed), where attention alone was up to
    8.5 MiB short."""
    return (2 * dims.n_expert_used + 1) * dims.n_embd


def output_values(dims: GraphDims, flash_attn: bool) -> int:
    return dims.n_vocab + (7 * dims.n_embd + 7 if flash_attn else 3 * dims.n_embd + 1)


def cpu_matmul_work_bytes(spec: ModelSpec, settings: RunSettings, cells: ContextCells) -> int:
    """The CPU backend's matmul scratch (``cplan.work_size``), which no log line shows.

    Without flash attention ``KQV = V x softmax(KQ)`` converts the F32 scores to
    the cache's F16 first: ``n_kv * n_tokens * n_head * 2`` bytes, kept for the
    context's life. Measured here: it is the whole gap between the printed
    buffers and peak RSS on non-flash-attention runs. Flash attention's
    per-thread scratch is negligible.
    """
    if settings.flash_attn:
        return 0
    n_kv = max(cache_kv_lengths(spec, cells))
    return n_kv * cells.n_tokens_reserved * spec.n_head * 2


PIPELINE_COPIES = 4  # GGML_SCHED_MAX_COPIES: copies of each split's inputs when pipelined


@dataclass(frozen=True)
class ComputeSplit:
    """Compute buffer bytes per backend: ``gpu`` maps a device name to bytes."""

    cpu_bytes: int
    gpu_bytes: dict[str, int]


def compute_bytes(
    spec: ModelSpec,
    settings: RunSettings,
    cells: ContextCells,
    *,
    blocks: bool = True,
    output: bool = True,
    layers: tuple[int, ...] | None = None,
    experts_here: bool = True,
    experts_away: bool = False,
) -> int:
    """Peak bytes of one backend's compute buffer holding blocks and/or the output
    (``layers``: the blocks it runs, when not every one; see ``cache_kv_lengths``;
    ``experts_here``: some of its blocks run their own experts; ``experts_away``: the
    CPU runs the experts of some of them, ``cpu_experts_bytes``)."""
    dims = GraphDims.of(spec)
    kv_lengths = cache_kv_lengths(spec, cells, layers)
    inputs = input_values(dims, kv_lengths, settings.flash_attn)
    n_tokens = cells.n_tokens_reserved
    # the input embeddings at least; a MoE graph keeps one more row (measured on three
    # generated MoE shapes with every block offloaded: the CPU's buffer is n_embd per
    # token above a dense model's)
    embedding_rows = 2 if dims.n_expert else 1
    phases: list[float] = [(inputs + embedding_rows * dims.n_embd) * n_tokens]
    if blocks:
        attention = attention_values(dims, max(kv_lengths), settings.flash_attn)
        away = experts_away and dims.n_expert > 0
        phases.append((inputs + attention + away * dims.n_embd) * n_tokens)
        if experts_here or not dims.n_expert:
            phases.append((inputs + ffn_values(dims, settings.flash_attn)) * n_tokens)
        if away:
            phases.append((inputs + routed_values(dims)) * n_tokens)
    if output:
        phases.append(output_values(dims, settings.flash_attn) * reserved_outputs(settings, cells))
    return int(max(phases) * _F32)


def reserved_outputs(settings: RunSettings, cells: ContextCells) -> int:
    """Output rows of the worst-case graph: ``min(n_tokens, n_outputs_max)``.

    llama.cpp reserves ``n_outputs_max`` outputs per ubatch (the library's
    default: ``n_batch``, every token). llama-server asks for one per slot
    unless it embeds (``server_output_limits``), and yoyu starts
    llama-cpp-python the same way unless ``logits_all`` or embeddings need
    every token: for a 262,144-token vocabulary that is 1 MiB of logits per
    ubatch instead of 512 MiB (Gemma 3 270M: 57.76 MiB compute, not 514.50).
    """
    return min(cells.n_tokens_reserved, cells.n_batch, n_outputs_max(settings))


def n_outputs_max(settings: RunSettings) -> int:
    """The context's ``n_outputs_max``: one per sequence, or the batch when every token is."""
    return settings.n_batch if settings.logits_all or settings.embeddings else settings.n_parallel


def cpu_experts_bytes(
    spec: ModelSpec, settings: RunSettings, cells: ContextCells, devices: int = 1
) -> int:
    """The CPU's buffer when it runs the expert FFN of offloaded blocks (``--n-cpu-moe``):
    the graph inputs beside gate, up and the SwiGLU product of the used experts and one
    ``n_embd`` row, one more when the blocks are on several ``devices`` (the hidden
    state arrives from each). Measured on three generated MoE shapes over one to three
    rpc-servers (n_embd 256-512, experts 4-16, 2-4 used, ubatch 256-512, flash
    attention on and off) and three gpt-oss shapes (expert width 1440-5760, 2-4 used):
    within 0.03 MiB of llama.cpp's printed CPU compute buffer."""
    dims = GraphDims.of(spec)
    inputs = input_values(dims, cache_kv_lengths(spec, cells), settings.flash_attn)
    # one more row over several devices; one more for biased experts (measured on gpt-oss
    # shapes: +n_embd per token whatever the expert width or count used)
    rows = 1 + (devices > 1) + dims.expert_biases
    return int((inputs + 3 * dims.ffn_width + rows * dims.n_embd) * cells.n_tokens_reserved * _F32)


def split_compute(
    spec: ModelSpec,
    settings: RunSettings,
    cells: ContextCells,
    block_devices: tuple[str, ...],
    output_device: str,
    cpu_expert_layers: tuple[int, ...] = (),
) -> ComputeSplit:
    """One buffer per backend that runs part of the graph (CPU always has one);
    ``cpu_expert_layers``: offloaded blocks whose experts the CPU runs."""
    gpu_bytes: dict[str, int] = {}
    gpu_inputs: dict[str, int] = {}  # one copy of the inputs each device's layers read
    for device in dict.fromkeys((*block_devices, output_device)):
        if device == "CPU":
            continue
        own = tuple(il for il, name in enumerate(block_devices) if name == device) or None
        gpu_bytes[device] = compute_bytes(
            spec, settings, cells, blocks=own is not None, output=device == output_device,
            layers=own, experts_here=not set(own or ()) <= set(cpu_expert_layers),
            experts_away=bool(set(own or ()) & set(cpu_expert_layers)),
        )  # fmt: skip
        gpu_inputs[device] = compute_bytes(
            spec, settings, cells, blocks=False, output=False, layers=own
        )
    cpu_blocks = "CPU" in block_devices
    cpu_output = output_device == "CPU"
    cpu_bytes = compute_bytes(spec, settings, cells, blocks=cpu_blocks, output=cpu_output)
    if cpu_expert_layers:
        devices = len({name for name in block_devices if name != "CPU"})
        cpu_bytes = max(cpu_bytes, cpu_experts_bytes(spec, settings, cells, devices))
    if not pipelined(settings, gpu_bytes, cpu_blocks or cpu_output):
        return ComputeSplit(cpu_bytes=cpu_bytes, gpu_bytes=gpu_bytes)
    extra_copies = PIPELINE_COPIES - 1
    embedding_row_bytes = GraphDims.of(spec).n_embd * cells.n_tokens_reserved * _F32
    return ComputeSplit(
        cpu_bytes=PIPELINE_COPIES * cpu_bytes + embedding_row_bytes,
        gpu_bytes={
            name: size + extra_copies * gpu_inputs[name] for name, size in gpu_bytes.items()
        },
    )


def pipelined(settings: RunSettings, gpu_bytes: dict[str, int], cpu_runs_layers: bool) -> bool:
    """llama.cpp's rule for pipeline parallelism (``llama_context``): several devices,
    every layer and the output on them, the KV cache beside its layers, no tensor
    placed by a pattern (``has_tensor_overrides``: ``--n-cpu-moe`` sets one)."""
    return (
        len(gpu_bytes) > 1
        and not cpu_runs_layers
        and settings.offload_kqv
        and not settings.n_cpu_moe  # an override pattern, even one that matches nothing
    )
