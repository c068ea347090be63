"""What llama-server would have run by itself, said beside the plan.

yoyu starts llama-server with every setting of the plan written out and
``--fit off``, because its own defaults (llama.cpp ``common/common.h`` and
the server's ``--parallel auto``) run something else: the model's trained
context, four slots sharing one cache, flash attention where the device has
it, up to 8 GiB of prompt cache in RAM and 32 sliding-window checkpoints per
slot, and ``--fit on``, which then lowers the context (to 4096 at least) or
the GPU layers until every device keeps 1 GiB free. A user who copies the
model path into ``llama-server -m`` should know what changes.
"""

from __future__ import annotations

import dataclasses

from yoyu.estimate.engine import LLAMA_SERVER_NAME
from yoyu.estimate.types import MemoryEstimate, RunSettings
from yoyu.i18n import message_of
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.placement import EstimateFn
from yoyu.units import format_bytes

DEFAULT_SLOTS = 4  # --parallel auto
DEFAULT_PROMPT_CACHE_MIB = 8192  # --cache-ram
DEFAULT_CTX_CHECKPOINTS = 32  # --ctx-checkpoints
FIT_MIN_CTX = 4096  # --fit-ctx
FIT_MARGIN = "1 GiB"  # --fit-target, per device


def llama_server_defaults(settings: RunSettings, spec: ModelSpec) -> RunSettings:
    """``settings`` as llama-server would choose them with no flags (before ``--fit``)."""
    return dataclasses.replace(
        settings,
        n_ctx=spec.context_length or settings.n_ctx,
        n_parallel=DEFAULT_SLOTS,
        kv_unified=True,
        flash_attn=True,
        n_cpu_moe=0,
        swa_full=None,
        prompt_cache_mib=DEFAULT_PROMPT_CACHE_MIB,
        ctx_checkpoints=DEFAULT_CTX_CHECKPOINTS,
    )


def defaults_note(
    spec: ModelSpec, machine: Machine, planned: MemoryEstimate, estimate: EstimateFn
) -> str | None:
    """One line: what llama-server's defaults would hold, against the plan's figure."""
    settings = planned.settings
    if settings.engine != LLAMA_SERVER_NAME:
        return None
    defaults = llama_server_defaults(settings, spec)
    held = estimate(spec, machine, defaults)
    difference = held.total_bytes - planned.total_bytes
    size = format_bytes(abs(difference))
    change = (
        message_of("{size} more", size=size)
        if difference >= 0
        else message_of("{size} less", size=size)
    )
    return message_of(
        "llama-server's own defaults would run ctx {ctx}, {slots} slots sharing one cache, "
        "flash attention, up to {cache} GiB of prompt cache and {checkpoints} checkpoints per "
        "slot: {change} than this plan ({total}), then --fit lowers the context (to {min_ctx} "
        "at least) or the GPU layers to keep {margin} free per device; yoyu starts it with "
        "this plan's settings and --fit off",
        ctx=held.n_ctx, slots=DEFAULT_SLOTS, cache=DEFAULT_PROMPT_CACHE_MIB // 1024,
        checkpoints=DEFAULT_CTX_CHECKPOINTS, change=change, total=format_bytes(held.total_bytes),
        min_ctx=FIT_MIN_CTX, margin=FIT_MARGIN,
    )  # fmt: skip
