"""How many KV cells llama.cpp really creates for a requested context.

llama.cpp never uses the context it is given as is (``llama_context``
constructor, ``src/llama-context.cpp``, llama.cpp since PR #17046, Nov 2025):

- ``n_ctx`` 0 means the model's trained context;
- ``n_ctx`` is padded up to a multiple of 256;
- without a unified KV cache each of the ``n_seq_max`` sequences gets its own
  stream of ``n_ctx_seq = pad(n_ctx / n_seq_max, 256)`` cells and ``n_ctx``
  becomes ``n_ctx_seq * n_seq_max``;
- ``n_batch`` is clamped to ``n_ctx`` and ``n_ubatch`` to ``n_batch``.

Sliding-window layers get a smaller cache (``llama_kv_cache_iswa``, the SWA
cache "is always padded to 256", llama.cpp issue 17037):
``pad(min(n_ctx_seq, n_swa * (n_seq_max if unified else 1) + n_ubatch), 256)``,
or the full size when the settings (or the engine) ask for a full SWA cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from yoyu.errors import SettingsError
from yoyu.estimate.types import RunSettings
from yoyu.models.spec import ModelSpec

CTX_PAD = 256  # GGML_PAD(n_ctx, 256) in llama_context; also the SWA cache's padding


@dataclass(frozen=True)
class ContextCells:
    """The context as llama.cpp builds it: cells per stream, streams, batch sizes."""

    n_ctx: int  # all cells, every stream together (what llama.cpp logs as n_ctx)
    n_ctx_seq: int  # cells of one stream
    n_stream: int  # 1 when unified, else n_seq_max
    n_seq: int  # n_seq_max
    n_batch: int
    n_ubatch: int
    swa_cells: int | None  # cells per stream of the sliding-window cache, when the model has one

    @property
    def n_tokens_reserved(self) -> int:
        """Tokens of the worst-case prompt graph llama.cpp reserves compute for."""
        return min(self.n_ctx, self.n_ubatch)


def pad(value: int, multiple: int) -> int:
    """GGML_PAD: round ``value`` up to a multiple of ``multiple``."""
    return (value + multiple - 1) // multiple * multiple


def resolve_context(spec: ModelSpec, settings: RunSettings) -> ContextCells:
    """Apply llama.cpp's padding and clamping rules to the requested settings."""
    requested = settings.n_ctx or spec.context_length
    if requested <= 0:
        raise SettingsError.from_message(
            "{model} states no trained context length, so ctx 0 cannot be resolved; "
            "give an explicit ctx",
            model=spec.name,
        )
    n_seq = settings.n_parallel
    n_ctx = pad(requested, CTX_PAD)
    n_ctx_seq = n_ctx if settings.kv_unified else pad(n_ctx // n_seq, CTX_PAD)
    n_ctx = n_ctx if settings.kv_unified else n_ctx_seq * n_seq
    n_batch = min(n_ctx, settings.n_batch)
    n_ubatch = min(n_batch, settings.n_ubatch)
    return ContextCells(
        n_ctx=n_ctx,
        n_ctx_seq=n_ctx_seq,
        n_stream=1 if settings.kv_unified else n_seq,
        n_seq=n_seq,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        swa_cells=_swa_cells(spec, settings, n_ctx_seq, n_ubatch),
    )


def _swa_cells(spec: ModelSpec, settings: RunSettings, n_ctx_seq: int, n_ubatch: int) -> int | None:
    if not spec.sliding_window or not spec.swa_layers:
        return None
    if settings.swa_cache_full:
        return n_ctx_seq
    sequences = settings.n_parallel if settings.kv_unified else 1
    return min(n_ctx_seq, pad(spec.sliding_window * sequences + n_ubatch, CTX_PAD))
