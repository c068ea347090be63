"""MCP over streamable HTTP, driven by the SDK's own client.

The app ``create_mcp_http_app`` returns is served by uvicorn on a free
127.0.0.1 port, over a GatewayService with the managed llama.cpp backend
(two tiny GGUF models the test writes) and a backend nobody listens on.
One server serves the module; each test asks only for what it checks.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_checks import LOAD_SETTINGS, check_schemas, error_text, structured

from yoyu.backends.ports import free_loopback_port
from yoyu.gateway.config import BackendConfig, GatewayConfig, ServedModel, ServerConfig
from yoyu.gateway.service import GatewayService
from yoyu.mcp import create_mcp_http_app
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.testing.waiting import wait_until

T = TypeVar("T")
API_KEY = "test-key-0123"


class Served:
    def __init__(self, url: str, service: GatewayService, tiny: Path) -> None:
        self.url, self.service, self.tiny = url, service, tiny


def gateway_config(folder: Path) -> GatewayConfig:
    tiny = write_tiny_model(folder / "tiny.gguf").path
    tiny_b = write_tiny_model(folder / "tiny-b.gguf", seed=1).path
    local = {"start_timeout_s": 60, "stop_grace_s": 5}
    down = {"base_url": f"http://127.0.0.1:{free_loopback_port()}/v1", "models": ["gone"]}
    return GatewayConfig(
        server=ServerConfig(memory_floor_bytes=0, cooldown_s=30, health_interval_s=3600),
        backends={
            "local": BackendConfig("local", "llama.cpp", local),
            "down": BackendConfig("down", "openai", {**down, "remote": False}),
            "far": BackendConfig("far", "openai", {**down, "remote": True}),
        },
        served={
            "tiny": ServedModel("tiny", "local", path=tiny, settings=LOAD_SETTINGS),
            "tiny-b": ServedModel("tiny-b", "local", path=tiny_b, settings=LOAD_SETTINGS),
            "dead": ServedModel("dead", "down", upstream="gone"),
            "far": ServedModel("far", "far", upstream="gone"),
        },
        aliases={"coder": "tiny", "helper": "tiny"},
    )


def serve_in_thread(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    port = free_loopback_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "uvicorn exited while starting"
        return server.started

    wait_until(started, 15, "uvicorn to start", poll_s=0.01)
    return server, thread, port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("mcp-http")
    with pytest.MonkeyPatch.context() as env:  # module scope: the autouse home is not set yet
        env.setenv("YOYU_HOME", str(folder / "home"))
        env.setenv("HOME", str(folder / "home"))
        config = gateway_config(folder)
        service = GatewayService.from_config(config)
        mcp_app = create_mcp_http_app(service)
        server, thread, port = serve_in_thread(mcp_app.starlette_app())
        try:
            yield Served(f"http://127.0.0.1:{port}/mcp", service, config.served["tiny"].path)  # type: ignore[arg-type]
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            service.close()


def session(url: str, use: Callable[[ClientSession], Awaitable[T]], **client: Any) -> T:
    """Open an MCP session over streamable HTTP, run ``use`` in it, close it."""

    async def run() -> T:
        http = httpx2.AsyncClient(**client) if client else None
        async with (
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as opened,
        ):
            await opened.initialize()
            result = await use(opened)
        if http is not None:
            await http.aclose()
        return result

    return anyio.run(run)


def call(served: Served, tool: str, **arguments: Any) -> Any:
    async def use(opened: ClientSession) -> Any:
        await opened.list_tools()  # the client validates results against the listed schemas
        return await opened.call_tool(tool, arguments)

    return session(served.url, use)


# -- the tools ----------------------------------------------------------------


def test_lists_every_tool_with_its_json_schema(served: Served) -> None:
    async def use(opened: ClientSession) -> Any:
        return (await opened.list_tools()).tools

    check_schemas(session(served.url, use))


def test_generate_answers_from_the_local_model_and_says_which(served: Served) -> None:
    answer = structured(call(served, "generate", prompt="Say hello.", model="coder", max_tokens=4))
    assert answer["model"] == "tiny" and answer["requested"] == "coder"
    assert answer["backend"] == "local"
    assert 1 <= answer["completion_tokens"] <= 4
    raw = structured(call(served, "generate", prompt="Once", raw=True, max_tokens=3, private=True))
    assert raw["model"] == "tiny" and raw["completion_tokens"] >= 1  # the default model


def test_chat_takes_a_conversation(served: Served) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again."},
    ]
    answer = structured(
        call(served, "chat", messages=messages, model="tiny", max_tokens=3, temperature=0)
    )
    assert answer["model"] == "tiny" and answer["prompt_tokens"] > 0


def test_list_models_shows_size_verdict_and_what_is_loaded(served: Served) -> None:
    structured(call(served, "generate", prompt="x", model="tiny", max_tokens=1))
    listing = structured(call(served, "list_models"))
    entries = {entry["id"]: entry for entry in listing["served"]}
    assert listing["default_model"] == "tiny"
    assert entries["tiny"]["loaded"] is True
    assert entries["tiny"]["size_bytes"] == served.tiny.stat().st_size
    assert entries["tiny"]["verdict"] and entries["tiny"]["need_bytes"] > 0
    assert entries["dead"]["managed"] is False and entries["dead"]["backend"] == "down"
    assert entries["coder"]["kind"] == "alias" and entries["coder"]["targets"] == ["tiny"]


def test_switch_model_loads_the_target_then_moves_the_alias(served: Served) -> None:
    switched = structured(call(served, "switch_model", alias="helper", target="tiny-b"))
    assert switched["previous"] == "tiny" and switched["loaded"] is True
    assert "tiny-b" in {info.id for info in served.service.residency.snapshot()}
    answer = structured(call(served, "generate", prompt="x", model="helper", max_tokens=1))
    assert answer["model"] == "tiny-b"


def test_health_check_reports_each_backend(served: Served) -> None:
    structured(call(served, "generate", prompt="x", model="tiny", max_tokens=1))
    report = structured(call(served, "health_check"))
    backends = {backend["name"]: backend for backend in report["backends"]}
    assert backends["local"]["ok"] is True and backends["local"]["latency_s"] is not None
    assert "tiny" in backends["local"]["loaded"]
    assert backends["down"]["ok"] is False and backends["down"]["loaded"] is None
    assert backends["far"]["remote"] is True and backends["far"]["loaded"] is None
    assert "failing: down" in report["summary"]


def test_plan_model_for_a_served_model_and_for_a_preset(served: Served) -> None:
    here = structured(call(served, "plan_model", model="tiny"))
    assert here["verdict"] != "DOES_NOT_FIT" and here["settings"]["n_ctx"] == 256
    there = structured(
        call(served, "plan_model", model="qwen3:32b", machine="mac-studio-m2-max-32g", ctx=8192)
    )
    assert there["machine"] == "mac-studio-m2-max-32g" and there["settings"]["n_ctx"] == 8192


def test_fit_models_ranks_the_catalog_on_a_preset(served: Served) -> None:
    report = structured(
        call(served, "fit_models", machine="linux-rtx4090-24g", family="qwen3", limit=3)
    )
    assert report["machine"] == "linux-rtx4090-24g" and len(report["models"]) == 3
    assert all(row["runs"] and row["family"] == "qwen3" for row in report["models"])


def test_memory_status_reads_the_machine_and_the_limits(served: Served) -> None:
    memory = structured(call(served, "memory_status"))
    assert 0 < memory["available_bytes"] <= memory["total_bytes"]
    assert memory["floor_bytes"] == 0  # [server] memory_floor = 0
    assert memory["system"]["total_bytes"] == memory["total_bytes"]
    guard = memory["guard"]
    assert guard is None or guard["abort_bytes"] < guard["caution_bytes"]


# -- errors ---------------------------------------------------------------------


def test_errors_are_tool_errors_and_the_server_keeps_serving(served: Served) -> None:
    async def use(opened: ClientSession) -> list[Any]:
        await opened.list_tools()
        return [
            await opened.call_tool("generate", {"prompt": "x", "model": "nope"}),
            await opened.call_tool("generate", {"prompt": "x", "model": "dead", "max_tokens": 1}),
            await opened.call_tool("plan_model", {"model": "tiny", "machine": "no-such-box"}),
            await opened.call_tool("switch_model", {"alias": "coder", "target": "nope"}),
            await opened.call_tool("generate", {"prompt": "x", "model": "far", "private": True}),
            await opened.call_tool("generate", {"prompt": "x", "model": "tiny", "max_tokens": 1}),
        ]

    unknown, down, preset, switch, private, later = session(served.url, use)
    assert unknown.is_error and "'nope' is not served here" in error_text(unknown)
    assert down.is_error and "down" in error_text(down)
    assert preset.is_error and "no-such-box" in error_text(preset)
    assert switch.is_error and "nope" in error_text(switch)
    assert private.is_error and "must stay on this machine" in error_text(private)
    for failed in (unknown, down, preset, switch, private):
        assert "\n" not in error_text(failed)  # the one-line message, no traceback
    assert structured(later)["model"] == "tiny"


def test_bad_arguments_are_tool_errors(served: Served) -> None:
    result = call(served, "generate", prompt="x", max_tokens=0)
    assert result.is_error and "max_tokens" in error_text(result)


def test_api_key_guards_the_endpoint(tmp_path: Path) -> None:
    service = GatewayService(GatewayConfig(), {})
    app = create_mcp_http_app(service, api_key=API_KEY)
    server, thread, port = serve_in_thread(app.starlette_app())
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401

        async def use(opened: ClientSession) -> Any:
            return await opened.call_tool("memory_status", {})

        headers = {"Authorization": f"Bearer {API_KEY}"}
        assert structured(session(url, use, headers=headers))["total_bytes"] > 0
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        service.close()


# -- hostile arguments ----------------------------------------------------------

_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip
_PARAMETERS = {
    "generate": ["prompt", "model", "max_tokens", "temperature", "raw", "private", "typo"],
    "chat": ["messages", "model", "max_tokens", "temperature", "private", "typo"],
    "list_models": ["installed", "typo"],
    "switch_model": ["alias", "target", "typo"],
    "health_check": ["typo"],
    "plan_model": ["model", "machine", "ctx", "kv_type", "typo"],
    "memory_status": ["typo"],
}
_VALUES = {  # plausible values beside junk, so calls get past the schema too
    "prompt": st.text(max_size=20), "model": st.sampled_from(["tiny", "coder", "nope", ""]),
    "max_tokens": st.integers(-2, 6), "messages": st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "robot"]), "content": st.text(max_size=10)}),
        max_size=2),
    "alias": st.sampled_from(["fuzz-a", "fuzz-b", "tiny"]),  # never the module's own aliases
    "target": st.sampled_from(["tiny", "nope", "dead"]), "machine": st.sampled_from(
        ["linux-cpu-32g", "no-such-machine"]), "ctx": st.integers(-1, 4096),
}  # fmt: skip
_CALL = st.sampled_from(sorted(_PARAMETERS)).flatmap(
    lambda tool: st.tuples(
        st.just(tool),
        st.dictionaries(
            st.sampled_from(_PARAMETERS[tool]),
            st.deferred(lambda: _JUNK),
            max_size=3,
        ).flatmap(
            lambda junk: st.fixed_dictionaries(
                {}, optional={name: _VALUES[name] for name in _PARAMETERS[tool] if name in _VALUES}
            ).map(lambda plausible: {**junk, **plausible})
        ),
    )
)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(calls=st.lists(_CALL, min_size=40, max_size=40))
def test_any_tool_arguments_get_a_result_or_a_tool_error_and_the_server_goes_on(
    served: Served, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    """Every call returns (a result or a tool error without a traceback), and the same
    session answers a plain call afterwards."""

    async def use(opened: ClientSession) -> Any:
        await opened.list_tools()
        for tool, arguments in calls:
            result = await opened.call_tool(tool, arguments)
            text = error_text(result)
            assert "Traceback" not in text and "site-packages" not in text, (tool, arguments)
            assert result.is_error or result.structured_content is not None, (tool, arguments)
        return await opened.call_tool("health_check", {})

    assert not session(served.url, use).is_error
