"""``yoyu serve`` from the command line: the no-config quick start, keys, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.tiny_models import write_tiny_model

HI = [{"role": "user", "content": "hi"}]


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yoyu", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


@pytest.mark.slow
def test_a_gguf_file_is_served_with_no_config_file(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "tiny-quick.gguf").path
    args = ["--model", f"{model}=quick", "--model", str(model), "--json"]
    with (
        GatewayProcess(args, log_path=tmp_path / "serve.log") as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0) as client,
    ):
        assert {m.id for m in client.models.list()} == {"quick", "tiny-quick"}
        answer = client.chat.completions.create(model="quick", messages=HI, max_tokens=2)
        assert answer.model == "quick" and answer.usage is not None
        stream = client.chat.completions.create(
            model="quick", messages=HI, max_tokens=2, stream=True
        )
        assert any(chunk.choices for chunk in stream)
        summary = json.loads(gateway.log_text().splitlines()[0])
        assert summary["url"] == gateway.base_url
        assert summary["mcp"] == f"{gateway.url}/mcp"
        assert summary["ollama"] == gateway.url
        initialize = {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "0"}},
        }  # fmt: skip
        mcp = httpx.post(
            f"{gateway.url}/mcp",
            json=initialize,
            headers={"Accept": "application/json, text/event-stream"},
        )
        assert mcp.status_code == 200 and "serverInfo" in mcp.text  # MCP on the same port
        engines = gateway.engine_pids()
        assert len(engines) == 1
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert gateway.process is not None and gateway.process.returncode in (0, -15)
    assert not any(Path(f"/proc/{pid}").exists() for pid in engines)  # stopped with the gateway


@pytest.mark.slow
def test_an_api_key_is_required_once_configured(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "keyed.gguf").path
    env = {"GW_TEST_KEY": "s3cret-key"}
    args = ["--model", str(model), "--api-key-env", "GW_TEST_KEY"]
    with GatewayProcess(args, env=env, log_path=tmp_path / "serve.log") as gateway:
        assert httpx.get(f"{gateway.base_url}/models").status_code == 401
        with (
            openai.OpenAI(base_url=gateway.base_url, api_key="wrong", max_retries=0) as client,
            pytest.raises(openai.AuthenticationError),
        ):
            client.models.list()
        with openai.OpenAI(base_url=gateway.base_url, api_key="s3cret-key", max_retries=0) as c:
            assert [m.id for m in c.models.list()] == ["keyed"]
        assert httpx.get(f"{gateway.url}/health").status_code == 200  # probes need no key
    assert "s3cret-key" not in gateway.log_text()


@pytest.mark.slow
def test_binding_beyond_loopback_without_a_key_is_refused(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "open.gguf").path
    result = run_serve("--model", str(model), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0  # one line
    assert "refusing to listen on 0.0.0.0 without an API key" in result.stderr


@pytest.mark.slow
def test_a_missing_model_file_or_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = run_serve("--model", str(tmp_path / "nope.gguf"))
    assert missing.returncode == 2 and "no file at" in missing.stderr
    bad_config = tmp_path / "yoyu.toml"
    bad_config.write_text("[server]\nprot = 1\n", encoding="utf-8")
    result = run_serve("--config", str(bad_config))
    assert result.returncode == 2 and "unknown key 'prot' in [server]" in result.stderr
    nothing = run_serve()
    assert nothing.returncode == 2 and "nothing to serve" in nothing.stderr
