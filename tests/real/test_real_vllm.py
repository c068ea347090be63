"""vLLM's CPU backend against yoyu's plan: a small Llama written here (random weights,
a tokenizer trained offline), the server started with the plan's own arguments, the KV
pool vLLM logs and its three processes' peak memory beside the plan, answers through
the real `openai` client.

vLLM is not one of yoyu's dependencies (3.5 GB and a pinned torch): these tests run on
the vLLM that ``yoyu engine install vllm`` put in its own environment (CI installs it),
or on the interpreter ``YOYU_VLLM_PYTHON`` names, and are skipped where there is none.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import psutil
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult
from openai import OpenAI

import yoyu.testing
from yoyu.backends.llamacpp_server import LlamaCppServerBackend
from yoyu.backends.protocol import CompletionRequest, ModelRef
from yoyu.backends.vllm_engine import VllmEngine
from yoyu.backends.vllm_install import PYTHON_ENV, vllm_python
from yoyu.errors import BackendCrashedError
from yoyu.estimate.types import RunSettings
from yoyu.machine.probe import probe_machine
from yoyu.models.hf_model import read_hf_model
from yoyu.plan.emit.vllm import vllm_command
from yoyu.plan.planner import make_plan
from yoyu.plan.types import Plan, PlanRequest
from yoyu.testing.gateway_process import GatewayProcess, free_port
from yoyu.testing.waiting import wait_until
from yoyu.units import GIB, MIB

pytestmark = pytest.mark.slow

VLLM_PYTHON = vllm_python()  # read before the tests' home is isolated
READY_S = 240  # 30-45 s here with --enforce-eager on 2 cores; the first import is slower
KV_POOL = 256 * MIB


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Plan, str, int, Path]]:
    if not VLLM_PYTHON:
        pytest.skip("no vLLM here: run `yoyu engine install vllm` or set YOYU_VLLM_PYTHON")
    folder = tmp_path_factory.mktemp("vllm")
    model = folder / "tiny-llama"
    writer = Path(yoyu.testing.__file__).parent / "write_hf_llama.py"
    subprocess.run([VLLM_PYTHON, str(writer), str(model), "256", "4", "2"], check=True)
    spec = read_hf_model(model)
    settings = RunSettings(n_ctx=2048, engine="vllm", kv_cache_bytes=KV_POOL)
    plan = make_plan(spec, probe_machine(), PlanRequest(settings=settings))
    argv = vllm_command(plan, spec, str(model), probe_machine(), GIB).argv
    port = free_port()
    server = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", *argv[2:]]
    server += ["--port", str(port), "--enforce-eager", "--served-model-name", "tiny"]
    log = folder / "vllm.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CACHE_ROOT": str(folder / "cache")}
    with log.open("wb") as sink:
        process = subprocess.Popen(server, stdout=sink, stderr=sink, env=env)
    try:
        wait_until(
            lambda: "Application startup complete" in log.read_text(errors="replace")
            or process.poll() is not None,
            READY_S, "vLLM to start",
        )  # fmt: skip
        assert process.poll() is None, log.read_text(errors="replace")[-2000:]
        yield plan, f"http://127.0.0.1:{port}/v1", process.pid, log
    finally:
        tree = (
            [process, *psutil.Process(process.pid).children(recursive=True)]
            if (process.poll() is None)
            else [process]
        )
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        for member in tree[1:]:
            if isinstance(member, psutil.Process) and member.is_running():
                member.kill()


def test_the_pool_vllm_logs_is_the_planned_one_token_for_token(
    served: tuple[Plan, str, int, Path],
) -> None:
    plan, _, _, log = served
    found = re.search(r"CPU KV cache size: ([\d,]+) tokens", log.read_text(errors="replace"))
    assert found is not None
    logged_tokens = int(found.group(1).replace(",", ""))
    assert f"{logged_tokens:,} tokens" in " ".join(plan.notes)
    assert plan.estimate.total("kv_bytes") == KV_POOL


def test_it_answers_and_its_processes_peak_within_ten_percent_of_the_plan(
    served: tuple[Plan, str, int, Path],
) -> None:
    plan, base_url, pid, _ = served
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Name three colours"}], max_tokens=16
    )
    completion = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=16)
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    peak = sum(_high_water_mark(member.pid) for member in tree)
    assert abs(peak - plan.estimate.total_bytes) <= 0.10 * plan.estimate.total_bytes


def _high_water_mark(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) * 1024 if found else 0


def test_yoyu_run_starts_vllm_with_the_planned_pool_and_measures_its_process_tree(
    served: tuple[Plan, str, int, Path],
    yoyu_cli: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`yoyu run --engine vllm`: the runner plans for vLLM, starts it with the pool in bytes
    (measured here: 2157 MiB planned, 2165 MiB peak for the whole tree with a 256 MiB pool);
    the pool vLLM reports on /metrics is the engine's KV buffer, and the samples carry how
    full it got while the answer was written (when vLLM's frontend kept up with its engine)."""
    log = served[3]
    assert VLLM_PYTHON is not None
    monkeypatch.setenv(PYTHON_ENV, VLLM_PYTHON)  # the tests' home has no install of its own
    model = log.parent / "tiny-llama"  # the fixture's model, beside its server's log
    code, out, err = yoyu_cli(
        "run", str(model), "Name three colours", "--engine", "vllm", "--kv-cache-memory",
        "256MiB", "--ctx", "2048", "--max-tokens", "1500", "--temperature", "0", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["settings"]["kv_cache_memory_bytes"] == KV_POOL
    assert report["settings"]["max_model_len"] == 2048
    assert report["usage"]["completion_tokens"] > 0
    peak = report["phases"]["peak"]["process_rss_bytes"]
    predicted = report["predicted"]["total_bytes"]
    assert abs(peak - predicted) <= 0.10 * predicted
    assert report["engine"] == "vllm"
    assert report["engine_buffers"] == {"kv": KV_POOL}
    # one sequence holds at most ceil(tokens / 128) of the pool's 1,023 usable blocks
    tokens = report["usage"]["prompt_tokens"] + report["usage"]["completion_tokens"]
    assert tokens > 512, "greedy on this model writes 1,010 tokens: too short to fill blocks"
    kv_used = report["phases"]["peak"]["engine_kv_used_fraction"]
    # None: vLLM's frontend, starved of CPU, updated its gauge only once the answer was done
    # (no reading saw the pool in use); a reading is never a false 0 %
    assert kv_used is None or 0 < kv_used <= -(-tokens // 128) / (KV_POOL // 2048 // 128 - 1)


def test_a_worker_killed_mid_answer_ends_the_stream_with_an_error_and_stops_the_engine(
    served: tuple[Plan, str, int, Path], tmp_path: Path
) -> None:
    """vLLM itself ends such a stream with finish_reason "stop" (a cut answer passed off as
    a whole one); yoyu asks its /health first and raises instead, and stops what is left."""
    assert VLLM_PYTHON is not None
    model = served[3].parent / "tiny-llama"
    backend = LlamaCppServerBackend(engine=VllmEngine(VLLM_PYTHON), log_dir=tmp_path / "logs")
    try:
        settings = {"max_model_len": 2048, "kv_cache_memory_bytes": KV_POOL, "enforce_eager": True}
        backend.load(ModelRef("tiny", model), settings)
        tree = psutil.Process(backend.pids()[0]).children(recursive=True)
        stream = backend.stream_complete(
            CompletionRequest(model="tiny", prompt="The quick brown", max_tokens=1500)
        )
        next(stream)
        next(member for member in tree if member.name() == "VLLM::Worker").kill()
        with pytest.raises(BackendCrashedError, match="died while answering"):
            for _ in stream:
                pass
        assert backend.loaded_models() == []
        wait_until(lambda: not any(member.is_running() for member in tree), 30, "vLLM to end")
    finally:
        backend.close()


def test_yoyu_serve_answers_from_vllm_and_stops_it_with_itself(
    served: tuple[Plan, str, int, Path], tmp_path: Path
) -> None:
    assert VLLM_PYTHON is not None
    config = _served_vllm_config(tmp_path, served[3].parent / "tiny-llama")
    environment = {PYTHON_ENV: VLLM_PYTHON}
    with GatewayProcess(["--config", str(config)], env=environment,
                        log_path=tmp_path / "serve.log") as gateway:  # fmt: skip
        client = OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
        chat = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
        completion = client.completions.create(model="tiny", prompt="The quick", max_tokens=8)
        engines = [psutil.Process(pid) for pid in gateway.engine_pids()]
        tree = [member for engine in engines for member in engine.children(recursive=True)]
        assert any(member.name() == "VLLM::Worker" for member in tree)
        scraped = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    # vLLM's own gauge, re-exported per model: the pool is empty again between requests
    assert 'yoyu_engine_kv_used_ratio{model="tiny"} 0' in scraped
    assert 'yoyu_engine_requests_running{model="tiny"} 0' in scraped
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    wait_until(lambda: not any(member.is_running() for member in tree), 30, "vLLM to end")


def test_mcp_tools_plan_list_and_answer_from_a_vllm_model(
    served: tuple[Plan, str, int, Path], tmp_path: Path
) -> None:
    """`yoyu mcp` with a vLLM-served model: the same tools as for llama.cpp's, the plan is
    vLLM's (its pool), the answer comes from vLLM."""
    assert VLLM_PYTHON is not None
    config = _served_vllm_config(tmp_path, served[3].parent / "tiny-llama")
    env = {**os.environ, PYTHON_ENV: VLLM_PYTHON, "YOYU_HOME": str(tmp_path / "home")}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "yoyu", "mcp", "--config", str(config)], env=env
    )
    seen = anyio.run(_mcp_session, params)
    for name, result in seen.items():
        assert not result.is_error, (name, result.content)
    plan = seen["plan_model"].structured_content
    assert plan is not None and plan["settings"]["engine"] == "vllm"
    assert plan["totals"]["kv_bytes"] == KV_POOL
    answer = seen["generate"].structured_content
    assert answer is not None and answer["model"] == "tiny" and answer["completion_tokens"] > 0
    listing = seen["list_models"].structured_content
    assert listing is not None
    assert any(entry["id"] == "tiny" and entry["loaded"] for entry in listing["served"])


async def _mcp_session(params: StdioServerParameters) -> dict[str, CallToolResult]:
    seen = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        seen["plan_model"] = await session.call_tool("plan_model", {"model": "tiny"})
        seen["generate"] = await session.call_tool(
            "generate", {"prompt": "The quick brown", "max_tokens": 8}
        )
        seen["list_models"] = await session.call_tool("list_models", {"installed": False})
    return seen


def _served_vllm_config(folder: Path, model: Path) -> Path:
    """A yoyu.toml serving the fixture's model as "tiny" on a vLLM backend, 256 MiB pool."""
    config = folder / "yoyu.toml"
    config.write_text(
        '[backends.v]\nkind = "llama.cpp"\nengine = "vllm"\n'
        f'[served.tiny]\nbackend = "v"\npath = "{model}"\n'
        f"settings = {{ n_ctx = 2048, kv_cache_bytes = {KV_POOL} }}\n",
        encoding="utf-8",
    )
    return config
