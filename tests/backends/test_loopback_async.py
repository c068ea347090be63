"""The loopback client on an event loop, against real sockets: the same answers and
errors as the blocking client, kept-alive reuse, a stream left early cuts its
connection, an idle close is noticed, a stall is a timeout."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from yoyu.backends.loopback_async import AsyncLoopback
from yoyu.backends.loopback_transport import Outgoing, Timeouts
from yoyu.backends.openai_http import HttpTimeouts, OpenAIHttpClient
from yoyu.backends.protocol import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    summarize_stream,
)
from yoyu.errors import (
    BackendCrashedError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.raw_http import StartRaw, json_reply

T = TypeVar("T")
HELLO = ChatRequest(model="stub-model", messages=(ChatMessage("user", "Say hi"),), max_tokens=6)


def run(make: Callable[[], Awaitable[T]], *clients: OpenAIHttpClient | AsyncLoopback) -> T:
    """``make()`` on a fresh event loop; the clients are closed on it before it ends
    (a connection belongs to its loop)."""

    async def main() -> T:
        try:
            return await make()
        finally:
            for client in clients:
                client.close()

    return asyncio.run(main())


async def read_all(chunks: Any) -> list[ChatChunk]:
    try:
        return [chunk async for chunk in chunks]
    finally:
        chunks.close()


def test_answers_on_the_loop_equal_the_blocking_ones_on_one_kept_alive_connection(
    counted_stub: tuple[OpenAIStub, list[object]],
) -> None:
    stub, accepted = counted_stub
    client, blocking = OpenAIHttpClient(stub.base_url), OpenAIHttpClient(stub.base_url)
    prompt = CompletionRequest(model="stub-model", prompt="Once", max_tokens=4)

    async def on_loop() -> tuple[list[str], list[ChatChunk], list[ChatChunk]]:
        texts = [(await client.chat_on_loop(HELLO)).text for _ in range(3)]
        streamed = await read_all(client.stream_chat_on_loop(HELLO))
        completed = await read_all(client.stream_complete_on_loop(prompt))
        texts.append((await client.complete_on_loop(prompt)).text)
        return texts, streamed, completed

    texts, streamed, completed = run(on_loop, client)
    try:
        blocking_stream = list(blocking.stream_chat(HELLO))
        blocking_texts = [blocking.chat(HELLO).text] * 3 + [blocking.complete(prompt).text]
    finally:
        blocking.close()
    assert texts == blocking_texts
    strip = [(c.content, c.finish_reason, c.usage, c.tool_calls) for c in streamed]
    assert strip == [(c.content, c.finish_reason, c.usage, c.tool_calls) for c in blocking_stream]
    assert summarize_stream(streamed).text == "tok0 tok1 tok2 tok3 "  # chunked, de-chunked
    assert summarize_stream(completed).usage is not None
    assert len(accepted) == 2  # one for the loop's calls, one for the blocking ones


def test_a_stream_left_early_cuts_its_connection_and_the_engine_sees_it(
    raw_server: StartRaw,
) -> None:
    """A chunked stream that has not ended: leaving it closes the socket (the server's
    read returns EOF), and the next call does not reuse it."""
    opening = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    event = b'data: {"choices": [{"delta": {"content": "hi"}, "finish_reason": null}]}\n\n'
    first = opening + b"%x\r\n%s\r\n" % (len(event), event)
    server = raw_server(lambda number: first if number == 1 else json_reply(number), False)
    client = OpenAIHttpClient(server.url + "/v1")

    async def leave_early_then_post() -> tuple[str | None, Any]:
        stream = client.stream_chat_on_loop(HELLO)
        chunk = await anext(stream)
        stream.close()
        await asyncio.to_thread(_acquire, server)  # the server read EOF: the client left
        assert client._on_loop is not None
        answer = await client._on_loop.open(_post(server.url), Timeouts(5, 5, 5))
        await answer.read()
        return chunk.content, answer.json()

    assert run(leave_early_then_post, client) == ("hi", {"n": 2})
    assert len(server.connections) == 2  # the one left early was not reused


def test_a_connection_closed_while_idle_is_replaced_and_one_closed_as_sent_is_retried(
    raw_server: StartRaw,
) -> None:
    idle_closer = raw_server(json_reply, True)
    pool = AsyncLoopback()

    async def three_posts(url: str, between: Callable[[], None]) -> list[int]:
        numbers = []
        for _ in range(3):
            answer = await pool.open(_post(url), Timeouts(5, 5, 5))
            await answer.read()
            numbers.append(answer.json()["n"])
            between()
        return numbers

    assert run(lambda: three_posts(idle_closer.url, lambda: _acquire(idle_closer)), pool) == [
        1,
        2,
        3,
    ]
    assert len(idle_closer.connections) == 3

    # The 2nd request meets a close without a word on a kept-alive connection: sent anew.
    pool = AsyncLoopback()
    closer = raw_server(lambda number: b"" if number == 2 else json_reply(number), False)
    assert run(lambda: three_posts(closer.url, lambda: None), pool) == [1, 3, 4]
    assert len(closer.connections) == 2


def test_a_fresh_connection_closed_unanswered_and_a_short_body_are_errors(
    raw_server: StartRaw,
) -> None:
    hang_up = raw_server(lambda number: b"", False)
    short = raw_server(lambda n: b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cut', True)
    pool = AsyncLoopback()

    async def post(url: str) -> bytes:
        answer = await pool.open(_post(url), Timeouts(5, 5, 5))
        return await answer.read()

    with pytest.raises(httpx.RemoteProtocolError, match="without an answer"):
        run(lambda: post(hang_up.url), pool)
    pool = AsyncLoopback()
    with pytest.raises(httpx.ReadError, match="IncompleteRead"):
        run(lambda: post(short.url), pool)


def test_a_stalled_engine_is_a_timeout_and_a_closed_port_is_unavailable(
    raw_server: StartRaw,
) -> None:
    """The read timeout bounds the wait for the next byte (the server never answers)."""
    stalled = raw_server(lambda number: b"HTTP/1.1 200 OK\r\n", False)  # a head never ended
    client = OpenAIHttpClient(stalled.url + "/v1", timeouts=HttpTimeouts(read_s=0.3))
    with socket.create_server(("127.0.0.1", 0)) as unused:
        closed_port = unused.getsockname()[1]
    nobody = OpenAIHttpClient(f"http://127.0.0.1:{closed_port}/v1")
    with pytest.raises(BackendTimeoutError, match="timed out"):
        run(lambda: client.chat_on_loop(HELLO), client)
    with pytest.raises(BackendUnavailableError, match="refused the connection"):
        run(lambda: nobody.chat_on_loop(HELLO), nobody)


def test_errors_on_the_loop_are_the_blocking_client_s_errors() -> None:
    """A status, a stream cut before [DONE]: the same error classes and messages."""
    with OpenAIStub(StubBehaviour(fail_status=400)) as refusing:
        with pytest.raises(BackendRequestError) as blocking:
            _closing_call(OpenAIHttpClient(refusing.base_url), lambda c: c.chat(HELLO))
        client = OpenAIHttpClient(refusing.base_url)
        with pytest.raises(BackendRequestError) as on_loop:
            run(lambda: client.chat_on_loop(HELLO), client)
        client = OpenAIHttpClient(refusing.base_url)
        with pytest.raises(BackendRequestError) as streamed:
            run(lambda: read_all(client.stream_chat_on_loop(HELLO)), client)
    assert str(on_loop.value) == str(blocking.value)
    assert on_loop.value.status_code == streamed.value.status_code == 400

    with OpenAIStub(StubBehaviour(die_after_chunks=2)) as dying:
        with pytest.raises(BackendCrashedError):
            _closing_call(OpenAIHttpClient(dying.base_url), lambda c: list(c.stream_chat(HELLO)))
        client = OpenAIHttpClient(dying.base_url)
        with pytest.raises(BackendCrashedError):
            run(lambda: read_all(client.stream_chat_on_loop(HELLO)), client)


def test_cancelling_the_task_cuts_the_stream(raw_server: StartRaw) -> None:
    """The gateway cancels a request by cancelling its task: the connection goes."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = raw_server(lambda number: head, False)  # the head, then nothing
    client = OpenAIHttpClient(server.url + "/v1")

    async def cancel_while_waiting() -> None:
        stream = client.stream_chat_on_loop(HELLO)
        task = asyncio.ensure_future(anext(stream))
        while not server.connections:
            await asyncio.sleep(0.01)  # until the request is in (no timing asserted)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_while_waiting, client)
    assert server.hung_up.acquire(timeout=10)


def _closing_call(client: OpenAIHttpClient, call: Callable[[OpenAIHttpClient], object]) -> None:
    try:
        call(client)
    finally:
        client.close()


def _post(url: str) -> Outgoing:
    parsed = httpx.URL(url)
    return Outgoing("POST", parsed.host, parsed.port or 80, "/x", [], b"{}")


def _acquire(server: Any) -> None:
    assert server.hung_up.acquire(timeout=10)
