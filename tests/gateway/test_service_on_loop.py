"""The service's event-loop path: the same routes, fallback and errors as the blocking
path; engines on loopback answer without a worker thread, anything else in one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from yoyu.backends.protocol import ChatChunk, ChatMessage, ChatRequest, summarize_stream
from yoyu.errors import BackendRequestError
from yoyu.gateway.config import BackendConfig, GatewayConfig, Route, ServedModel, ServerConfig
from yoyu.gateway.service import GatewayService, OpenStream, build_backends
from yoyu.testing.fake_ollama import FakeOllama
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.units import GIB

T = TypeVar("T")
HI = (ChatMessage("user", "hi"),)


@pytest.fixture
def stubs() -> Iterator[tuple[OpenAIStub, OpenAIStub, FakeOllama]]:
    with (
        OpenAIStub() as first,
        OpenAIStub(StubBehaviour(reply="second")) as second,
        FakeOllama() as ollama,
    ):
        ollama.install("llama3.2:1b")
        yield first, second, ollama


def make_service(first: OpenAIStub, second: OpenAIStub, ollama: FakeOllama) -> GatewayService:
    def openai(name: str, url: str) -> BackendConfig:
        options = {"base_url": url, "models": ["stub-model"], "remote": False}
        return BackendConfig(name, "openai", options)

    config = GatewayConfig(
        server=ServerConfig(memory_floor_bytes=0, cooldown_s=60),
        backends={
            "a": openai("a", first.base_url),
            "b": openai("b", second.base_url),
            "ollama": BackendConfig("ollama", "ollama", {"base_url": ollama.base_url}),
        },
        served={
            "a": ServedModel("a", "a", upstream="stub-model"),
            "b": ServedModel("b", "b", upstream="stub-model"),
            "o": ServedModel("o", "ollama", upstream="llama3.2:1b"),
        },
        routes={"ab": Route("ab", ("a", "b")), "ob": Route("ob", ("o", "b"))},
    )
    return GatewayService(
        config, build_backends(config), available_bytes=lambda: GIB, total_bytes=lambda: GIB
    )


class ThreadCount:
    """How often the service handed work to its worker threads."""

    def __init__(self, service: GatewayService) -> None:
        self.calls = 0
        offload = service.offload
        for name in ("run", "run_owned", "pump"):
            setattr(offload, name, self._counted(getattr(offload, name)))

    def _counted(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any) -> Any:
            self.calls += 1
            return await method(*args)

        return counted


def on_loop(service: GatewayService, make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await make()
        finally:  # the loop's connections are closed on it (they belong to it)
            for backend in service.backends.values():
                backend.close()

    return asyncio.run(main())


async def read(stream: OpenStream) -> list[ChatChunk]:
    try:
        return [chunk async for chunk in stream]
    finally:
        stream.close()


def test_loopback_members_answer_and_fall_back_on_the_loop_without_a_thread(
    stubs: tuple[OpenAIStub, OpenAIStub, FakeOllama],
) -> None:
    first, second, ollama = stubs
    first.behaviour.fail_status = 503
    service = make_service(first, second, ollama)
    threads = ThreadCount(service)

    async def ask() -> tuple[Any, str, list[ChatChunk], str]:
        answer = await service.answer_async(ChatRequest("ab", HI))
        service._cooldowns.succeeded("a")  # a's 503 put it at the back; bring it forward
        stream = await service.open_stream_async(ChatRequest("ab", HI))
        blocking = await asyncio.to_thread(service.answer, ChatRequest("b", HI))
        return answer, stream.route, await read(stream), blocking.response.text

    try:
        answer, streamed_route, chunks, blocking = on_loop(service, ask)
    finally:
        service.close()
    assert answer.route == "b" and answer.response.text == blocking == "second"
    assert "503" in answer.fallbacks[0]
    assert streamed_route == "b"
    assert summarize_stream(chunks).text == "tok0 tok1 tok2 tok3 "
    assert len(first.generation_requests()) == 2  # tried first each time, before any byte
    assert threads.calls == 0
    metrics = service.metrics.render(None)[0].decode()
    assert 'yoyu_fallbacks_total{from="a",to="b"} 2.0' in metrics
    assert service.queues()[0].running == 0  # every slot given back


def test_a_4xx_on_the_loop_is_the_caller_s_and_no_fallback_follows(
    stubs: tuple[OpenAIStub, OpenAIStub, FakeOllama],
) -> None:
    first, second, ollama = stubs
    first.behaviour.fail_status = 400
    service = make_service(first, second, ollama)
    try:
        with pytest.raises(BackendRequestError) as refused:
            on_loop(service, lambda: service.answer_async(ChatRequest("ab", HI)))
    finally:
        service.close()
    assert refused.value.status_code == 400
    assert second.generation_requests() == []


def test_a_blocking_backend_answers_and_streams_through_one_worker_thread_each(
    stubs: tuple[OpenAIStub, OpenAIStub, FakeOllama],
) -> None:
    """Ollama's own API is read by the blocking client: a worker thread per request (the
    whole answer, or the stream opened and read in one), the same answers."""
    first, second, ollama = stubs
    ollama.reply("from ollama")
    service = make_service(first, second, ollama)
    threads = ThreadCount(service)

    async def ask() -> tuple[str, str, list[ChatChunk]]:
        answer = await service.answer_async(ChatRequest("ob", HI))
        stream = await service.open_stream_async(ChatRequest("ob", HI))
        return answer.route, answer.response.text, await read(stream)

    try:
        route, text, chunks = on_loop(service, ask)
    finally:
        service.close()
    assert (route, text) == ("o", "from ollama")
    assert summarize_stream(chunks).text == "from ollama"
    assert threads.calls == 2
    assert second.generation_requests() == []
