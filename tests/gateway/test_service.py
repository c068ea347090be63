"""The service with real backends: admission under a controlled memory reading, fallback.

No engine starts in these tests: a refusal must happen *before* a load, so
the managed backend has nothing loaded afterwards, and the request takes the
next route (a loopback OpenAI-compatible stub) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from yoyu.backends.protocol import ChatMessage, ChatRequest
from yoyu.errors import AdmissionError, BackendRequestError
from yoyu.estimate.engine import LLAMA_CPP_PYTHON
from yoyu.gateway import service as service_module
from yoyu.gateway.config import BackendConfig, GatewayConfig, Route, ServedModel, ServerConfig
from yoyu.gateway.service import GatewayService, build_backends
from yoyu.gateway.sizing import PlanSizer
from yoyu.testing.gateway_process import free_port
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.testing.waiting import wait_until
from yoyu.units import GIB

FLOOR = 2 * GIB
HI = (ChatMessage("user", "hi"),)


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


def make_service(tmp_path: Path, stub: OpenAIStub, available: int) -> GatewayService:
    tiny = write_tiny_model(tmp_path / "tiny.gguf").path
    config = GatewayConfig(
        server=ServerConfig(memory_floor_bytes=FLOOR),
        backends={
            "local": BackendConfig("local", "llama.cpp"),
            "lan": BackendConfig("lan", "openai", {"base_url": stub.base_url, "remote": False}),
        },
        served={
            "tiny": ServedModel("tiny", "local", path=tiny, memory_bytes=GIB),
            "small": ServedModel("small", "lan", upstream="stub-model"),
        },
        routes={"auto": Route("auto", ("tiny", "small"))},
    )
    return GatewayService(
        config,
        build_backends(config),
        available_bytes=lambda: available,
        total_bytes=lambda: 64 * GIB,
    )


def test_a_load_that_would_cross_the_floor_is_refused_before_it_starts(
    tmp_path: Path, stub: OpenAIStub
) -> None:
    service = make_service(tmp_path, stub, available=FLOOR + GIB // 2)  # 1 GiB needed, 0.5 spare
    try:
        with pytest.raises(AdmissionError, match=r"floor 2\.00 GiB"):
            service.answer(ChatRequest("tiny", HI))
        assert service.backends["local"].loaded_models() == []
        assert stub.generation_requests() == []
    finally:
        service.close()


def test_a_model_that_does_not_fit_takes_the_next_route(tmp_path: Path, stub: OpenAIStub) -> None:
    service = make_service(tmp_path, stub, available=FLOOR + GIB // 2)
    try:
        answer = service.answer(ChatRequest("auto", HI))
        assert answer.route == "small"
        assert answer.fallbacks and answer.fallbacks[0].startswith("tiny: not loading tiny")
        assert service.backends["local"].loaded_models() == []
        listing = {entry.id: entry for entry in service.list_models().served}
        assert listing["tiny"].need_bytes == GIB and not listing["tiny"].loaded
        assert listing["auto"].targets == ("tiny", "small")
        memory = service.memory()
        assert memory.floor_bytes == FLOOR and memory.held_bytes == 0
    finally:
        service.close()


def test_the_plan_sizes_a_managed_model_and_gives_its_verdict(tmp_path: Path) -> None:
    tiny = write_tiny_model(tmp_path / "tiny.gguf")
    served = ServedModel("t", "local", path=tiny.path, settings={"n_ctx": 256, "n_threads": 1})
    sizing = PlanSizer().size(served, LLAMA_CPP_PYTHON)
    assert sizing.source == "plan" and sizing.verdict is not None
    assert sizing.need_bytes > tiny.tensor_bytes  # weights plus KV cache and buffers
    # it is loaded as planned: the engine-side choices, under the user's own settings
    assert sizing.load_settings["logits_all"] is False
    assert sizing.load_settings["n_ctx"] == 256 and sizing.load_settings["n_threads"] == 1
    on_server = PlanSizer().size(served, "llama-server")
    assert on_server.load_settings["ctx_checkpoints"] == 2  # llama-server's own setting
    assert "logits_all" not in on_server.load_settings


def test_a_model_served_by_llama_server_gets_slots_that_share_its_whole_context(
    tmp_path: Path,
) -> None:
    tiny = write_tiny_model(tmp_path / "tiny.gguf")
    served = ServedModel("t", "local", path=tiny.path, settings={"n_ctx": 1024})
    one_slot = PlanSizer().size(served, LLAMA_CPP_PYTHON)
    slots = PlanSizer().size(served, "llama-server")
    assert slots.load_settings["n_seq_max"] == 4 and slots.load_settings["kv_unified"] is True
    assert slots.n_ctx == one_slot.n_ctx == 1024  # any one request may fill the context
    assert one_slot.load_settings.get("n_seq_max", 1) == 1
    # naming slots is the user's choice; `-np 2` alone is llama-server's split caches
    split = ServedModel("t2", "local", path=tiny.path, settings={"n_ctx": 1024, "n_seq_max": 2})
    chosen = PlanSizer().size(split, "llama-server")
    assert chosen.load_settings["n_seq_max"] == 2 and chosen.load_settings["kv_unified"] is False
    assert chosen.n_ctx == 512


def test_aliases_switch_at_runtime(tmp_path: Path, stub: OpenAIStub) -> None:
    service = make_service(tmp_path, stub, available=64 * GIB)
    try:
        change = service.switch_alias("fast", "small")
        assert change.previous is None
        assert service.answer(ChatRequest("fast", HI)).route == "small"
        assert "fast" in service.model_ids()
    finally:
        service.close()


# -- fallback rules, with two loopback stubs --------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[OpenAIStub, OpenAIStub]]:
    with OpenAIStub() as first, OpenAIStub(StubBehaviour(reply="second")) as second:
        yield first, second


def pair_service(first: OpenAIStub, second: OpenAIStub, down_port: int) -> GatewayService:
    def backend(name: str, url: str) -> BackendConfig:
        options = {"base_url": url, "models": ["stub-model"], "remote": False}
        return BackendConfig(name, "openai", options)

    config = GatewayConfig(
        server=ServerConfig(memory_floor_bytes=0, cooldown_s=60),
        backends={
            "a": backend("a", first.base_url),
            "b": backend("b", second.base_url),
            "down": backend("down", f"http://127.0.0.1:{down_port}/v1"),
        },
        served={
            name: ServedModel(name, name, upstream="stub-model") for name in ("a", "b", "down")
        },
        routes={"ab": Route("ab", ("a", "b")), "down-b": Route("down-b", ("down", "b"))},
    )
    return GatewayService(
        config, build_backends(config), available_bytes=lambda: GIB, total_bytes=lambda: GIB
    )


def test_a_5xx_moves_on_and_a_4xx_is_the_callers(pair: tuple[OpenAIStub, OpenAIStub]) -> None:
    first, second = pair
    service = pair_service(first, second, free_port())
    try:
        first.behaviour.fail_status = 503
        answer = service.answer(ChatRequest("ab", HI))
        assert answer.route == "b" and answer.response.text == "second"
        assert "503" in answer.fallbacks[0]

        first.behaviour.fail_status = 400
        second_calls = len(second.generation_requests())
        service._cooldowns.succeeded("a")  # a's 503 put it at the back; bring it forward
        with pytest.raises(BackendRequestError) as refused:
            service.answer(ChatRequest("ab", HI))
        assert refused.value.status_code == 400
        assert len(second.generation_requests()) == second_calls  # no fallback on a 4xx
    finally:
        service.close()


def test_an_unhealthy_backend_goes_to_the_back_of_its_routes(
    pair: tuple[OpenAIStub, OpenAIStub],
) -> None:
    first, second = pair
    service = pair_service(first, second, free_port())
    try:
        statuses = {status.name: status for status in service.health()}
        assert not statuses["down"].ok and statuses["down"].cooling_down
        assert statuses["a"].ok and not statuses["a"].cooling_down
        answer = service.answer(ChatRequest("down-b", HI))
        assert answer.route == "b" and answer.fallbacks == ()  # never waited on "down"
    finally:
        service.close()


@pytest.mark.slow
def test_unloading_reports_what_happened_and_counts_each_unload_once(
    tmp_path: Path, stub: OpenAIStub
) -> None:
    service = make_service(tmp_path, stub, available=64 * GIB)
    try:
        assert service.unload("tiny") is False  # never loaded: nothing was unloaded
        assert service.residency.unloads == 0
        service.answer(ChatRequest("tiny", HI, max_tokens=1))
        assert service.residency.evict_all() == ["tiny"]
        assert service.residency.unloads == 1
        assert service.backends["local"].loaded_models() == []
        assert service.unload("tiny") is False  # already gone
        assert service.residency.unloads == 1
    finally:
        service.close()


def test_the_maintenance_thread_outlives_a_bug_in_a_health_check(
    tmp_path: Path, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the chaos run: one RuntimeError ended the thread, and with it the TTL
    reaper and every later health check for the rest of the gateway's life."""
    monkeypatch.setattr(service_module, "MAINTENANCE_TICK_S", 0.01)
    config = GatewayConfig(
        server=ServerConfig(memory_floor_bytes=FLOOR, health_interval_s=0.01, guard=False),
        backends={"lan": BackendConfig("lan", "openai", {"base_url": stub.base_url})},
        served={"small": ServedModel("small", "lan", upstream="stub-model")},
    )
    service = GatewayService(
        config, build_backends(config), available_bytes=lambda: GIB, total_bytes=lambda: GIB
    )
    checks: list[int] = []

    def failing_health() -> object:
        checks.append(1)
        raise RuntimeError("a bug in a health check")

    monkeypatch.setattr(service.backends["lan"], "health", failing_health)
    service.start()
    try:
        wait_until(lambda: len(checks) >= 3, 10, "health checks after the first failure")
    finally:
        service.close()
