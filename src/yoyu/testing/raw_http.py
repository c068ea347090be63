"""A raw HTTP/1.1 server of canned bytes, for the loopback transports' tests: what the
OpenAI stub never does (hang up unanswered, close an idle connection, send a short
or odd body, stall)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

Reply = Callable[[int], bytes]


@dataclass
class RawServer:
    url: str
    connections: list[int] = field(default_factory=list)  # accepted, in order
    hung_up: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))


StartRaw = Callable[[Reply, bool], RawServer]


def read_request(conn: socket.socket) -> bool:
    """Read one request (headers and a Content-Length body); False at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return False
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)
    return True


def json_reply(number: int) -> bytes:
    body = json.dumps({"n": number}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
