"""The watch that stops a request's task when its client leaves or its time runs out,
and the streamed response built on it: plain ASGI channels, no server, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from yoyu.gateway.client_watch import ClientWatch, RelayResponse


class Channel:
    """An ASGI receive channel that says ``http.disconnect`` once told the client left."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


def test_a_client_that_leaves_cancels_the_work_and_the_watch_says_so() -> None:
    async def scenario() -> tuple[bool, bool]:
        channel, started = Channel(), asyncio.Event()

        async def work() -> None:
            started.set()
            await asyncio.Event().wait()  # an answer that never comes

        with (
            ClientWatch(channel.receive, timeout_s=60) as watch,
            pytest.raises(asyncio.CancelledError),
        ):
            await asyncio.gather(work(), _leave_once(started, channel))
        current = asyncio.current_task()
        assert current is not None
        assert getattr(current, "cancelling", lambda: 0)() == 0  # handled, none left pending
        return watch.left, watch.timed_out

    assert asyncio.run(scenario()) == (True, False)


def test_a_deadline_cancels_the_work_and_nothing_fires_once_the_work_is_done() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        channel = Channel()
        with (
            ClientWatch(channel.receive, timeout_s=0.01) as slow,
            pytest.raises(asyncio.CancelledError),
        ):
            await asyncio.Event().wait()
        with ClientWatch(channel.receive, timeout_s=60) as quick:
            await asyncio.sleep(0)
        channel.gone.set()  # the client leaves after its answer: nothing to cancel
        await asyncio.sleep(0)
        return slow.timed_out, slow.left, quick.fired

    assert asyncio.run(scenario()) == (True, False, False)


def test_a_streamed_response_stops_its_body_when_the_client_leaves() -> None:
    async def scenario() -> tuple[list[Any], list[str]]:
        channel, sent, ended = Channel(), [], []
        second_sent = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"data: 1\n\n"
                yield b"data: 2\n\n"
                await asyncio.Event().wait()  # the engine's next token, never
                yield b"data: 3\n\n"
            finally:
                ended.append("closed")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message.get("body") == b"data: 2\n\n":
                second_sent.set()

        response = RelayResponse(body(), "text/event-stream", {"X-Yoyu-Route": "m"})
        await asyncio.gather(
            response({"type": "http"}, channel.receive, send),
            _leave_once(second_sent, channel),
        )
        return sent, ended

    sent, ended = asyncio.run(scenario())
    assert sent[0]["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    assert (b"x-yoyu-route", b"m") in sent[0]["headers"]
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n"]
    assert ended == ["closed"]  # the body's finally ran: its upstream is closed


def test_a_streamed_response_that_ends_sends_its_last_empty_body() -> None:
    async def scenario() -> list[Any]:
        sent: list[Any] = []

        async def body() -> AsyncIterator[bytes]:
            yield b"x"

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await RelayResponse(body(), "application/x-ndjson", {})(
            {"type": "http"}, Channel().receive, send
        )
        return sent

    sent = asyncio.run(scenario())
    assert [(m.get("body"), m.get("more_body")) for m in sent[1:]] == [(b"x", True), (b"", False)]


async def _leave_once(ready: asyncio.Event, channel: Channel) -> None:
    await ready.wait()
    channel.gone.set()
