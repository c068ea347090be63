"""``yoyu pull``'s download: resumable, sha256-checked, in the Hugging Face cache layout,
from a local hub whose CDN is a real Range server (and can drop connections)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
