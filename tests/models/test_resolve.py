"""From what a user types to a ModelSpec: paths, Ollama names, installed names, the
catalog, and the one-line errors when none of them match."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from yoyu.config import Settings
from yoyu.errors import ModelFileError, ModelNotFoundError
from yoyu.models import resolve_model
from yoyu.testing.tiny_models import TinyModel, write_tiny_model


def ollama_store() -> Path:
    return Path(os.environ["OLLAMA_MODELS"])


def ollama_install(name: str, tag: str, gguf: Path, root: Path | None = None) -> Path:
    """Blob + manifest as ``ollama pull`` writes them (see test_ollama_store.py)."""
    root = root or ollama_store()
    content = gguf.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    blob = root / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    layer = {
        "mediaType": "application/vnd.ollama.image.model",
        "digest": f"sha256:{digest}",
        "size": len(content),
    }
    manifest = {"schemaVersion": 2, "config": {"size": 0}, "layers": [layer]}
    path = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return blob


@pytest.fixture
def tiny(tmp_path: Path) -> TinyModel:
    (tmp_path / "models").mkdir()
    return write_tiny_model(tmp_path / "models" / "tiny-llama.gguf", n_layers=3)


def write_hf_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    config = {
        "model_type": "qwen3",
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "vocab_size": 12,
        "max_position_embeddings": 64,
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    arrays = {
        "model.embed_tokens.weight": np.zeros((12, 8), np.float16),
        "model.layers.0.self_attn.q_proj.weight": np.zeros((16, 8), np.float16),
    }
    save_file(arrays, str(folder / "model.safetensors"))
    return folder


def test_gguf_path(tiny: TinyModel) -> None:
    spec = resolve_model(str(tiny.path))
    assert spec.format == "gguf"
    assert spec.n_layers == 3
    assert spec.tensor_bytes == tiny.tensor_bytes


def test_folder_with_one_gguf(tiny: TinyModel) -> None:
    assert resolve_model(str(tiny.path.parent)).layer_bytes == tiny.layer_bytes


def test_folder_with_several_ggufs_asks_for_one(tiny: TinyModel) -> None:
    write_tiny_model(tiny.path.with_name("other.gguf"))
    with pytest.raises(ModelFileError, match="holds 2 GGUF models"):
        resolve_model(str(tiny.path.parent))


def test_ollama_blob_path_without_suffix_is_read_by_magic(tiny: TinyModel) -> None:
    blob = ollama_install("tiny", "latest", tiny.path)
    assert resolve_model(str(blob)).tensor_bytes == tiny.tensor_bytes


def test_ollama_name_reads_the_blob_and_keeps_the_name(tiny: TinyModel) -> None:
    ollama_install("tiny", "3l", tiny.path)
    spec = resolve_model("tiny:3l")
    assert spec.name == "tiny:3l"
    assert spec.format == "gguf"
    assert spec.layer_bytes == tiny.layer_bytes


def test_installed_ollama_model_wins_over_the_catalog(tiny: TinyModel) -> None:
    ollama_install("llama3.1", "8b", tiny.path)
    spec = resolve_model("llama3.1:8b")
    assert spec.format == "gguf"
    assert spec.n_layers == 3


def test_broken_ollama_install_is_reported_not_replaced_by_the_catalog(tiny: TinyModel) -> None:
    blob = ollama_install("qwen3", "8b", tiny.path)
    blob.unlink()
    with pytest.raises(ModelFileError, match="blob of qwen3:8b is missing"):
        resolve_model("qwen3:8b")


def test_hf_folder_and_its_files(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "Qwen3-tiny")
    for ref in (folder, folder / "config.json", folder / "model.safetensors"):
        spec = resolve_model(str(ref))
        assert (spec.name, spec.format, spec.architecture) == ("Qwen3-tiny", "safetensors", "qwen3")


def test_hf_cache_name(isolated_home: Path) -> None:
    snapshot = Path(os.environ["HF_HUB_CACHE"]) / "models--Qwen--Qwen3-tiny" / "snapshots" / "abc"
    write_hf_folder(snapshot)
    spec = resolve_model("Qwen/Qwen3-tiny")
    assert spec.name == "Qwen/Qwen3-tiny"
    assert spec.paths == (str(snapshot / "model.safetensors"),)


def test_configured_path_name(tiny: TinyModel) -> None:
    settings = Settings(model_paths=(tiny.path.parent,))
    assert resolve_model("tiny-llama", settings=settings).tensor_bytes == tiny.tensor_bytes


def test_catalog_name_when_nothing_is_installed() -> None:
    spec = resolve_model("deepseek-r1:32b")
    assert spec.format == "catalog"
    assert spec.n_layers == 64


def test_unknown_name_lists_what_was_tried_and_close_names() -> None:
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model("qwen3:7b")
    message = str(error.value)
    assert "no model 'qwen3:7b'" in message
    assert os.environ["OLLAMA_MODELS"] in message
    assert "did you mean qwen3:8b" in message
    assert "yoyu models" in message
    assert "\n" not in message


def test_a_file_that_is_no_model(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello", encoding="utf-8")
    with pytest.raises(ModelFileError, match="not a model file"):
        resolve_model(str(notes))


def test_a_folder_that_is_no_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not a model folder"):
        resolve_model(str(tmp_path))


def test_environment_can_be_injected(tmp_path: Path, tiny: TinyModel) -> None:
    other_store = tmp_path / "elsewhere"
    ollama_install("moved", "latest", tiny.path, root=other_store)
    with pytest.raises(ModelNotFoundError):
        resolve_model("moved")
    env = {"OLLAMA_MODELS": str(other_store), "HOME": str(tmp_path)}
    assert resolve_model("moved", env=env, settings=Settings()).name == "moved:latest"
