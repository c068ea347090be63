"""Fixtures shared by the backend tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from yoyu.testing.openai_stub import OpenAIStub
from yoyu.testing.raw_http import RawServer, Reply, StartRaw, read_request


@pytest.fixture
def raw_server() -> Iterator[StartRaw]:
    """A one-thread HTTP server of raw bytes: ``reply(n)`` answers the n-th request
    (an empty answer: the connection is closed instead);
    with ``close_after`` it closes each connection after one answer, saying nothing
    (``hung_up`` is released once it has, so a test can wait for the idle close)."""
    sockets: list[socket.socket] = []

    def start(reply: Reply, close_after: bool) -> RawServer:
        listener = socket.create_server(("127.0.0.1", 0))
        sockets.append(listener)
        server = RawServer(f"http://127.0.0.1:{listener.getsockname()[1]}")

        def serve() -> None:
            served = 0
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                server.connections.append(served)
                with conn:
                    while read_request(conn):
                        served += 1
                        answer = reply(served)
                        if not answer:  # hang up on this request without a word
                            break
                        conn.sendall(answer)
                        if close_after:
                            break
                server.hung_up.release()

        threading.Thread(target=serve, daemon=True).start()
        return server

    yield start
    for listener in sockets:
        listener.close()


@pytest.fixture
def counted_stub() -> Iterator[tuple[OpenAIStub, list[object]]]:
    """The OpenAI stub, and the client addresses of the TCP connections it accepted."""
    accepted: list[object] = []
    with OpenAIStub() as stub:
        serve_one = stub._server.process_request

        def count_connection(request: Any, client_address: Any) -> None:
            accepted.append(client_address)
            serve_one(request, client_address)

        stub._server.process_request = count_connection  # type: ignore[method-assign]
        yield stub, accepted
