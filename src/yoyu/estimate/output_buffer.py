"""The output buffer: logits (and embeddings) llama.cpp keeps for the caller.

``llama_context::output_reserve(n_seq_max)`` at context creation
(``src/llama-context.cpp``): ``n_vocab * n_outputs_max`` floats of logits,
plus ``n_embd * n_outputs_max`` when embeddings are requested, with
``n_outputs_max = n_seq_max``. It only grows later, when a batch asks for
more outputs (``logits_all``, perplexity), which the estimate does not assume.
Peers size it at ``n_ubatch`` rows, hundreds of MiB too much for big vocabularies.
"""

from __future__ import annotations

from yoyu.estimate.types import RunSettings
from yoyu.models.spec import ModelSpec

_FLOAT_BYTES = 4


def output_buffer_bytes(spec: ModelSpec, settings: RunSettings) -> int:
    """Bytes of the host buffer that receives logits/embeddings."""
    rows = settings.n_parallel
    width = spec.vocab_size + (spec.n_embd if settings.embeddings else 0)
    return width * rows * _FLOAT_BYTES
