"""``yoyu pull``'s download: resumable, sha256-checked, in the Hugging Face cache layout,
from a local hub whose CDN is a real Range server (and can drop connections)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest
from huggingface_hub import try_to_load_from_cache

from yoyu.config import load_settings
from yoyu.errors import RemoteModelError
from yoyu.models.discover import find_installed_models
from yoyu.remote.pull import PulledFile, pull_model
from yoyu.remote.reader import read_remote_model
from yoyu.testing.http_files import FileServer, LocalHub

REPO = "yoyu-tests/tiny-llama-GGUF"
FILE = "tiny-llama-Q8_0.gguf"


@pytest.fixture
def hub(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    with LocalHub({REPO: {FILE: tiny_gguf}}).running() as local_hub:
        monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
        yield local_hub


def hub_cache() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])  # tests/conftest.py gives each test its own


def blob_path(hub: LocalHub) -> Path:
    return hub_cache() / "models--yoyu-tests--tiny-llama-GGUF" / "blobs" / hub.sha256(REPO, FILE)


def pull(ref: str = f"hf://{REPO}:Q8_0") -> PulledFile:
    (pulled,) = pull_model(read_remote_model(ref))
    return pulled


def blob_gets(hub: LocalHub) -> list[str | None]:
    """The Range headers of the download's GETs (header reads ask for bounded ranges)."""
    return [request.range for request in hub.cdn.log.gets() if (request.range or "").endswith("-")]


def test_a_pull_lands_where_other_tools_look(hub: LocalHub, tiny_gguf: Path) -> None:
    pulled = pull()
    snapshot = hub_cache() / "models--yoyu-tests--tiny-llama-GGUF" / "snapshots" / hub.commit
    assert Path(pulled.path) == snapshot / FILE
    assert Path(pulled.path).is_symlink() and Path(pulled.path).resolve() == blob_path(hub)
    assert Path(pulled.path).read_bytes() == tiny_gguf.read_bytes()
    assert (snapshot.parent.parent / "refs" / "main").read_text() == hub.commit
    assert try_to_load_from_cache(REPO, FILE, cache_dir=hub_cache()) == pulled.path
    installed = find_installed_models(load_settings({}), os.environ)
    assert [(model.name, str(model.path)) for model in installed] == [
        (f"{REPO}/{FILE}", pulled.path)
    ]
    size = tiny_gguf.stat().st_size
    assert (pulled.downloaded_bytes, pulled.resumed_from_bytes) == (size, 0)
    assert pulled.size_bytes == size
    assert pulled.sha256 == hub.sha256(REPO, FILE)


def test_a_second_pull_downloads_nothing(hub: LocalHub) -> None:
    pull()
    downloads = len(blob_gets(hub))
    again = pull()
    assert again.already_present and again.downloaded_bytes == 0
    assert len(blob_gets(hub)) == downloads == 1


def test_a_partial_file_is_resumed_with_range(hub: LocalHub, tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    half = len(data) // 2
    partial = blob_path(hub).with_name(blob_path(hub).name + ".incomplete")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:half])
    read = read_remote_model(f"hf://{REPO}:Q8_0")
    body_before = hub.cdn.log.bytes_sent  # the header's ranges
    (pulled,) = pull_model(read)
    assert blob_gets(hub) == [f"bytes={half}-"]
    assert hub.cdn.log.bytes_sent - body_before == len(data) - half == pulled.downloaded_bytes
    assert pulled.resumed_from_bytes == half
    assert Path(pulled.path).read_bytes() == data and not partial.exists()


def test_dropped_connections_resume_where_they_stopped(hub: LocalHub, tiny_gguf: Path) -> None:
    read = read_remote_model(f"hf://{REPO}:Q8_0")  # header first: its reads are not dropped
    hub.cdn.drop_next(2, after_bytes=50_000)
    (pulled,) = pull_model(read)
    assert blob_gets(hub) == ["bytes=0-", "bytes=50000-", "bytes=100000-"]
    assert Path(pulled.path).read_bytes() == tiny_gguf.read_bytes()


def test_an_interrupted_pull_keeps_its_part_and_the_next_resumes(
    hub: LocalHub, tiny_gguf: Path
) -> None:
    read = read_remote_model(f"hf://{REPO}:Q8_0")
    hub.cdn.drop_next(1, after_bytes=60_000)
    hub.cdn.drop_next(10, after_bytes=0)  # then nothing flows: the retries run out
    with pytest.raises(RemoteModelError, match=r"stopped at 58\.59 KiB .* is kept: run yoyu pull"):
        pull_model(read)
    partial = blob_path(hub).with_name(blob_path(hub).name + ".incomplete")
    assert partial.read_bytes() == tiny_gguf.read_bytes()[:60_000]
    hub.cdn.drops.clear()
    pulled = pull()
    assert pulled.resumed_from_bytes == 60_000
    assert Path(pulled.path).read_bytes() == tiny_gguf.read_bytes()


def test_a_corrupted_download_is_refused_and_deleted(hub: LocalHub, tiny_gguf: Path) -> None:
    """The Hub lists the sha256 of the good file; the CDN serves one changed byte."""
    read = read_remote_model(f"hf://{REPO}:Q8_0")
    data = bytearray(tiny_gguf.read_bytes())
    data[-1] ^= 0xFF  # in the tensor data: the header (and the plan) are the same
    tiny_gguf.write_bytes(bytes(data))
    with pytest.raises(RemoteModelError, match=r"sha256 is \w+, the Hub lists \w+; .* was deleted"):
        pull_model(read)
    assert list(blob_path(hub).parent.iterdir()) == []  # no blob, no partial
    assert not (blob_path(hub).parent.parent / "snapshots").exists()


def test_only_hub_files_are_pulled(tiny_gguf: Path) -> None:
    with FileServer.of(tiny_gguf).running() as server:
        read = read_remote_model(server.url(tiny_gguf.name))
        with pytest.raises(RemoteModelError, match="downloads from the Hugging Face Hub"):
            pull_model(read)


def write_split_llama(folder: Path, per_part: int) -> list[Path]:
    """A one-block llama in parts of ``per_part`` tensors, as gguf-split writes them."""
    writer = gguf.GGUFWriter(folder / "split-llama-Q8_0.gguf", "llama", split_max_tensors=per_part)
    writer.add_name("split llama")
    writer.add_block_count(1)
    writer.add_context_length(256)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    rng = np.random.default_rng(0)
    shapes = {
        "token_embd.weight": (32, 64), "blk.0.attn_norm.weight": (64,),
        "blk.0.attn_q.weight": (64, 64), "blk.0.attn_k.weight": (64, 64),
        "blk.0.attn_v.weight": (64, 64), "blk.0.attn_output.weight": (64, 64),
        "blk.0.ffn_norm.weight": (64,), "blk.0.ffn_gate.weight": (128, 64),
        "blk.0.ffn_up.weight": (128, 64), "blk.0.ffn_down.weight": (64, 128),
        "output_norm.weight": (64,), "output.weight": (32, 64),
    }  # fmt: skip
    for name, shape in shapes.items():
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sorted(folder.glob("split-llama-Q8_0-*.gguf"))


def test_every_part_of_a_split_model_is_pulled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = write_split_llama(tmp_path, per_part=5)
    assert len(parts) == 3
    files = {f"Q8_0/{part.name}": part for part in parts}
    with LocalHub({"org/split-GGUF": files}).running() as split_hub:
        monkeypatch.setenv("HF_ENDPOINT", split_hub.endpoint)
        pulled = pull_model(read_remote_model(f"hf://org/split-GGUF/Q8_0/{parts[1].name}"))
    assert [Path(item.path).name for item in pulled] == [part.name for part in parts]
    for item, part in zip(pulled, parts, strict=True):
        assert Path(item.path).read_bytes() == part.read_bytes()
        assert item.sha256 == split_hub.sha256("org/split-GGUF", f"Q8_0/{part.name}")
    assert all(Path(item.path).parent.name == "Q8_0" for item in pulled)
