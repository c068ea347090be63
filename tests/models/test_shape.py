"""One model shape: declared once, shared by every type that describes a model."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from yoyu.models.hf_config import HfArchitecture, parse_hf_config
from yoyu.models.shape import ModelShape
from yoyu.models.spec import ModelSpec
from yoyu.testing.sparse_models import SPARSE_MODELS, SparseModel, SparseRecipe

SHAPE_FIELDS = {field.name for field in dataclasses.fields(ModelShape)}


@pytest.mark.parametrize("kind", [ModelSpec, HfArchitecture, SparseRecipe, SparseModel])
def test_each_model_type_is_a_shape_and_declares_none_of_its_fields_again(kind: type) -> None:
    assert issubclass(kind, ModelShape)
    assert not SHAPE_FIELDS & set(inspect.get_annotations(kind))


def test_a_shape_passes_whole_from_one_type_to_the_next() -> None:
    config = {
        "model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584,
        "num_attention_heads": 28, "num_key_value_heads": 4, "intermediate_size": 18944,
        "vocab_size": 152064, "max_position_embeddings": 131072,
    }  # fmt: skip
    arch = parse_hf_config(config, "config.json")
    recipe = SPARSE_MODELS["deepseek-r1-distill-qwen-7b-q4_k_m"]
    assert arch.shape_fields() == recipe.shape_fields()  # the config and the GGUF agree
    assert set(arch.shape_fields()) == SHAPE_FIELDS
    assert ModelShape(**arch.shape_fields()) == ModelShape(**recipe.shape_fields())
    assert not arch.is_moe and SPARSE_MODELS["kimi-k2-q4_k_m"].is_moe
