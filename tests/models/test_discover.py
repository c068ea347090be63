"""Model discovery over a home folder laid out as Ollama, the Hugging Face hub cache
and LM Studio leave it. Weights are garbage or sparse: discovery must only stat them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from yoyu.config import Settings
from yoyu.models.discover import (
    InstalledModel,
    find_installed_models,
    group_gguf_files,
    hf_cache_dir,
    lmstudio_dirs,
)

GIB = 1024**3


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that holds no model and takes no disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(b"not a model, never parse me")
        handle.truncate(size)
    return path


def ollama_install(root: Path, model: str, tag: str, blob_size: int) -> Path:
    content_digest = hashlib.sha256(f"{model}:{tag}".encode()).hexdigest()
    blob = sparse(root / "blobs" / f"sha256-{content_digest}", blob_size)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": "sha256:" + "c" * 64,
            "size": 485,
        },
        "layers": [
            {
                "mediaType": "application/vnd.ollama.image.model",
                "digest": f"sha256:{content_digest}",
                "size": blob_size,
            },
            {
                "mediaType": "application/vnd.ollama.image.license",
                "digest": "sha256:" + "d" * 64,
                "size": 1000,
            },
        ],
    }
    path = root / "manifests" / "registry.ollama.ai" / "library" / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return blob


def hf_cache_repo(hub: Path, repo: str, files: dict[str, int], config: dict[str, object]) -> Path:
    """models--org--name with blobs, refs/main and a snapshot of symlinks, as huggingface_hub
    writes it (file sizes only; contents are filler)."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    revision = "3f4e1a9c0d2b7e6f5a4c3b2a1908f7e6d5c4b3a2"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision, encoding="utf-8")
    stale = repo_dir / "snapshots" / ("0" * 40)
    stale.mkdir()
    sparse(stale / "old-model-Q8_0.gguf", 10 * GIB)
    for relative, size in {"config.json": 0, **files}.items():
        blob = repo_dir / "blobs" / hashlib.sha256(relative.encode()).hexdigest()
        if relative == "config.json":
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_text(json.dumps(config), encoding="utf-8")
        else:
            sparse(blob, size)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def by_name(models: list[InstalledModel]) -> dict[str, InstalledModel]:
    return {model.name: model for model in models}


def test_ollama_models_with_manifest_sizes(isolated_home: Path) -> None:
    root = Path(os.environ["OLLAMA_MODELS"])
    blob = ollama_install(root, "qwen3", "8b", 5 * GIB)
    ollama_install(root, "qwen3", "latest", 5 * GIB)

    found = by_name(find_installed_models(Settings()))

    assert set(found) == {"qwen3:8b", "qwen3:latest"}
    assert found["qwen3:8b"] == InstalledModel("qwen3:8b", "ollama", blob, 5 * GIB + 1485, "gguf")


def test_hf_cache_folders_and_gguf_repos(isolated_home: Path) -> None:
    hub = Path(os.environ["HF_HUB_CACHE"])
    llama = hf_cache_repo(
        hub,
        "meta-llama/Llama-3.1-8B-Instruct",
        {
            "model-00001-of-00002.safetensors": 5 * GIB,
            "model-00002-of-00002.safetensors": 3 * GIB,
        },
        {"model_type": "llama"},
    )
    mlx = hf_cache_repo(
        hub,
        "mlx-community/Qwen3-8B-4bit",
        {"model.safetensors": 4 * GIB},
        {"model_type": "qwen3", "quantization": {"group_size": 64, "bits": 4}},
    )
    gguf_repo = hf_cache_repo(
        hub,
        "unsloth/Kimi-K2-Instruct-GGUF",
        {
            "Q4_K_M/Kimi-K2-Instruct-Q4_K_M-00001-of-00002.gguf": 40 * GIB,
            "Q4_K_M/Kimi-K2-Instruct-Q4_K_M-00002-of-00002.gguf": 30 * GIB,
            "mmproj-F16.gguf": GIB,
        },
        {},
    )

    found = by_name(find_installed_models(Settings()))

    assert found["meta-llama/Llama-3.1-8B-Instruct"] == InstalledModel(
        "meta-llama/Llama-3.1-8B-Instruct", "hf-cache", llama, 8 * GIB, "safetensors"
    )
    assert found["mlx-community/Qwen3-8B-4bit"].format == "mlx"
    assert found["mlx-community/Qwen3-8B-4bit"].path == mlx
    split_name = "unsloth/Kimi-K2-Instruct-GGUF/Q4_K_M/Kimi-K2-Instruct-Q4_K_M-00001-of-00002.gguf"
    assert found[split_name].size_bytes == 70 * GIB
    assert found[split_name].path.parent == gguf_repo / "Q4_K_M"
    assert len(found) == 3, "stale snapshot, projector and second shard are not models"


def test_lmstudio_both_locations(isolated_home: Path) -> None:
    new = sparse(
        isolated_home
        / ".lmstudio/models/lmstudio-community/gemma-3-27b-it-GGUF/gemma-3-27b-it-Q4_K_M.gguf",
        17 * GIB,
    )
    sparse(new.parent / "mmproj-model-f16.gguf", GIB)
    old = sparse(
        isolated_home / ".cache/lm-studio/models/TheBloke/Mistral-7B-GGUF/mistral-7b.Q4_0.gguf",
        4 * GIB,
    )

    found = by_name(find_installed_models(Settings()))

    assert found == {
        "lmstudio-community/gemma-3-27b-it-GGUF/gemma-3-27b-it-Q4_K_M.gguf": InstalledModel(
            "lmstudio-community/gemma-3-27b-it-GGUF/gemma-3-27b-it-Q4_K_M.gguf",
            "lmstudio",
            new,
            17 * GIB,
            "gguf",
        ),
        "TheBloke/Mistral-7B-GGUF/mistral-7b.Q4_0.gguf": InstalledModel(
            "TheBloke/Mistral-7B-GGUF/mistral-7b.Q4_0.gguf", "lmstudio", old, 4 * GIB, "gguf"
        ),
    }


def test_configured_paths_files_and_folders(isolated_home: Path, tmp_path: Path) -> None:
    single = sparse(tmp_path / "direct" / "phi-3-mini.Q8_0.gguf", 4 * GIB)
    library = tmp_path / "library"
    first = sparse(library / "big" / "DeepSeek-V3-Q4_K_M-00001-of-00003.gguf", 100 * GIB)
    for index in (2, 3):
        sparse(library / "big" / f"DeepSeek-V3-Q4_K_M-0000{index}-of-00003.gguf", 100 * GIB)
    hf_folder = library / "nested" / "Qwen3-0.6B"
    hf_folder.mkdir(parents=True)
    (hf_folder / "config.json").write_text('{"model_type": "qwen3"}', encoding="utf-8")
    sparse(hf_folder / "model.safetensors", GIB)
    sparse(library / ".hidden" / "skip.gguf", GIB)

    found = by_name(find_installed_models(Settings(model_paths=(single, library))))

    assert found == {
        "phi-3-mini.Q8_0": InstalledModel("phi-3-mini.Q8_0", "path", single, 4 * GIB, "gguf"),
        "DeepSeek-V3-Q4_K_M": InstalledModel(
            "DeepSeek-V3-Q4_K_M", "path", first, 300 * GIB, "gguf"
        ),
        "Qwen3-0.6B": InstalledModel("Qwen3-0.6B", "path", hf_folder, GIB, "safetensors"),
    }


def test_a_configured_path_inside_a_store_is_listed_once(isolated_home: Path) -> None:
    model = sparse(isolated_home / ".lmstudio/models/pub/repo/model.gguf", GIB)
    found = find_installed_models(Settings(model_paths=(model.parent,)))
    assert [(m.source, m.path) for m in found] == [("lmstudio", model)]


def test_nothing_installed_is_an_empty_list(isolated_home: Path) -> None:
    assert find_installed_models(Settings(model_paths=(isolated_home / "missing",))) == []


def test_store_locations_follow_the_environment() -> None:
    assert hf_cache_dir({"HF_HUB_CACHE": "/a"}) == Path("/a")
    assert hf_cache_dir({"HF_HOME": "/b"}) == Path("/b/hub")
    assert hf_cache_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/huggingface/hub")
    assert hf_cache_dir({"HOME": "/h"}) == Path("/h/.cache/huggingface/hub")
    assert lmstudio_dirs({"HOME": "/h"}) == [
        Path("/h/.lmstudio/models"),
        Path("/h/.cache/lm-studio/models"),
    ]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a-00001-of-00002.gguf", "a-00002-of-00002.gguf"], [("a", 2)]),
        (["a.gguf", "b.gguf"], [("a", 1), ("b", 1)]),
        (["a-00001-of-00002.gguf", "a-00001-of-00003.gguf"], [("a", 1), ("a", 1)]),
        (["mmproj-f16.gguf", "m.gguf"], [("m", 1)]),
    ],
)
def test_gguf_grouping(tmp_path: Path, names: list[str], expected: list[tuple[str, int]]) -> None:
    groups = group_gguf_files(tmp_path / name for name in names)
    assert [(group.stem, len(group.files)) for group in groups] == expected
