"""The output buffer: logits (and embeddings) llama.cpp keeps for the caller.

``llama_context::output_reserve(n_seq_max)`` at context creation
(``src/llama-context.cpp``): ``n_vocab * n_outputs_max`` floats of logits,
plus ``n_embd * n_outputs_max`` when embeddings are requested, with
``n_outputs_max = n_seq_max``. It grows when a batch asks for more outputs:
with ``logits_all`` every token of a batch is one, so it ends at
``n_batch`` rows (512 MiB for a 262,144-token vocabulary).
Peers size it at ``n_ubatch`` rows always, hundreds of MiB too much for big
vocabularies when only the last token's logits are asked for.
"""

from __future__ import annotations

from yoyu.estimate.context import ContextCells
from yoyu.estimate.types import RunSettings
from yoyu.models.spec import ModelSpec

_FLOAT_BYTES = 4


def output_buffer_bytes(spec: ModelSpec, settings: RunSettings, cells: ContextCells) -> int:
    """Bytes of the host buffer that receives logits/embeddings, at its largest."""
    rows = cells.n_batch if settings.logits_all else settings.n_parallel
    width = spec.vocab_size + (spec.n_embd if settings.embeddings else 0)
    return width * rows * _FLOAT_BYTES
