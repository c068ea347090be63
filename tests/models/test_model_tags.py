"""Taking a model name apart as users write it, without knowing any model."""

from __future__ import annotations

import pytest

from yoyu.models.model_tags import (
    by_tag_prefix,
    family_key,
    normalize,
    split_quant,
    tag_size,
    unknown_quant_at,
)


@pytest.mark.parametrize(
    ("ref", "key", "quant"),
    [
        ("registry.ollama.ai/library/Qwen3:8B", "qwen3:8b", None),
        ("llama3.1:latest", "llama3.1", None),
        ("llama3.1:8b-instruct-q8_0", "llama3.1:8b-instruct", "Q8_0"),
        ("qwen2.5:7b-instruct-fp16", "qwen2.5:7b-instruct", "F16"),
        ("gpt-oss:20b-mxfp4", "gpt-oss:20b", "MXFP4"),
        (
            "hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q5_K_M",
            "bartowski/qwen2.5-7b-instruct",
            "Q5_K_M",
        ),
        ("Qwen/Qwen3-8B", "qwen/qwen3-8b", None),
    ],
)
def test_split_names_into_the_model_and_its_quant(ref: str, key: str, quant: str | None) -> None:
    assert split_quant(normalize(ref)) == (key, quant)


def test_a_quant_the_catalog_does_not_size_is_recognised_as_one() -> None:
    assert unknown_quant_at("llama3.1:8b-instruct-q3_k_s") == len("llama3.1:8b-instruct")
    assert unknown_quant_at("qwen3:8b-iq4_xs") == len("qwen3:8b")
    assert unknown_quant_at("qwen3:8b") is None and unknown_quant_at("bge-m3") is None


def test_sizes_a_tag_states() -> None:
    assert tag_size("qwen3:8b") == 8e9
    assert tag_size("gemma3:270m") == 270e6
    assert tag_size("mixtral:8x7b") == 56e9
    assert tag_size("qwen3:30b-a3b") == 30e9
    assert tag_size("kimi-k2:1t") == 1e12
    assert tag_size("llama3.1") is None


def test_a_flavoured_tag_answers_to_its_size() -> None:
    index = {"deepseek-r1:7b": "entry"}
    assert by_tag_prefix("deepseek-r1:7b-qwen-distill", index) == "entry"
    assert by_tag_prefix("deepseek-r1:70b-llama-distill", index) is None
    assert family_key("Qwen2.5-Coder:7B") == "qwen2.5coder"
