"""Hub references (``hf://ORG/REPO/FILE``, ``hf://ORG/REPO:QUANT``) through huggingface_hub,
against a local hub on 127.0.0.1 (``yoyu.testing.http_files.LocalHub``, ``HF_ENDPOINT``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from yoyu.errors import RemoteModelError
from yoyu.models.gguf import read_gguf_file
from yoyu.models.resolve import read_model_path
from yoyu.remote.range_file import MAX_WINDOW_BYTES
from yoyu.remote.reader import read_remote_model
from yoyu.remote.refs import HubRef, UrlRef, parse_remote_ref
from yoyu.testing.http_files import LocalHub
from yoyu.testing.sparse_models import SparseModel

GEMMA_REPO = "google/gemma-3-270m-it-GGUF"


@pytest.fixture
def gemma_hub(real_gemma: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> LocalHub:
    """A repo as releases lay them out: two quants, a vision projector, a README."""
    hub = LocalHub(
        {
            GEMMA_REPO: {
                "gemma-3-270m-it-Q4_K_M.gguf": real_gemma,
                "gemma-3-270m-it-Q8_0.gguf": tiny_gguf,
                "mmproj-F16.gguf": tiny_gguf,
                "README.md": tiny_gguf,
            }
        }
    )
    with hub.running():
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield hub


def test_a_quant_tag_picks_the_file_from_the_listing(gemma_hub: LocalHub, real_gemma: Path) -> None:
    remote = read_remote_model(f"hf://{GEMMA_REPO}:q4_k_m")
    local = read_model_path(real_gemma)
    assert dataclasses.replace(remote.spec, paths=local.paths) == local
    assert remote.spec.paths == (f"hf://{GEMMA_REPO}/gemma-3-270m-it-Q4_K_M.gguf",)
    header = read_gguf_file(real_gemma).data_offset
    assert header <= remote.transfer.bytes_read <= header + MAX_WINDOW_BYTES
    hub_calls = [
        (request.method, request.path)
        for request in gemma_hub.log.requests
        if request.path != "/api/agent-harnesses"  # huggingface_hub's own daily telemetry
    ]
    assert hub_calls == [
        ("GET", f"/api/models/{GEMMA_REPO}"),
        ("HEAD", f"/{GEMMA_REPO}/resolve/{gemma_hub.commit}/gemma-3-270m-it-Q4_K_M.gguf"),
    ]
    assert gemma_hub.cdn.log.bytes_sent == remote.transfer.bytes_read


def test_an_absent_quant_lists_the_quants_present(gemma_hub: LocalHub) -> None:
    with pytest.raises(RemoteModelError) as caught:
        read_remote_model(f"hf://{GEMMA_REPO}:Q5_K_M")
    assert str(caught.value) == (
        f"hf://{GEMMA_REPO}:Q5_K_M: no Q5_K_M GGUF in hf://{GEMMA_REPO}; it has: Q4_K_M, Q8_0; "
        f"pick one of those as hf://{GEMMA_REPO}:QUANT"
    )
    assert gemma_hub.cdn.log.requests == []


def test_a_file_path_is_read_without_a_listing(gemma_hub: LocalHub, tiny_gguf: Path) -> None:
    remote = read_remote_model(f"hf://{GEMMA_REPO}@main/gemma-3-270m-it-Q8_0.gguf")
    local = read_model_path(tiny_gguf)
    assert dataclasses.replace(remote.spec, paths=local.paths) == local
    assert not any(request.path.startswith("/api/") for request in gemma_hub.log.requests)


def test_a_web_url_of_the_hub_is_a_hub_file(gemma_hub: LocalHub) -> None:
    url = f"{gemma_hub.endpoint}/{GEMMA_REPO}/resolve/main/gemma-3-270m-it-Q8_0.gguf"
    remote = read_remote_model(url)
    assert remote.files[0].hub is not None
    assert remote.spec.paths == (f"hf://{GEMMA_REPO}/gemma-3-270m-it-Q8_0.gguf",)


def test_hub_errors_are_one_line(gemma_hub: LocalHub) -> None:
    cases = {
        "hf://nobody/nothing:Q4_K_M": "no such repo on the Hub",
        f"hf://{GEMMA_REPO}@v9/gemma-3-270m-it-Q8_0.gguf": "no such revision",
        f"hf://{GEMMA_REPO}/missing-Q4_K_M.gguf": "no such file in the repo",
    }
    for ref, message in cases.items():
        with pytest.raises(RemoteModelError, match=message) as caught:
            read_remote_model(ref)
        assert "\n" not in str(caught.value)


def test_a_gated_repo_says_to_accept_its_terms(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = LocalHub({"meta/gated": {"m-Q8_0.gguf": tiny_gguf}}, gated=frozenset({"meta/gated"}))
    with hub.running():
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        for ref in ("hf://meta/gated:Q8_0", "hf://meta/gated/m-Q8_0.gguf"):
            with pytest.raises(RemoteModelError, match="gated; accept its terms on the Hub"):
                read_remote_model(ref)


def test_a_split_model_by_quant_or_by_any_part(
    sparse_deepseek: SparseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = "unsloth/DeepSeek-V3-GGUF"
    files = {f"Q4_K_M/{path.name}": path for path in sparse_deepseek.paths}
    with LocalHub({repo: files}).running() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        by_quant = read_remote_model(f"hf://{repo}:Q4_K_M")
        by_part = read_remote_model(f"hf://{repo}/Q4_K_M/{sparse_deepseek.paths[4].name}")
    local = read_model_path(sparse_deepseek.paths[0])
    expected = tuple(f"hf://{repo}/{name}" for name in files)
    assert by_quant.spec.paths == by_part.spec.paths == expected
    assert dataclasses.replace(by_quant.spec, paths=local.paths) == local
    assert by_part.cached_files == 9 and by_part.transfer.bytes_read == 0  # same files, cached
    # The listing pins the quant's parts to its commit; a path's first HEAD pins the rest.
    revisions = [
        request.path.split("/resolve/")[1].split("/")[0]
        for request in hub.log.requests
        if request.method == "HEAD"
    ]
    assert revisions == [hub.commit] * 9 + ["main"] + [hub.commit] * 8


def test_a_sparse_70b_on_the_hub_reads_its_header_only(
    sparse_70b: SparseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = "bartowski/Meta-Llama-3.1-70B-Instruct-GGUF"
    path = sparse_70b.paths[0]
    with LocalHub({repo: {"Meta-Llama-3.1-70B-Instruct-Q4_K_M.gguf": path}}).running() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        remote = read_remote_model(f"hf://{repo}:Q4_K_M")
    header = read_gguf_file(path).data_offset
    assert header <= remote.transfer.bytes_read <= header + MAX_WINDOW_BYTES
    assert remote.spec.file_bytes == path.stat().st_size == 42_521_122_720


def test_two_models_of_one_quant_ask_for_a_file(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"a-Q8_0.gguf": tiny_gguf, "b/b-Q8_0.gguf": tiny_gguf}
    with LocalHub({"org/two": files}).running() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        with pytest.raises(RemoteModelError, match=r"2 GGUF models match Q8_0 \(a-Q8_0.gguf"):
            read_remote_model("hf://org/two:Q8_0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hf://org/repo", "name a file or a quant"),
        ("hf://org/repo/README.md", "give a .gguf path"),
        ("hf://datasets/org/data/x.gguf", "a dataset repo, not a model"),
        ("hf://org/repo/x.gguf:Q4_K_M", "not both"),
        ("hf://just-a-name", "not a Hub reference"),
    ],
)
def test_bad_references_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(RemoteModelError, match=message):
        parse_remote_ref(text)


def test_references_parse_as_huggingface_hub_reads_them() -> None:
    assert parse_remote_ref("hf://org/repo@v2/sub/x-Q4_0.gguf") == HubRef(
        "org/repo", "v2", "sub/x-Q4_0.gguf", None
    )
    assert parse_remote_ref("hf://org/repo:iq4_xs") == HubRef("org/repo", None, None, "IQ4_XS")
    assert parse_remote_ref("https://huggingface.co/org/repo/blob/main/x.gguf") == HubRef(
        "org/repo", "main", "x.gguf", None
    )
    assert parse_remote_ref("https://example.com/m/x.gguf") == UrlRef(
        "https://example.com/m/x.gguf"
    )
