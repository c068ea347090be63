"""What a llama.cpp ``rpc-server`` says about its devices, over its own protocol.

``yoyu plan --rpc HOST:PORT`` plans a raw rpc-server (one yoyu did not start,
so no ``yoyu node`` status to read) the way llama.cpp sees it: it connects as
llama-server would, greets it and asks each device's free and total memory.
The exchange, from llama.cpp ``ggml/src/ggml-rpc/ggml-rpc.cpp`` (protocol 7):

- request: command (1 byte), payload size (u64), payload;
- response: payload size (u64), payload; all integers little-endian;
- ``HELLO`` (14) first, with 24 bytes of transport capabilities (zeros: plain
  TCP); the answer is major, minor, patch, a pad byte and the server's 24;
- ``DEVICE_COUNT`` (15), empty; the answer is a u32;
- ``GET_DEVICE_MEMORY`` (11) with the device as a u32; the answer is free
  then total bytes, two u64.

Nothing is allocated on the server. An rpc-server serves one client at a time,
so asking one that a llama-server is using waits: the timeout says so.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from yoyu.errors import BackendUnavailableError, ConfigError

PROTOCOL_MAJOR = 7
TIMEOUT_S = 5.0
_HELLO, _DEVICE_COUNT, _GET_DEVICE_MEMORY = 14, 15, 11
_CAPS = 24  # RPC_CONN_CAPS_SIZE
_HELLO_ANSWER = 4 + _CAPS


@dataclass(frozen=True)
class RpcDevice:
    """One device of an rpc-server, as llama.cpp would use it."""

    endpoint: str  # HOST:PORT, as given to --rpc
    index: int
    free_bytes: int
    total_bytes: int
    version: str  # the server's protocol version, e.g. 7.0.0


def read_rpc_devices(endpoint: str, timeout_s: float = TIMEOUT_S) -> list[RpcDevice]:
    """Every device of the rpc-server at ``endpoint``; a one-line error otherwise."""
    host, port = parse_endpoint(endpoint)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            return _ask_devices(_Exchange(connection, endpoint), endpoint)
    except TimeoutError:
        raise BackendUnavailableError(
            f"rpc-server at {endpoint} did not answer within {timeout_s:g} s; it serves one "
            "client at a time: is a llama-server using it?"
        ) from None
    except OSError as error:
        raise BackendUnavailableError(
            f"rpc-server at {endpoint} cannot be reached ({error.strerror or error}); is "
            "rpc-server (or `yoyu node`) running there on that port?"
        ) from None


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too), as llama.cpp's ``--rpc`` takes it."""
    address = split_host_port(endpoint)
    if address is None:
        raise ConfigError(
            f"--rpc {endpoint!r} is not HOST:PORT (the address rpc-server listens on)"
        )
    return address


def split_host_port(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` or ``[v6]:PORT`` as (host, port); None when it is neither."""
    host, separator, port = text.rpartition(":")
    host = host.strip("[]")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _ask_devices(exchange: _Exchange, endpoint: str) -> list[RpcDevice]:
    answer = exchange.ask(_HELLO, bytes(_CAPS), _HELLO_ANSWER, "greeting")
    major, minor, patch = answer[0], answer[1], answer[2]
    version = f"{major}.{minor}.{patch}"
    if major != PROTOCOL_MAJOR:
        raise BackendUnavailableError(
            f"rpc-server at {endpoint} speaks RPC protocol {version}; yoyu speaks "
            f"{PROTOCOL_MAJOR}.x (the llama.cpp yoyu builds): use an rpc-server of that version"
        )
    (count,) = struct.unpack("<I", exchange.ask(_DEVICE_COUNT, b"", 4, "device count"))
    devices = []
    for index in range(count):
        memory = exchange.ask(_GET_DEVICE_MEMORY, struct.pack("<I", index), 16, "memory")
        free_bytes, total_bytes = struct.unpack("<QQ", memory)
        devices.append(RpcDevice(endpoint, index, free_bytes, total_bytes, version))
    return devices


class _Exchange:
    """Requests and answers on one connection, each answer checked for its size."""

    def __init__(self, connection: socket.socket, endpoint: str) -> None:
        self.connection = connection
        self.endpoint = endpoint

    def ask(self, command: int, payload: bytes, answer_size: int, what: str) -> bytes:
        request = struct.pack("<BQ", command, len(payload)) + payload
        self.connection.sendall(request)
        (size,) = struct.unpack("<Q", self._read(8, what))
        if size != answer_size:
            raise BackendUnavailableError(
                f"rpc-server at {self.endpoint} answered its {what} with {size} bytes, not "
                f"{answer_size}: not an rpc-server of RPC protocol {PROTOCOL_MAJOR}.x"
            )
        return self._read(answer_size, what)

    def _read(self, size: int, what: str) -> bytes:
        received = bytearray()
        while len(received) < size:
            chunk = self.connection.recv(size - len(received))
            if not chunk:
                raise BackendUnavailableError(
                    f"rpc-server at {self.endpoint} closed the connection during its {what}: "
                    f"an rpc-server of another protocol than {PROTOCOL_MAJOR}.x, or not one"
                )
            received += chunk
        return bytes(received)
