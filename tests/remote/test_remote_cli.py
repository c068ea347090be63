"""``yoyu plan``, ``inspect`` and ``pull`` on remote models, through the CLI in-process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from yoyu.testing.http_files import FileServer, LocalHub

Cli = Callable[..., tuple[int, str, str]]
REPO = "google/gemma-3-270m-it-GGUF"
TINY_REPO = "yoyu-tests/tiny-llama-GGUF"


@pytest.fixture
def hub(real_gemma: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    repos = {
        REPO: {"gemma-3-270m-it-Q4_K_M.gguf": real_gemma},
        TINY_REPO: {tiny_gguf.name: tiny_gguf},
    }
    with LocalHub(repos).running() as local_hub:
        monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
        yield local_hub


def without_paths(data: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in data.items() if key not in ("paths", "remote")}


def test_plan_of_a_hub_quant_equals_the_local_plan(
    yoyu_cli: Cli, hub: LocalHub, real_gemma: Path
) -> None:
    args = ("--machine", "linux-rtx4090-24g", "--no-history", "--json")
    code, remote_out, _ = yoyu_cli("plan", f"hf://{REPO}:Q4_K_M", *args)
    assert code == 0
    _, local_out, _ = yoyu_cli("plan", str(real_gemma), *args)
    assert json.loads(remote_out) == json.loads(local_out)


def test_inspect_says_what_the_header_cost(yoyu_cli: Cli, hub: LocalHub, real_gemma: Path) -> None:
    code, out, _ = yoyu_cli("inspect", f"hf://{REPO}:Q4_K_M", "--json")
    assert code == 0
    remote = json.loads(out)
    _, local_out, _ = yoyu_cli("inspect", str(real_gemma), "--json")
    assert without_paths(remote) == without_paths(json.loads(local_out))
    assert remote["paths"] == [f"hf://{REPO}/gemma-3-270m-it-Q4_K_M.gguf"]
    assert 6_525_120 <= remote["remote"]["bytes_read"] <= 6_525_120 + (1 << 20)
    code, text, _ = yoyu_cli("inspect", f"hf://{REPO}:Q4_K_M")
    assert code == 0 and "Read 0 B of header over HTTP in 0 requests, 1 of 1 from the cache" in text


def test_a_url_that_ignores_range_exits_2(yoyu_cli: Cli, real_gemma: Path) -> None:
    with FileServer.of(real_gemma, ignore_range=True).running() as server:
        code, _, err = yoyu_cli("plan", server.url(real_gemma.name), "--machine", "linux-cpu-32g")
    assert code == 2
    assert "the server ignored the Range request" in err and "Traceback" not in err


def small_machine(folder: Path) -> Path:
    """A machine of 160 MiB: the tiny model's plan needs more (llama.cpp's own ~126 MiB)."""
    path = folder / "small.toml"
    path.write_text(
        'description = "too small"\n[os]\nsystem = "Linux"\narch = "x86_64"\n'
        '[cpu]\nmodel = "x"\ncores = 2\nthreads = 2\n'
        '[memory]\ntotal = "160 MiB"\nin_use = "0 GiB"\nswap_total = "0 GiB"\n'
        'bandwidth = "10 GB/s"\n'
    )
    return path


def test_pull_is_refused_when_it_does_not_fit(
    yoyu_cli: Cli, hub: LocalHub, tmp_path: Path, tiny_gguf: Path
) -> None:
    machine = str(small_machine(tmp_path))
    code, _, err = yoyu_cli("pull", f"hf://{TINY_REPO}:Q8_0", "--machine", machine)
    assert code == 1 and "does not fit" in err and "--force" in err
    assert not (Path(os.environ["HF_HUB_CACHE"]) / "models--yoyu-tests--tiny-llama-GGUF").exists()
    gets = hub.cdn.log.gets()
    assert gets and all(not (request.range or "").endswith("-") for request in gets)  # header only
    forced = ("--machine", machine, "--force", "--json")
    code, out, _ = yoyu_cli("pull", f"hf://{TINY_REPO}:Q8_0", *forced)
    assert code == 0
    (pulled,) = json.loads(out)["files"]
    assert Path(pulled["path"]).read_bytes() == tiny_gguf.read_bytes()
    assert pulled["sha256"] == hub.sha256(TINY_REPO, tiny_gguf.name)


def test_pull_prints_the_plan_and_the_file(yoyu_cli: Cli, hub: LocalHub, tiny_gguf: Path) -> None:
    ref = f"hf://{TINY_REPO}/{tiny_gguf.name}"
    code, out, _ = yoyu_cli("pull", ref, "--machine", "linux-cpu-32g")
    assert code == 0
    assert "on linux-cpu-32g: CPU_ONLY, risk safe" in out
    assert f"{tiny_gguf.name}: 124.28 KiB downloaded, sha256 checked" in out.replace("\n", "")


def test_pull_of_a_plain_path_exits_2(yoyu_cli: Cli, tiny_gguf: Path) -> None:
    code, _, err = yoyu_cli("pull", str(tiny_gguf))
    assert code == 2 and "yoyu pull takes a Hub GGUF" in err
