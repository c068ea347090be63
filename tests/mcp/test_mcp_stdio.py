"""``yoyu mcp`` over stdio as a real child process, driven by the SDK's own client.

The server is ``python -m yoyu mcp --model tiny.gguf=tiny`` with no config
file (a private, empty home); a second ``--model`` names a truncated GGUF,
so one model fails to load. The session calls every tool, the failures come
back as tool errors, and the same process answers afterwards; when the
client hangs up, the server and the engine it started are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import psutil
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_checks import check_schemas, error_text, structured

from yoyu.testing.tiny_models import write_tiny_model
from yoyu.testing.waiting import WaitTimeout, wait_until

EXIT_TIMEOUT_S = 15.0


def server_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "YOYU_HOME": str(home / "yoyu"), "HOME": str(home)}
    env.pop("YOYU_CONFIG", None)
    return env


def write_models(folder: Path) -> tuple[Path, Path]:
    tiny = write_tiny_model(folder / "tiny.gguf").path
    broken = write_tiny_model(folder / "broken.gguf").path
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])  # the header lies: tensors end past the file
    return tiny, broken


def yoyu_mcp_children() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children()
        if "mcp" in child.cmdline() and "yoyu" in child.cmdline()
    ]


def wait_gone(pids: list[int]) -> list[int]:
    """The pids still alive after a deadline (polled, no fixed sleep)."""

    def alive() -> list[int]:
        return [pid for pid in pids if psutil.pid_exists(pid) and _not_zombie(pid)]

    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not alive(), EXIT_TIMEOUT_S, "the processes to exit", poll_s=0.05)
    return alive()


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def run_session(params: StdioServerParameters) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        seen["tools"] = tools
        (server,) = yoyu_mcp_children()
        seen["server_pid"] = server.pid
        seen["generate"] = await session.call_tool("generate", {"prompt": "Hi.", "max_tokens": 3})
        seen["engines"] = [child.pid for child in server.children(recursive=True)]
        seen["broken"] = await session.call_tool("generate", {"prompt": "Hi.", "model": "broken"})
        seen["unknown"] = await session.call_tool("chat", {"messages": [], "model": "tiny"})
        seen["nope"] = await session.call_tool(
            "chat", {"messages": [{"role": "user", "content": "Hi."}], "model": "nope"}
        )
        seen["chat"] = await session.call_tool(
            "chat", {"messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2}
        )
        for name, arguments in (
            ("list_models", {"installed": False}),
            ("switch_model", {"alias": "main", "target": "tiny"}),
            ("health_check", {}),
            ("plan_model", {"model": "tiny", "machine": "linux-cpu-32g"}),
            ("memory_status", {}),
        ):
            seen[name] = await session.call_tool(name, arguments)
        seen["later"] = await session.call_tool("generate", {"prompt": "Hi.", "model": "main"})
    return seen


def test_stdio_server_runs_every_tool_and_survives_errors(tmp_path: Path) -> None:
    tiny, broken = write_models(tmp_path)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "yoyu", "mcp", "--model", f"{tiny}=tiny", "--model", f"{broken}=broken"],
        env=server_env(tmp_path / "home"),
    )
    seen = anyio.run(run_session, params)

    check_schemas(seen["tools"])
    answer = structured(seen["generate"])
    assert answer["model"] == "tiny" and 1 <= answer["completion_tokens"] <= 3
    assert seen["engines"], "the managed engine runs under the server"
    assert seen["broken"].is_error and "truncated" in error_text(seen["broken"])
    assert seen["unknown"].is_error and "messages" in error_text(seen["unknown"])
    assert seen["nope"].is_error and "'nope' is not served here" in error_text(seen["nope"])
    assert structured(seen["chat"])["model"] == "tiny"
    served = {entry["id"]: entry for entry in structured(seen["list_models"])["served"]}
    assert served["tiny"]["loaded"] is True and served["broken"]["verdict"] is None
    assert structured(seen["switch_model"])["summary"] == "main -> tiny (was unset)"
    (local,) = structured(seen["health_check"])["backends"]
    assert local["name"] == "local" and local["ok"] is True and "tiny" in local["loaded"]
    assert structured(seen["plan_model"])["machine"] == "linux-cpu-32g"
    assert structured(seen["memory_status"])["loaded"][0]["id"] == "tiny"
    assert structured(seen["later"])["model"] == "tiny"  # the same process, after every error

    assert wait_gone([seen["server_pid"], *seen["engines"]]) == []


def test_check_prints_models_and_tools_as_json(tmp_path: Path) -> None:
    tiny, _ = write_models(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "yoyu", "mcp", "--model", f"{tiny}=tiny", "--check", "--json"],
        env=server_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    summary = json.loads(done.stdout)
    assert summary["models"] == ["tiny"] and "plan_model" in summary["tools"]


def test_a_missing_model_file_is_a_one_line_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "yoyu", "mcp", "--model", str(tmp_path / "none.gguf")],
        env=server_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: --model") and done.stderr.count("\n") == 1


def test_sigterm_stops_the_server_and_its_engines(tmp_path: Path) -> None:
    """The SDK client escalates to SIGTERM on a slow exit; engines live in their own
    session, so only the server's own shutdown stops them."""
    tiny, _ = write_models(tmp_path)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "yoyu", "mcp", "--model", f"{tiny}=tiny"],
        env=server_env(tmp_path / "home"),
    )

    async def terminate() -> list[int]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            structured(await session.call_tool("generate", {"prompt": "Hi.", "max_tokens": 1}))
            (server,) = yoyu_mcp_children()
            pids = [server.pid, *(child.pid for child in server.children(recursive=True))]
            server.terminate()
            return await anyio.to_thread.run_sync(wait_gone, pids)

    assert anyio.run(terminate) == []


def test_import_mcp_in_yoyu_mcp_is_the_sdk() -> None:
    from yoyu.mcp import server

    assert server.MCPServer.__module__.startswith("mcp.server")
    assert "site-packages" in sys.modules["mcp"].__file__  # type: ignore[operator]
