"""Planning a GGUF at a URL from its header alone, over real HTTP Range requests.

A real server on 127.0.0.1 (``yoyu.testing.http_files.FileServer``) serves the
real Gemma 3 270M and real-shape sparse models (42.52 GB Llama-3.1-70B, 404 GB
DeepSeek-V3 in 9 parts); what yoyu reads from it must describe and plan the
model exactly as the local file does, for a few MiB of bytes.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

import httpx
import pytest

from yoyu.errors import RemoteModelError
from yoyu.estimate.types import RunSettings
from yoyu.machine.presets import load_machine
from yoyu.models.gguf import read_gguf_file
from yoyu.models.resolve import read_model_path
from yoyu.models.spec import ModelSpec
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest
from yoyu.remote.range_file import MAX_WINDOW_BYTES, RangeFile
from yoyu.remote.reader import read_remote_model
from yoyu.testing.http_files import FileServer
from yoyu.testing.sparse_models import SparseModel
from yoyu.units import MIB


def header_bytes(*paths: Path) -> int:
    """Where each file's tensor data begins: the bytes a header-only reader needs."""
    return sum(read_gguf_file(path).data_offset for path in paths)


def same_as_local(remote: ModelSpec, local_path: Path) -> None:
    """The remote spec is the local file's, but for where the files are; so is its plan."""
    local = read_model_path(local_path)
    assert dataclasses.replace(remote, paths=local.paths) == local
    machine = load_machine("linux-rtx4090-24g")
    request = PlanRequest(settings=RunSettings(n_ctx=8192))
    assert make_plan(remote, machine, request) == make_plan(local, machine, request)


def test_real_gemma_plans_from_its_header_alone(real_gemma: Path) -> None:
    with FileServer.of(real_gemma).running() as server:
        remote = read_remote_model(server.url(real_gemma.name))
    same_as_local(remote.spec, real_gemma)
    header = header_bytes(real_gemma)  # 6,525,120 bytes of a 253,113,024-byte file
    assert header <= remote.transfer.bytes_read <= header + MAX_WINDOW_BYTES
    assert server.log.bytes_sent == remote.transfer.bytes_read
    assert remote.spec.paths == (server.url(real_gemma.name),)


def test_a_second_read_comes_from_the_cache(real_gemma: Path) -> None:
    with FileServer.of(real_gemma).running() as server:
        first = read_remote_model(server.url(real_gemma.name))
        gets_before = len(server.log.gets())
        second = read_remote_model(server.url(real_gemma.name))
    assert (first.cached_files, second.cached_files) == (0, 1)
    assert second.transfer.bytes_read == 0 and second.transfer.requests == 0
    assert len(server.log.gets()) == gets_before  # a HEAD for the etag, no body
    assert second.spec == first.spec


def test_a_changed_file_is_read_again(tiny_gguf: Path) -> None:
    """The etag keys the cache: a file replaced on the server is never planned stale."""
    with FileServer.of(tiny_gguf).running() as server:
        read_remote_model(server.url(tiny_gguf.name))
        os.utime(tiny_gguf, ns=(0, 0))  # a new etag (size and mtime), as a re-upload gives
        again = read_remote_model(server.url(tiny_gguf.name))
    assert again.cached_files == 0 and again.transfer.bytes_read > 0


def test_a_sparse_70b_reads_a_few_mib_of_42_gb(sparse_70b: SparseModel) -> None:
    path = sparse_70b.paths[0]
    with FileServer.of(path).running() as server:
        remote = read_remote_model(server.url(path.name))
    same_as_local(remote.spec, path)
    header = header_bytes(path)
    assert header <= remote.transfer.bytes_read <= header + MAX_WINDOW_BYTES
    assert remote.spec.file_bytes == 42_521_122_720  # bartowski's 42.52 GB file
    assert remote.transfer.bytes_read * 4000 < remote.spec.file_bytes  # 9.4 MB of 42.5 GB


def test_split_parts_are_found_by_name(sparse_deepseek: SparseModel) -> None:
    """Any part names the model: the other eight are asked for by their names."""
    with FileServer.of(*sparse_deepseek.paths).running() as server:
        remote = read_remote_model(server.url(sparse_deepseek.paths[2].name))
    same_as_local(remote.spec, sparse_deepseek.paths[0])
    assert remote.spec.paths == tuple(server.url(path.name) for path in sparse_deepseek.paths)
    header = header_bytes(*sparse_deepseek.paths)
    assert header <= remote.transfer.bytes_read <= header + 9 * MAX_WINDOW_BYTES


def test_a_missing_part_is_a_clear_error(sparse_deepseek: SparseModel) -> None:
    missing = r"00009-of-00009\.gguf: the server answered HTTP 404"
    with (
        FileServer.of(*sparse_deepseek.paths[:8]).running() as server,
        pytest.raises(RemoteModelError, match=missing),
    ):
        read_remote_model(server.url(sparse_deepseek.paths[0].name))


def test_a_server_that_ignores_range_is_refused_unread(real_gemma: Path) -> None:
    """A 200 to a Range request is the whole 253 MB on its way: yoyu closes it unread."""
    with FileServer.of(real_gemma, ignore_range=True).running() as server:
        url = server.url(real_gemma.name)
        with pytest.raises(RemoteModelError, match="ignored the Range request"):
            read_remote_model(url)
        with httpx.Client() as client:
            stream = RangeFile(client, url, real_gemma.stat().st_size, url)
            with pytest.raises(RemoteModelError, match="yoyu stopped reading"):
                stream.read(64)
    assert stream.transfer.bytes_read == 0 and stream.transfer.requests == 1


def test_dropped_connections_are_resumed(real_gemma: Path) -> None:
    with FileServer.of(real_gemma).running() as server:
        server.drop_next(3, after_bytes=10_000)
        remote = read_remote_model(server.url(real_gemma.name))
    assert remote.transfer.retries == 3
    same_as_local(remote.spec, real_gemma)
    ranges = [request.range for request in server.log.gets()]
    assert len(ranges) == len(set(ranges))  # each retry asked for the bytes still missing


def test_reads_give_up_after_the_retries(real_gemma: Path) -> None:
    with (
        FileServer.of(real_gemma).running() as server,
        pytest.raises(RemoteModelError, match=r"failed after 5 attempts \(RemoteProtocolError"),
    ):
        server.drop_next(100, after_bytes=0)
        read_remote_model(server.url(real_gemma.name))


def test_a_header_over_the_bound_is_refused(real_gemma: Path) -> None:
    with FileServer.of(real_gemma).running() as server:
        with pytest.raises(RemoteModelError, match=r"reaches past 1\.00 MiB, the most yoyu reads"):
            read_remote_model(server.url(real_gemma.name), limit=MIB)
        assert server.log.bytes_sent <= MIB


def write_lying_header(path: Path) -> None:
    """A GGUF whose first value claims 16M uint64s (128 MiB): within the 16 GiB file,
    under the reader's item cap, over the bound; then the file is a hole."""
    key = b"general.padding"
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + struct.pack("<Q", len(key)) + key
    path.write_bytes(head + struct.pack("<IIQ", 9, 10, (1 << 24) - 1))
    os.truncate(path, 16 << 30)


def test_a_lying_header_is_refused_at_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "lying.gguf"
    write_lying_header(path)
    with FileServer.of(path).running() as server:
        with pytest.raises(RemoteModelError, match=r"reaches past 64\.00 MiB"):
            read_remote_model(server.url(path.name))
        assert server.log.bytes_sent <= MIB


def test_without_an_etag_nothing_is_cached(real_gemma: Path) -> None:
    with FileServer.of(real_gemma, etags=False).running() as server:
        first = read_remote_model(server.url(real_gemma.name))
        second = read_remote_model(server.url(real_gemma.name))
    assert second.cached_files == 0
    assert second.transfer.bytes_read == first.transfer.bytes_read > 0


def test_unreachable_and_missing_files_are_one_line_errors(real_gemma: Path) -> None:
    with FileServer.of(real_gemma).running() as server:
        with pytest.raises(RemoteModelError, match="answered HTTP 404; check the URL"):
            read_remote_model(server.url("nope.gguf"))
        gone = server.url(real_gemma.name)
    with pytest.raises(RemoteModelError, match="cannot reach the server"):
        read_remote_model(gone)
