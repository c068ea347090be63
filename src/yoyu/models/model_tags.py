"""How users write a model's name: Ollama tags, quant suffixes, Hugging Face repo ids.

``qwen3:30b-a3b``, ``registry.ollama.ai/library/llama3.1:8b-instruct-q8_0``,
``hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q5_K_M`` and ``Qwen/Qwen2.5-7B-Instruct``
name models the catalog knows. This module takes such a name apart (registry
prefix, size tag, flavour, quant) without knowing any model; the catalog looks
the pieces up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")

# Ollama's tag suffixes -> llama.cpp file types.
QUANT_SUFFIXES: dict[str, str] = {
    "q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M", "q8_0": "Q8_0", "q4_0": "Q4_0",
    "fp16": "F16", "f16": "F16", "bf16": "BF16", "mxfp4": "MXFP4",
}  # fmt: skip
_TAG_SIZE = re.compile(r"(?:^|-)(?:(\d+)x)?(\d+(?:\.\d+)?)([mbt])(?:-|$)")
_QUANT_LIKE = re.compile(r"[-:](i?q\d\w*|fp\d+|f32|bf16)$")
_SCALES = {"m": 1e6, "b": 1e9, "t": 1e12}


def normalize(ref: str) -> str:
    """Lower-cased, without a registry or hub prefix or the ``:latest`` tag."""
    key = ref.strip().lower()
    for prefix in ("registry.ollama.ai/", "library/", "hf.co/", "huggingface.co/"):
        key = key.removeprefix(prefix)
    return key.removesuffix(":latest")


def split_quant(key: str) -> tuple[str, str | None]:
    """``llama3.1:8b-instruct-q8_0`` -> (``llama3.1:8b-instruct``, ``Q8_0``);
    ``org/repo-gguf:q4_k_m`` -> (``org/repo``, ``Q4_K_M``)."""
    base, _, tag = key.partition(":")
    if "/" in base:  # a Hugging Face repo: the tag is the quant
        return base.removesuffix("-gguf"), QUANT_SUFFIXES.get(tag)
    for suffix, quant in QUANT_SUFFIXES.items():
        if tag == suffix:
            return base, quant
        if tag.endswith("-" + suffix):
            return f"{base}:{tag.removesuffix('-' + suffix)}", quant
    return key, None


def unknown_quant_at(key: str) -> int | None:
    """Where a quant suffix the catalog does not size starts (``-q3_k_s``, ``-iq4_xs``)."""
    match = _QUANT_LIKE.search(key)
    return None if match is None else match.start()


def by_tag_prefix(key: str, index: Mapping[str, T]) -> T | None:
    """A flavoured tag (``8b-instruct``, ``7b-qwen-distill``) answers to its size's name."""
    base, colon, tag = key.partition(":")
    parts = tag.split("-")
    for end in range(len(parts) - 1, 0, -1):
        found = index.get(f"{base}{colon}{'-'.join(parts[:end])}")
        if found is not None:
            return found
    return None


def tag_size(name: str) -> float | None:
    """Parameters a tag states: ``8b`` 8e9, ``270m`` 2.7e8, ``8x7b`` 5.6e10, ``30b-a3b`` 3e10."""
    match = _TAG_SIZE.search(name.partition(":")[2] or name)
    if match is None:
        return None
    experts = float(match.group(1)) if match.group(1) else 1.0
    return experts * float(match.group(2)) * _SCALES[match.group(3)]


def family_key(name: str) -> str:
    """The family part of a name, letters, digits and dots only (``Qwen2.5-7B`` -> ...)."""
    return re.sub(r"[^a-z0-9.]", "", name.split(":")[0].lower())
