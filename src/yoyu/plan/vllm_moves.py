"""Fitting moves for vLLM: its memory is a pool it takes at start, so the moves size the pool.

llama.cpp's moves (flash attention, a smaller ubatch, fewer GPU layers) mean
nothing to vLLM: whatever the traffic, vLLM holds its weights, a fixed KV
pool and its processes. What a user can change, cheapest first:

- a smaller pool (``--kv-cache-memory-bytes``; on a GPU a lower
  ``--gpu-memory-utilization`` says the same): fewer sequences at once, the
  same answers. vLLM refuses to start unless the pool holds one sequence of
  ``max_model_len`` tokens, so that is the smallest pool offered;
- a shorter ``max_model_len`` where even that pool does not fit;
- an fp8 KV cache (``--kv-cache-dtype fp8``): half the bytes a token, a little
  quality;
- on a GPU, fewer sequences at once (``--max-num-seqs``): the sampler's logits
  of every sequence are part of the profiled activation peak.

Each is assessed by the same estimator as the plan, with the largest pool
that reaches the best verdict and risk found (a search over whole blocks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from yoyu.estimate.types import RunSettings
from yoyu.estimate.vllm import kv_bytes_per_token, pool_block_tokens, vllm_gpus, vllm_kv_type
from yoyu.machine.types import Machine
from yoyu.plan.assess import Assessment
from yoyu.units import format_bytes

Judge = Callable[[RunSettings], Assessment]
Found = tuple[str, dict[str, object], Assessment]  # label, settings change, its assessment
CTX_LADDER = (131072, 65536, 32768, 16384, 8192, 4096, 2048)
SEQS_LADDER = (128, 64, 32, 16, 8)


def vllm_moves(current: Assessment, machine: Machine, judge: Judge) -> list[tuple[str, Found]]:
    """(action, found) for each vLLM move that improves on ``current``, cheapest first."""
    settings = current.placement.settings
    found = [
        ("kv_pool", _smaller_pool(current, machine, settings, judge)),
        ("reduce_ctx", _shorter_context(current, machine, settings, judge)),
        ("quantize_kv", _fp8_cache(current, machine, settings, judge)),
        ("fewer_seqs", _fewer_sequences(current, settings, judge)),
    ]
    return [(action, move) for action, move in found if move is not None]


def _smaller_pool(current: Assessment, machine: Machine, settings: RunSettings,
                  judge: Judge) -> Found | None:  # fmt: skip
    best = _largest_pool(current, settings, judge)
    if best is None:
        return None
    pool, result = best
    label = f"KV pool {format_bytes(settings.kv_cache_bytes or 0)} -> {format_bytes(pool)}"
    label += _pool_detail(current, machine, settings, result)
    return label, {"kv_cache_bytes": pool}, result


def _shorter_context(current: Assessment, machine: Machine, settings: RunSettings,
                     judge: Judge) -> Found | None:  # fmt: skip
    """Only where no pool holding one sequence of today's length fits."""
    if _largest_pool(current, settings, judge, need_ideal=True) is not None:
        return None
    best: Found | None = None
    for n_ctx in (ctx for ctx in CTX_LADDER if ctx < settings.n_ctx):
        shorter = dataclasses.replace(settings, n_ctx=n_ctx)
        pool = _largest_pool(current, shorter, judge)
        if pool is None:
            continue
        label = f"max_model_len {settings.n_ctx:,} -> {n_ctx:,}, KV pool {format_bytes(pool[0])}"
        found: Found = (label, {"n_ctx": n_ctx, "kv_cache_bytes": pool[0]}, pool[1])
        if best is None or pool[1].rank() < best[2].rank():
            best = found
        if pool[1].is_ideal:
            break
    return best


def _fp8_cache(current: Assessment, machine: Machine, settings: RunSettings,
               judge: Judge) -> Found | None:  # fmt: skip
    """fp8 halves a token's bytes: worth its quality only where the pool does not fit."""
    if vllm_kv_type(settings) == "fp8":
        return None
    if _largest_pool(current, settings, judge, need_ideal=True) is not None:
        return None
    fp8 = dataclasses.replace(settings, type_k="q8_0", type_v="q8_0")
    best = _largest_pool(current, fp8, judge)
    if best is None:
        return None
    pool, result = best
    label = f"KV cache auto -> fp8, KV pool {format_bytes(pool)}"
    label += _pool_detail(current, machine, fp8, result)
    return label, {"type_k": "q8_0", "type_v": "q8_0", "kv_cache_bytes": pool}, result


def _fewer_sequences(current: Assessment, settings: RunSettings, judge: Judge) -> Found | None:
    """On a GPU each sequence's logits are in the activation peak vLLM profiles."""
    if not _on_gpu(current):
        return None
    for seqs in (count for count in SEQS_LADDER if count < settings.n_parallel):
        result = judge(dataclasses.replace(settings, n_parallel=seqs))
        if result.fits and result.rank() < current.rank():
            return f"max_num_seqs {settings.n_parallel} -> {seqs}", {"n_parallel": seqs}, result
    return None


def _largest_pool(
    current: Assessment, settings: RunSettings, judge: Judge, *, need_ideal: bool = False
) -> tuple[int, Assessment] | None:
    """The largest pool (whole blocks, at least one sequence of ``n_ctx``) whose plan is as
    good as the smallest pool's, and better than ``current``; None if none is."""
    block_tokens = pool_block_tokens(_on_gpu(current))
    per_block = kv_bytes_per_token(current.spec, vllm_kv_type(settings)) * block_tokens
    if per_block <= 0:
        return None
    blocks_now = (settings.kv_cache_bytes or 0) // per_block
    fewest = -(-settings.n_ctx // block_tokens)  # vLLM starts only if one sequence fits
    if fewest >= blocks_now and settings.n_ctx == current.placement.settings.n_ctx:
        return None  # the pool is already the smallest vLLM accepts

    def at(blocks: int) -> Assessment:
        return judge(dataclasses.replace(settings, kv_cache_bytes=blocks * per_block))

    smallest = at(fewest)
    if not (smallest.fits and smallest.rank() < current.rank()):
        return None
    if need_ideal and not smallest.is_ideal:
        return None
    low, high = fewest, max(fewest, blocks_now - 1)
    while low < high:  # the largest block count still as good as the smallest pool
        middle = (low + high + 1) // 2
        if at(middle).rank() <= smallest.rank():
            low = middle
        else:
            high = middle - 1
    return low * per_block, at(low)


def _pool_detail(current: Assessment, machine: Machine, settings: RunSettings,
                 result: Assessment) -> str:  # fmt: skip
    """The pool in sequences, and on a GPU the utilization that gives the same pool."""
    pool = result.placement.settings.kv_cache_bytes or 0
    per_token = kv_bytes_per_token(current.spec, vllm_kv_type(settings))
    sequences = pool / per_token / settings.n_ctx if per_token and settings.n_ctx else 0.0
    detail = f" ({sequences:.1f} sequences of {settings.n_ctx:,} tokens at once"
    gpu = next((d for d in result.placement.estimate.devices if d.kind == "gpu"), None)
    totals = [device.total_bytes for device in vllm_gpus(machine)]
    if gpu is not None and totals:
        detail += f"; --gpu-memory-utilization {gpu.total_bytes / totals[0]:.2f}"
    return detail + ")"


def _on_gpu(current: Assessment) -> bool:
    return any(device.kind == "gpu" for device in current.placement.estimate.devices)
