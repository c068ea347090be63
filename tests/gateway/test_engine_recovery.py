"""An engine that stops answering is stopped and loaded again; the next request is answered.

A stopped process (SIGSTOP) is the most faithful stand-in for a wedged engine:
it holds its memory and its socket, and answers nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from yoyu.backends import llamacpp_server
from yoyu.backends.protocol import ChatMessage, ChatRequest
from yoyu.gateway.config import BackendConfig, GatewayConfig, ServedModel, ServerConfig
from yoyu.gateway.service import GatewayService, build_backends
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import GIB

HI = (ChatMessage("user", "hi"),)


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewayService]:
    monkeypatch.setattr(llamacpp_server, "HEALTH_PROBE_S", 1.0)
    tiny = write_tiny_model(tmp_path / "tiny.gguf").path
    config = GatewayConfig(
        server=ServerConfig(memory_floor_bytes=0, guard=False),
        backends={"local": BackendConfig("local", "llama.cpp", {"log_dir": str(tmp_path)})},
        served={"tiny": ServedModel("tiny", "local", path=tiny)},
    )
    gateway = GatewayService(
        config,
        build_backends(config),
        available_bytes=lambda: 64 * GIB,
        total_bytes=lambda: 64 * GIB,
    )
    try:
        yield gateway
    finally:
        for pid in gateway.backends["local"].pids():  # a stopped engine cannot act on SIGTERM
            os.kill(pid, signal.SIGCONT)
        gateway.close()


def test_an_engine_that_stops_answering_is_restarted_by_the_health_check(
    service: GatewayService,
) -> None:
    assert service.answer(ChatRequest("tiny", HI, max_tokens=2)).response.finish_reason is not None
    (engine,) = service.backends["local"].loaded_models()
    assert engine.pid is not None
    os.kill(engine.pid, signal.SIGSTOP)
    (status,) = service.health()
    assert not status.ok and "tiny" in status.detail
    assert not psutil.pid_exists(engine.pid) or psutil.Process(engine.pid).status() == "zombie"
    assert service.residency.snapshot() == []
    again = service.answer(ChatRequest("tiny", HI, max_tokens=2))
    assert again.response.finish_reason is not None
    (reloaded,) = service.backends["local"].loaded_models()
    assert reloaded.pid != engine.pid


def test_a_healthy_engine_is_left_loaded(service: GatewayService) -> None:
    service.answer(ChatRequest("tiny", HI, max_tokens=2))
    (engine,) = service.backends["local"].loaded_models()
    (status,) = service.health()
    assert status.ok
    assert service.backends["local"].loaded_models() == [engine]


def test_an_engine_that_died_between_requests_is_loaded_again_for_the_next_one(
    service: GatewayService,
) -> None:
    """Measured before: the next request got a 502 ("not loaded") and only the one after
    was answered, with llama-server and with vLLM alike."""
    assert service.answer(ChatRequest("tiny", HI, max_tokens=2)).response.finish_reason is not None
    (engine,) = service.backends["local"].loaded_models()
    assert engine.pid is not None
    os.kill(engine.pid, signal.SIGKILL)
    psutil.Process(engine.pid).wait(10)
    again = service.answer(ChatRequest("tiny", HI, max_tokens=2))
    assert again.response.finish_reason is not None
    (reloaded,) = service.backends["local"].loaded_models()
    assert reloaded.pid != engine.pid and service.residency.loads == 2
