"""``yoyu inspect`` and ``yoyu models`` through the real CLI entry point: JSON that
validates against docs/schema/inspect.schema.json and figures equal to what the
fixtures wrote; user mistakes as one ``error:`` line and exit code 2."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from safetensors.numpy import save_file

from yoyu.cli import main
from yoyu.testing.tiny_models import TinyModel, write_tiny_model

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema" / "inspect.schema.json"
CONTRACT_KEYS = {
    "architecture", "n_layers", "params_total", "params_active", "n_embd", "n_head",
    "n_head_kv", "head_dim_k", "head_dim_v", "context_length", "sliding_window", "n_experts",
    "n_experts_used", "vocab_size", "file_bytes", "tensor_bytes", "layer_bytes",
    "nonrepeating_bytes", "type_bytes",
}  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    main(list(args))
    return capsys.readouterr().out


def inspect_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(run(capsys, "inspect", *args, "--json"))
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(document)
    return document


@pytest.fixture
def tiny_moe(tmp_path: Path) -> TinyModel:
    return write_tiny_model(tmp_path / "tiny-moe.gguf", "moe")


def test_schema_requires_the_contract_keys() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["required"]) >= CONTRACT_KEYS
    assert all(schema["properties"][key].get("description") for key in CONTRACT_KEYS)


def test_inspect_json_of_a_gguf(capsys: pytest.CaptureFixture[str], tiny_moe: TinyModel) -> None:
    document = inspect_json(capsys, str(tiny_moe.path))
    assert document["format"] == "gguf"
    assert document["n_layers"] == tiny_moe.n_layers
    assert document["layer_bytes"] == list(tiny_moe.layer_bytes)
    assert document["tensor_bytes"] == tiny_moe.tensor_bytes
    assert document["params_total"] == tiny_moe.params_total
    assert document["params_active"] == tiny_moe.params_active
    assert document["n_experts"] == tiny_moe.n_experts
    assert document["file_bytes"] == tiny_moe.path.stat().st_size
    assert "tensors" not in document


def test_inspect_json_with_tensors(capsys: pytest.CaptureFixture[str], tiny_moe: TinyModel) -> None:
    document = inspect_json(capsys, str(tiny_moe.path), "--tensors")
    assert len(document["tensors"]) == len(tiny_moe.tensors)
    assert sum(t["n_bytes"] for t in document["tensors"]) == tiny_moe.tensor_bytes


def test_inspect_json_of_an_ollama_name(
    capsys: pytest.CaptureFixture[str], tiny_moe: TinyModel
) -> None:
    root = Path(os.environ["OLLAMA_MODELS"])
    content = tiny_moe.path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    (root / "blobs").mkdir(parents=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(content)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "tinymoe" / "latest"
    manifest.parent.mkdir(parents=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [layer]}), encoding="utf-8")

    document = inspect_json(capsys, "tinymoe")

    assert document["name"] == "tinymoe:latest"
    assert document["layer_bytes"] == list(tiny_moe.layer_bytes)


def test_inspect_json_of_an_hf_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = {
        "model_type": "gemma2",
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "vocab_size": 10,
        "max_position_embeddings": 128,
        "sliding_window": 32,
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    arrays = {f"model.layers.{i}.mlp.up_proj.weight": np.zeros((16, 8), np.float32) for i in (0, 1)}
    save_file(arrays, str(tmp_path / "model.safetensors"))

    document = inspect_json(capsys, str(tmp_path))

    assert document["format"] == "safetensors"
    assert document["layer_bytes"] == [16 * 8 * 4, 16 * 8 * 4]
    assert document["sliding_window"] == 32
    assert document["swa_layers"] == [0]
    assert document["head_dim_k"] == 16


def test_inspect_json_of_a_catalog_model(capsys: pytest.CaptureFixture[str]) -> None:
    document = inspect_json(capsys, "deepseek-v3")
    assert document["format"] == "catalog"
    assert document["mla"]["kv_lora_rank"] == 512
    assert len(document["layer_bytes"]) == 61


def test_inspect_human_output(capsys: pytest.CaptureFixture[str], tiny_moe: TinyModel) -> None:
    out = run(capsys, "inspect", str(tiny_moe.path))
    assert re.search(rf"Layers +{tiny_moe.n_layers}\b", out)
    assert f"{tiny_moe.n_experts_used} of {tiny_moe.n_experts} routed" in out
    assert "Quantization mix" in out
    for type_name in tiny_moe.type_bytes:
        assert type_name in out


def test_inspect_human_output_for_mla_and_sliding_window(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kimi = run(capsys, "inspect", "kimi-k2")
    assert "kv_lora_rank 512" in kimi
    assert "estimated download" in kimi
    gemma = run(capsys, "inspect", "gemma2:27b")
    assert "4096 tokens on 23 of 46 layers" in gemma


def test_inspect_tensor_table(capsys: pytest.CaptureFixture[str], tiny_moe: TinyModel) -> None:
    out = run(capsys, "inspect", str(tiny_moe.path), "--tensors")
    assert f"Tensors ({len(tiny_moe.tensors)})" in out
    assert "token_embd.weight" in out


def test_unknown_model_is_one_error_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", "no-such-model:7b"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: no model 'no-such-model:7b'")
    assert captured.out == ""


def test_truncated_safetensors_is_one_error_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", str(tmp_path / "model.safetensors")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1
    assert err.startswith("error: ")


def test_models_json_and_table(
    capsys: pytest.CaptureFixture[str], isolated_home: Path, tiny_moe: TinyModel
) -> None:
    target = isolated_home / ".lmstudio" / "models" / "pub" / "repo" / "tiny-moe.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(tiny_moe.path.read_bytes())

    listed = json.loads(run(capsys, "models", "--json"))
    assert listed == [
        {
            "name": "pub/repo/tiny-moe.gguf",
            "source": "lmstudio",
            "path": str(target),
            "size_bytes": target.stat().st_size,
            "format": "gguf",
        }
    ]
    table = run(capsys, "models")
    assert "LM Studio" in table
    assert "pub/repo/tiny-moe.gguf" in table


def test_models_with_nothing_installed(capsys: pytest.CaptureFixture[str]) -> None:
    assert json.loads(run(capsys, "models", "--json")) == []
    assert "No models found" in run(capsys, "models")
