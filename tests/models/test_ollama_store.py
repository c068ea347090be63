"""Ollama's store, laid out as Ollama writes it (ollama/ollama ``manifest/paths.go``,
``manifest/manifest.go`` ``WriteManifest``, ``server/images.go`` media types): blobs
named ``sha256-<hex>`` of their content, one manifest file per name and tag."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from yoyu.errors import ModelFileError, ModelNotFoundError
from yoyu.models.ollama_store import (
    MODEL_MEDIA_TYPE,
    OllamaName,
    blob_path,
    list_manifests,
    model_blob,
    ollama_models_dir,
    parse_ollama_name,
    read_manifest,
)
from yoyu.testing.tiny_models import write_tiny_model


def add_blob(root: Path, content: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(content).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(content)
    return f"sha256:{digest}", len(content)


def install(root: Path, name: str, layers: list[tuple[str, bytes]]) -> Path:
    """Write blobs and the manifest of ``name`` the way ``ollama pull`` leaves them."""
    config_digest, config_size = add_blob(root, b'{"model_format":"gguf","model_family":"llama"}')
    manifest_layers: list[dict[str, object]] = []
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": manifest_layers,
    }
    for media_type, content in layers:
        digest, size = add_blob(root, content)
        manifest_layers.append({"mediaType": media_type, "digest": digest, "size": size})
    parsed = parse_ollama_name(name)
    assert parsed is not None
    path = root / "manifests" / parsed.host / parsed.namespace / parsed.model / parsed.tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def standard_layers(gguf_bytes: bytes) -> list[tuple[str, bytes]]:
    return [
        (MODEL_MEDIA_TYPE, gguf_bytes),
        ("application/vnd.ollama.image.template", b"{{ .Prompt }}"),
        ("application/vnd.ollama.image.license", b"LLAMA 3.1 COMMUNITY LICENSE"),
        ("application/vnd.ollama.image.params", b'{"stop":["<|eot_id|>"]}'),
    ]


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> bytes:
    return write_tiny_model(tmp_path / "tiny.gguf").path.read_bytes()


@pytest.mark.parametrize(
    ("ref", "expected", "display"),
    [
        ("llama3.1", ("registry.ollama.ai", "library", "llama3.1", "latest"), "llama3.1:latest"),
        ("qwen3:8b", ("registry.ollama.ai", "library", "qwen3", "8b"), "qwen3:8b"),
        ("user/model:q4", ("registry.ollama.ai", "user", "model", "q4"), "user/model:q4"),
        (
            "hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M",
            ("hf.co", "bartowski", "Llama-3.2-1B-GGUF", "Q4_K_M"),
            "hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M",
        ),
        (
            "https://registry.ollama.ai/library/gemma3:27b",
            ("registry.ollama.ai", "library", "gemma3", "27b"),
            "gemma3:27b",
        ),
    ],
)
def test_names_fill_like_ollama(ref: str, expected: tuple[str, ...], display: str) -> None:
    name = parse_ollama_name(ref)
    assert name == OllamaName(*expected)
    assert name.display == display


@pytest.mark.parametrize(
    "ref", ["", "a/b/c/d", "../etc/passwd", "model:tag:extra", "ns.with.dot/model", "/abs/path"]
)
def test_non_names_are_refused(ref: str) -> None:
    assert parse_ollama_name(ref) is None


def test_store_root_from_environment() -> None:
    assert ollama_models_dir({"OLLAMA_MODELS": "/srv/ollama"}) == Path("/srv/ollama")
    assert ollama_models_dir({"HOME": "/home/u"}) == Path("/home/u/.ollama/models")


def test_manifest_leads_to_the_gguf_blob(tmp_path: Path, tiny_gguf: bytes) -> None:
    root = tmp_path / "models"
    install(root, "llama3.1:8b", standard_layers(tiny_gguf))

    manifest = read_manifest(root, OllamaName("registry.ollama.ai", "library", "llama3.1", "8b"))
    blob = model_blob(root, manifest)

    assert blob.read_bytes() == tiny_gguf
    assert blob.name == "sha256-" + hashlib.sha256(tiny_gguf).hexdigest()
    assert len(manifest.layers) == 4
    assert manifest.size == sum(layer.size for layer in manifest.layers) + manifest.config_size


def test_names_match_case_insensitively(tmp_path: Path, tiny_gguf: bytes) -> None:
    root = tmp_path / "models"
    install(root, "qwen3:8b", standard_layers(tiny_gguf))
    name = parse_ollama_name("Qwen3:8B")
    assert name is not None
    assert model_blob(root, read_manifest(root, name)).read_bytes() == tiny_gguf


def test_list_manifests_finds_every_name(tmp_path: Path, tiny_gguf: bytes) -> None:
    root = tmp_path / "models"
    install(root, "llama3.1:8b", standard_layers(tiny_gguf))
    install(root, "llama3.1:latest", standard_layers(tiny_gguf))
    install(root, "someone/custom:v2", standard_layers(tiny_gguf))
    broken = root / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json", encoding="utf-8")

    names = [manifest.name.display for manifest in list_manifests(root)]

    assert names == ["llama3.1:8b", "llama3.1:latest", "someone/custom:v2"]


def test_missing_manifest_names_the_path_and_the_fix(tmp_path: Path) -> None:
    name = OllamaName("registry.ollama.ai", "library", "qwen3", "8b")
    with pytest.raises(ModelNotFoundError) as error:
        read_manifest(tmp_path, name)
    message = str(error.value)
    assert "manifests/registry.ollama.ai/library/qwen3/8b" in message
    assert "ollama pull qwen3:8b" in message


def test_manifest_without_a_model_layer(tmp_path: Path) -> None:
    install(tmp_path, "adapter-only:1", [("application/vnd.ollama.image.adapter", b"lora")])
    manifest = read_manifest(
        tmp_path, OllamaName("registry.ollama.ai", "library", "adapter-only", "1")
    )
    with pytest.raises(ModelFileError, match=r"no application/vnd\.ollama\.image\.model layer"):
        model_blob(tmp_path, manifest)


def test_missing_blob_says_how_to_restore_it(tmp_path: Path, tiny_gguf: bytes) -> None:
    install(tmp_path, "gemma2:27b", standard_layers(tiny_gguf))
    digest = hashlib.sha256(tiny_gguf).hexdigest()
    (tmp_path / "blobs" / f"sha256-{digest}").unlink()
    manifest = read_manifest(tmp_path, OllamaName("registry.ollama.ai", "library", "gemma2", "27b"))
    with pytest.raises(ModelFileError, match="is missing; run `ollama pull gemma2:27b`"):
        model_blob(tmp_path, manifest)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "not a JSON object"),
        ('{"schemaVersion": 2', "not valid JSON"),
        ('{"schemaVersion": 2, "layers": {}}', "no layers list"),
        ('{"layers": [{"digest": "sha256:00"}]}', "without a mediaType"),
    ],
)
def test_malformed_manifests(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "manifests" / "registry.ollama.ai" / "library" / "bad" / "latest"
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ModelFileError, match=fragment):
        read_manifest(tmp_path, OllamaName("registry.ollama.ai", "library", "bad", "latest"))


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "md5:abc", "sha256:" + "0" * 63])
def test_only_sha256_digests_become_blob_paths(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ModelFileError, match="not sha256"):
        blob_path(tmp_path, digest)
