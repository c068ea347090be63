"""The guard inside the gateway: resident engines are evicted when memory runs short.

The guard gets a budget (as in tests/guard) instead of exhausting the machine:
a 48 MiB budget cannot hold the tiny engine's ~50 MiB of anonymous memory.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil
import pytest

from yoyu.backends.protocol import ChatMessage, ChatRequest
from yoyu.errors import YoyuError
from yoyu.gateway.config import BackendConfig, GatewayConfig, ServedModel, ServerConfig
from yoyu.gateway.service import GatewayService, build_backends
from yoyu.guard import GuardPolicy
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.testing.waiting import wait_until
from yoyu.units import GIB, MIB

HI = (ChatMessage("user", "hi"),)


def make_service(tmp_path: Path, guard: GuardPolicy, *, guarded: bool = True) -> GatewayService:
    tiny = write_tiny_model(tmp_path / "tiny.gguf").path
    config = GatewayConfig(
        server=ServerConfig(memory_floor_bytes=GIB, guard=guarded),
        backends={"local": BackendConfig("local", "llama.cpp", {"log_dir": str(tmp_path)})},
        served={"tiny": ServedModel("tiny", "local", path=tiny, memory_bytes=64 * MIB)},
        guard=guard,
    )
    return GatewayService(
        config,
        build_backends(config),
        available_bytes=lambda: 64 * GIB,
        total_bytes=lambda: 64 * GIB,
    )


def test_the_gateway_guard_evicts_engines_that_outgrow_its_budget(tmp_path: Path) -> None:
    service = make_service(tmp_path, GuardPolicy(budget_bytes=48 * MIB))
    try:
        service.start()
        with contextlib.suppress(YoyuError):  # the guard may stop the load before it answers
            service.answer(ChatRequest("tiny", HI, max_tokens=4))
        wait_until(lambda: not service.backends["local"].pids(), 20, "the guard to stop the engine")
        assert service.residency.snapshot() == []
        assert service.guard is not None and service.guard.first_stop is not None
        assert "floor" in service.guard.first_stop.message
    finally:
        service.close()
    assert not [
        p for p in psutil.Process().children(recursive=True) if "llama_cpp" in " ".join(p.cmdline())
    ]


@pytest.mark.slow
def test_within_its_budget_the_gateway_guard_leaves_the_model_alone(tmp_path: Path) -> None:
    service = make_service(tmp_path, GuardPolicy(budget_bytes=4 * GIB))
    try:
        service.start()
        answer = service.answer(ChatRequest("tiny", HI, max_tokens=4))
        assert answer.route == "tiny"
        assert [info.id for info in service.residency.snapshot()] == ["tiny"]
        assert service.guard is not None and service.guard.first_stop is None
    finally:
        service.close()


def test_server_guard_false_runs_no_guard(tmp_path: Path) -> None:
    service = make_service(tmp_path, GuardPolicy(budget_bytes=48 * MIB), guarded=False)
    try:
        service.start()
        assert service.guard is None
    finally:
        service.close()
