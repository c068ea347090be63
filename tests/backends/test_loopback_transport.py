"""The lean loopback transport against real sockets: keep-alive reuse, a connection
the engine closed while idle, a body left half-read, framing, and errors."""

from __future__ import annotations

import gzip
import socket

import httpx
import pytest

from yoyu.backends.loopback_transport import LoopbackTransport
from yoyu.backends.openai_http import OpenAIHttpClient
from yoyu.backends.protocol import ChatMessage, ChatRequest, summarize_stream
from yoyu.testing.openai_stub import OpenAIStub
from yoyu.testing.raw_http import StartRaw, json_reply

HELLO = ChatRequest(model="stub-model", messages=(ChatMessage("user", "Say hi"),), max_tokens=6)


def test_a_local_engine_gets_the_loopback_transport_and_a_remote_one_does_not() -> None:
    local = OpenAIHttpClient("http://127.0.0.1:8080/v1")
    remote = OpenAIHttpClient("https://api.example.com/v1")
    try:
        assert isinstance(local._client._transport, LoopbackTransport)
        assert not isinstance(remote._client._transport, LoopbackTransport)
    finally:
        local.close()
        remote.close()


def test_whole_answers_and_streams_share_one_kept_alive_connection(
    counted_stub: tuple[OpenAIStub, list[object]],
) -> None:
    stub, accepted = counted_stub
    client = OpenAIHttpClient(stub.base_url)
    try:
        texts = [client.chat(HELLO).text for _ in range(3)]
        streamed = summarize_stream(list(client.stream_chat(HELLO))).text
        models = client.list_model_ids()
    finally:
        client.close()
    assert texts == ["Hello from the stub."] * 3
    assert streamed == "tok0 tok1 tok2 tok3 "  # a chunked body, de-chunked
    assert models == ["stub-model"]
    assert len(accepted) == 1
    assert [r.path for r in stub.requests][-1] == "/v1/models"


def test_a_stream_left_half_read_is_not_reused(
    counted_stub: tuple[OpenAIStub, list[object]],
) -> None:
    """The unread rest would be taken for the next answer's start: the connection goes."""
    stub, accepted = counted_stub
    client = OpenAIHttpClient(stub.base_url)
    try:
        stream = client.stream_chat(HELLO)
        first = next(stream)
        stream.close()
        answer = client.chat(HELLO)
    finally:
        client.close()
    assert first.content == "tok0 "
    assert answer.text == "Hello from the stub."
    assert len(accepted) == 2


def test_a_connection_the_engine_closed_while_idle_is_replaced_not_reused(
    raw_server: StartRaw,
) -> None:
    """The server hangs up after each answer without a ``Connection: close``: an
    idle socket that reads as EOF is dropped before the next request is sent."""
    server = raw_server(json_reply, True)
    numbers = []
    with httpx.Client(transport=LoopbackTransport(), base_url=server.url) as client:
        for _ in range(3):
            numbers.append(client.post("/x", json={}).json()["n"])
            assert server.hung_up.acquire(timeout=10)  # closed while the client idles
    assert numbers == [1, 2, 3]
    assert len(server.connections) == 3


def test_a_gzip_body_is_decoded_and_a_short_body_is_an_error(raw_server: StartRaw) -> None:
    packed = gzip.compress(b'{"ok": true}')

    def reply(number: int) -> bytes:
        if number == 1:
            head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
            return head % len(packed) + packed
        return b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cut'  # then the socket closes

    server = raw_server(reply, True)
    with httpx.Client(transport=LoopbackTransport(), base_url=server.url) as client:
        assert client.get("/x").json() == {"ok": True}
        assert server.hung_up.acquire(timeout=10)
        with pytest.raises(httpx.RemoteProtocolError, match="IncompleteRead"):
            client.get("/x").read()


def test_a_request_met_by_an_idle_timeout_close_goes_again_on_a_new_connection(
    raw_server: StartRaw,
) -> None:
    """A kept-alive connection closed by the engine just as a request goes out is
    retried once, anew; a fresh connection closed unanswered is an error."""
    server = raw_server(lambda number: b"" if number in (2, 4) else json_reply(number), False)
    with httpx.Client(transport=LoopbackTransport(), base_url=server.url) as client:
        first = client.post("/x", json={}).json()["n"]
        retried = client.post("/x", json={}).json()["n"]  # 2 met the close; 3 answers
        assert server.hung_up.acquire(timeout=10)
        client._transport.close()  # no idle connection left: the next one is fresh
        with pytest.raises(httpx.RemoteProtocolError, match="RemoteDisconnected"):
            client.post("/x", json={})
    assert (first, retried) == (1, 3)
    assert len(server.connections) == 3


def test_refused_and_https_are_httpx_errors() -> None:
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    with httpx.Client(transport=LoopbackTransport()) as client:
        with pytest.raises(httpx.ConnectError, match="ConnectionRefused"):
            client.get(f"http://127.0.0.1:{port}/")
        with pytest.raises(httpx.UnsupportedProtocol, match="plain http"):
            client.get(f"https://127.0.0.1:{port}/")
