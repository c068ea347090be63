"""GGUF metadata to ``ModelSpec``, with the defaults llama.cpp's loader applies.

The hyper-parameters live under ``{arch}.*`` keys (``llama.block_count``,
``gpt-oss.attention.sliding_window``). Where a key is missing or written in
another shape, this module does what llama.cpp's ``llama_model::load_hparams``
(``src/llama-model.cpp``) does, so that yoyu's figures describe the model the
engine will actually build:

- head counts and feed-forward lengths may be one number or one per layer;
- key/value head dims default to ``n_embd / n_head`` (wrong for Qwen3 and
  Gemma, which is why the file's ``attention.key_length`` wins when present);
- the vocabulary comes from ``{arch}.vocab_size``, else the tokenizer's token
  list, else the token-embedding tensor;
- which layers use sliding-window attention is decided per architecture by the
  loader, not stored in most files (see ``_SWA_RULES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yoyu.errors import ModelFileError
from yoyu.models.gguf import ArrayInfo, MetadataValue, display_path
from yoyu.models.gguf_split import GGUFModelFiles, read_gguf_model_files
from yoyu.models.spec import MlaDims, ModelSpec, TensorInfo, summarize_tensors

LLAMA_MAX_LAYERS = 512  # llama-hparams.h; the loader refuses more blocks than this
LLAMA_FTYPE_GUESSED = 1024  # llama.h: flag or-ed into general.file_type when it was guessed

# llama.h ``enum llama_ftype``: general.file_type -> the quantization users know
# the file by (LLAMA_FTYPE_MOSTLY_Q4_K_M -> "Q4_K_M"). 5 and 6 were removed before
# GGUF; 33-35 were removed later but old files still carry them.
FILE_TYPE_LABELS: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    4: "Q4_1_SOME_F16",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    33: "Q4_0_4_4",
    34: "Q4_0_4_8",
    35: "Q4_0_8_8",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",  # LLAMA_FTYPE_MOSTLY_MXFP4_MOE: MXFP4 experts (gpt-oss), as Ollama shows it
    39: "NVFP4",
    40: "Q1_0",
}


@dataclass(frozen=True)
class _SwaRule:
    """How llama.cpp's loader marks one architecture's sliding-window layers.

    ``llama_hparams::set_swa_pattern(period, dense_first)`` (src/llama-hparams.cpp)
    makes layer ``il`` sliding when ``period == 0`` or, by default,
    ``il % period < period - 1`` (the last layer of each period is global);
    with ``dense_first`` when ``il % period != 0`` (the first one is).
    """

    period: int
    dense_first: bool = False
    default_window: int | None = None  # when the file has no attention.sliding_window
    forced_window: int | None = None  # the loader's own window, whatever the file says


# Facts from llama.cpp's per-architecture loaders (src/llama-model.cpp
# ``load_hparams``, now split into src/models/<arch>.cpp). A file's own
# ``{arch}.attention.sliding_window_pattern`` overrides the period (newer
# converters write it; gemma4 writes one bool per layer instead).
_SWA_RULES: dict[str, _SwaRule] = {
    # src/models/gemma2.cpp: set_swa_pattern(2), n_swa = 4096 unless the file says otherwise.
    "gemma2": _SwaRule(period=2, default_window=4096),
    # LLM_ARCH_GEMMA3: set_swa_pattern(6) (5 local, 1 global); the window comes from the file.
    "gemma3": _SwaRule(period=6),
    # LLM_ARCH_GEMMA3N: set_swa_pattern(5).
    "gemma3n": _SwaRule(period=5),
    # src/models/gemma-embedding.cpp: swa_period = 6 unless the pattern key says otherwise.
    "gemma-embedding": _SwaRule(period=6),
    # LLM_ARCH_COHERE2: set_swa_pattern(4).
    "cohere2": _SwaRule(period=4),
    # LLM_ARCH_OPENAI_MOE ("gpt-oss"): set_swa_pattern(2), even layers sliding, odd full.
    "gpt-oss": _SwaRule(period=2),
    # LLM_ARCH_LLAMA4: chunked attention, n_swa = 8192, set_swa_pattern(4) (3 chunked, 1
    # full); turned off only when the file sets attention.sliding_window to 0.
    "llama4": _SwaRule(period=4, forced_window=8192),
}
# LLM_ARCH_PHI3 reads attention.sliding_window but then disables SWA (n_swa = 0,
# set_swa_pattern(1)): llama.cpp runs Phi-3 with full attention on every layer.
_SWA_DISABLED = frozenset({"phi3"})


def read_gguf_model(path: Path) -> ModelSpec:
    """Describe the GGUF model at ``path`` (a file, or any part of a split model)."""
    return spec_from_gguf(read_gguf_model_files(path))


def spec_from_gguf(model: GGUFModelFiles) -> ModelSpec:
    """Build the ModelSpec of an already-read GGUF model."""
    source = display_path(model.paths[0])
    architecture = _architecture(model.metadata, source)
    hparams = _Hparams(model.metadata, architecture, source)
    n_layers = _layer_count(hparams, model.tensors)
    n_embd = hparams.int_or("embedding_length", _dim(model.tensors, "token_embd.weight", 0))
    heads = hparams.per_layer("attention.head_count", n_layers) or (0,)
    kv_heads = hparams.per_layer("attention.head_count_kv", n_layers) or heads
    default_head_dim = n_embd // heads[0] if heads[0] else 0  # llama.cpp: n_embd / n_head(0)
    head_dim_k = hparams.int_or("attention.key_length", default_head_dim)
    n_experts = hparams.int_or("expert_count", 0)
    n_experts_used = hparams.int_or("expert_used_count", 0)
    summary = summarize_tensors(model.tensors, n_layers, n_experts, n_experts_used)
    sliding_window, swa_layers = _sliding_window(hparams, architecture, n_layers)
    return ModelSpec(
        name=_model_name(model),
        architecture=architecture,
        format="gguf",
        paths=tuple(str(path) for path in model.paths),
        file_bytes=model.file_bytes,
        quantization=_quantization(model.metadata, summary.type_bytes),
        n_layers=n_layers,
        n_embd=n_embd,
        n_head=max(heads),
        n_head_kv=max(kv_heads),
        head_dim_k=head_dim_k,
        head_dim_v=hparams.int_or("attention.value_length", default_head_dim),
        n_ff=max(hparams.per_layer("feed_forward_length", n_layers) or (0,)),
        vocab_size=_vocab_size(hparams, model),
        context_length=hparams.int_or("context_length", 0),
        params_total=summary.params_total,
        params_active=summary.params_active,
        tensor_bytes=summary.tensor_bytes,
        layer_bytes=summary.layer_bytes,
        nonrepeating_bytes=summary.nonrepeating_bytes,
        type_bytes=summary.type_bytes,
        n_head_kv_layers=kv_heads if len(set(kv_heads)) > 1 else (),
        sliding_window=sliding_window,
        swa_layers=swa_layers,
        n_experts=n_experts,
        n_experts_used=n_experts_used,
        n_experts_shared=hparams.int_or("expert_shared_count", 0),
        expert_ff_length=hparams.optional_int("expert_feed_forward_length"),
        mla=_mla_dims(hparams, head_dim_k),
        chat_template=_chat_template(model.metadata) is not None,
        chat_template_text=_chat_template(model.metadata),
        longest_token_bytes=_longest_token_bytes(model.metadata),
        tensors=model.tensors,
    )


class _Hparams:
    """Typed access to ``{arch}.*`` keys; a value of the wrong type is a bad file."""

    def __init__(self, metadata: dict[str, MetadataValue], arch: str, source: str) -> None:
        self.metadata = metadata
        self.arch = arch
        self.source = source

    def key(self, suffix: str) -> str:
        return f"{self.arch}.{suffix}"

    def raw(self, suffix: str) -> MetadataValue | None:
        return self.metadata.get(self.key(suffix))

    def optional_int(self, suffix: str) -> int | None:
        value = self.raw(suffix)
        return None if value is None else self.count(self.key(suffix), value)

    def int_or(self, suffix: str, default: int) -> int:
        value = self.optional_int(suffix)
        return default if value is None else value

    def per_layer(self, suffix: str, n_layers: int) -> tuple[int, ...] | None:
        """One value per layer from a number or an array (``get_key_or_arr``)."""
        key, value = self.key(suffix), self.raw(suffix)
        if value is None:
            return None
        if not isinstance(value, (list, ArrayInfo)):
            return (self.count(key, value),) * max(n_layers, 1)
        if len(value) != n_layers or isinstance(value, ArrayInfo):
            raise self.bad(key, f"has {len(value)} entries for a model of {n_layers} layers")
        return tuple(self.count(key, item) for item in value)

    def count(self, key: str, value: MetadataValue) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.bad(key, f"is {_short(value)}, not a non-negative integer")
        return value

    def bad(self, key: str, problem: str) -> ModelFileError:
        return ModelFileError(f"{self.source}: metadata {key} {problem}; the file is corrupt")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _architecture(metadata: dict[str, MetadataValue], source: str) -> str:
    architecture = metadata.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise ModelFileError(
            f"{source}: no general.architecture in the metadata, so this is not a model "
            "llama.cpp can load; check that it is the model file"
        )
    return architecture


def _layer_count(hparams: _Hparams, tensors: tuple[TensorInfo, ...]) -> int:
    from_tensors = max((t.layer + 1 for t in tensors if t.layer is not None), default=0)
    n_layers = hparams.int_or("block_count", from_tensors)
    if n_layers > LLAMA_MAX_LAYERS:
        raise hparams.bad(
            hparams.key("block_count"), f"is {n_layers}, over llama.cpp's {LLAMA_MAX_LAYERS}"
        )
    return n_layers


def _dim(tensors: tuple[TensorInfo, ...], name: str, axis: int) -> int:
    """One dimension (ggml order) of the named tensor, 0 when absent."""
    for tensor in tensors:
        if tensor.name == name and len(tensor.shape) > axis:
            return tensor.shape[axis]
    return 0


def _longest_token_bytes(metadata: dict[str, MetadataValue]) -> int | None:
    tokens = metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayInfo):
        return tokens.longest_item_bytes or None
    if isinstance(tokens, list) and tokens:
        return max(len(str(token).encode()) for token in tokens)
    return None


def _chat_template(metadata: dict[str, MetadataValue]) -> str | None:
    template = metadata.get("tokenizer.chat_template")
    return template if isinstance(template, str) and template.strip() else None


def _vocab_size(hparams: _Hparams, model: GGUFModelFiles) -> int:
    vocab_size = hparams.optional_int("vocab_size")
    if vocab_size is not None:
        return vocab_size
    tokens = model.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, (list, ArrayInfo)):
        return len(tokens)
    return _dim(model.tensors, "token_embd.weight", 1) or _dim(model.tensors, "output.weight", 1)


def _mla_dims(hparams: _Hparams, head_dim_k: int) -> MlaDims | None:
    """DeepSeek V2/V3, Kimi K2: the cache holds a ``kv_lora_rank`` latent + a RoPE key."""
    kv_lora_rank = hparams.int_or("attention.kv_lora_rank", 0)
    if kv_lora_rank == 0:
        return None
    return MlaDims(
        kv_lora_rank=kv_lora_rank,
        q_lora_rank=hparams.int_or("attention.q_lora_rank", 0),  # 0: V2-Lite has no Q LoRA
        rope_dim=hparams.int_or("rope.dimension_count", head_dim_k),  # n_rot defaults to it
        key_length_mla=hparams.optional_int("attention.key_length_mla"),
        value_length_mla=hparams.optional_int("attention.value_length_mla"),
    )


def _sliding_window(
    hparams: _Hparams, architecture: str, n_layers: int
) -> tuple[int | None, tuple[int, ...]]:
    """The window size and the layers that use it, or (None, ()) for full attention."""
    pattern = hparams.raw("attention.sliding_window_pattern")
    rule = _SWA_RULES.get(architecture)
    if architecture in _SWA_DISABLED or (rule is None and pattern is None):
        return None, ()
    window = _window(rule, hparams.optional_int("attention.sliding_window"))
    if not window:
        return None, ()
    layers = _swa_layers(hparams, rule, pattern, n_layers)
    return (window, layers) if layers else (None, ())


def _window(rule: _SwaRule | None, file_window: int | None) -> int | None:
    if rule is not None and rule.forced_window is not None:
        return None if file_window == 0 else rule.forced_window
    if file_window is not None:
        return file_window
    return rule.default_window if rule is not None else None


def _swa_layers(
    hparams: _Hparams, rule: _SwaRule | None, pattern: MetadataValue | None, n_layers: int
) -> tuple[int, ...]:
    dense_first = rule.dense_first if rule is not None else False
    if pattern is None:
        assert rule is not None  # _sliding_window returns early without rule or pattern
        return swa_layers_from_period(rule.period, dense_first, n_layers)
    if isinstance(pattern, bool):
        return tuple(range(n_layers)) if pattern else ()
    if isinstance(pattern, (list, ArrayInfo)):
        return _swa_layers_from_flags(hparams, pattern, n_layers)
    period = hparams.count(hparams.key("attention.sliding_window_pattern"), pattern)
    return swa_layers_from_period(period, dense_first, n_layers)


def _swa_layers_from_flags(
    hparams: _Hparams, flags: list[int | float | bool | str] | ArrayInfo, n_layers: int
) -> tuple[int, ...]:
    """gemma4 style: one flag per layer, true where the layer slides."""
    key = hparams.key("attention.sliding_window_pattern")
    if isinstance(flags, ArrayInfo) or len(flags) != n_layers:
        raise hparams.bad(key, f"has {len(flags)} entries for a model of {n_layers} layers")
    if not all(isinstance(flag, (bool, int)) for flag in flags):
        raise hparams.bad(key, "holds values that are not booleans")
    return tuple(layer for layer, flag in enumerate(flags) if flag)


def swa_layers_from_period(period: int, dense_first: bool, n_layers: int) -> tuple[int, ...]:
    """The layers ``llama_hparams::set_swa_pattern(period, dense_first)`` marks sliding."""
    if period == 0:
        return tuple(range(n_layers))
    if dense_first:
        return tuple(layer for layer in range(n_layers) if layer % period != 0)
    return tuple(layer for layer in range(n_layers) if layer % period < period - 1)


def _quantization(metadata: dict[str, MetadataValue], type_bytes: dict[str, int]) -> str | None:
    """The file-type label, else the ggml type holding the most bytes."""
    file_type = metadata.get("general.file_type")
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        label = FILE_TYPE_LABELS.get(file_type & ~LLAMA_FTYPE_GUESSED)
        if label is not None:
            return label
    return next(iter(type_bytes), None)  # summarize_tensors sorts by bytes, largest first


def _model_name(model: GGUFModelFiles) -> str:
    name = model.metadata.get("general.name")
    return name.strip() if isinstance(name, str) and name.strip() else model.stem
