"""Asking a llama.cpp rpc-server for its devices' memory over its own protocol: the real
rpc-server (as `yoyu engine install` builds it) and servers that answer wrongly."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from openai import OpenAI

from yoyu.errors import BackendUnavailableError, ConfigError
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import GpuInfo
from yoyu.node.rpc_protocol import RpcDevice, read_rpc_devices
from yoyu.node.status import with_rpc_servers
from yoyu.testing.gateway_process import GatewayProcess, free_port
from yoyu.testing.waiting import wait_until

GIB = 1024**3
MIB = 1024**2


@contextmanager
def rpc_server(program: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(program), "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"127.0.0.1:{port}"
    try:
        wait_until(lambda: _listening(port), 10, "rpc-server to listen")
        yield endpoint
    finally:
        process.kill()
        process.wait()


def _listening(port: int) -> bool:
    return any(c.laddr and c.laddr.port == port for c in psutil.net_connections("tcp"))


def test_the_real_rpc_server_reports_one_device_with_this_machines_memory(
    built_rpc_server: Path,
) -> None:
    with rpc_server(built_rpc_server) as endpoint:
        devices = read_rpc_devices(endpoint)
        again = read_rpc_devices(endpoint)  # the connection is closed after each question
    assert len(devices) == 1 and len(again) == 1
    device = devices[0]
    assert device.endpoint == endpoint and device.index == 0 and device.version.startswith("7.")
    total = psutil.virtual_memory().total
    assert 0 < device.free_bytes <= device.total_bytes and abs(device.total_bytes - total) < GIB


@contextmanager
def fake_server(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """One connection on a free 127.0.0.1 port, answered by ``answer``."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            answer(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        listener.close()
        thread.join(timeout=5)


def hello_of(major: int) -> Callable[[socket.socket], None]:
    def answer(connection: socket.socket) -> None:
        connection.recv(1 + 8 + 24)
        connection.sendall(struct.pack("<Q", 28) + bytes([major, 0, 0, 0]) + bytes(24))
        connection.recv(64)

    return answer


def closes(connection: socket.socket) -> None:
    connection.recv(64)


def wrong_size(connection: socket.socket) -> None:
    connection.recv(64)
    connection.sendall(struct.pack("<Q", 3) + b"\x03\x00\x00")


def silent(connection: socket.socket) -> None:
    connection.recv(64)
    threading.Event().wait(2)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (hello_of(3), "speaks RPC protocol 3.0.0; yoyu speaks 7.x"),
        (closes, "closed the connection during its greeting"),
        (wrong_size, "answered its greeting with 3 bytes, not 28"),
    ],
    ids=["old-protocol", "closes", "wrong-size"],
)
def test_a_server_that_is_not_a_current_rpc_server_is_one_line(
    answer: Callable[[socket.socket], None], message: str
) -> None:
    with fake_server(answer) as endpoint, pytest.raises(BackendUnavailableError) as caught:
        read_rpc_devices(endpoint)
    assert message in str(caught.value) and endpoint in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_busy_or_silent_server_times_out_and_nothing_listening_is_refused() -> None:
    with (
        fake_server(silent) as endpoint,
        pytest.raises(BackendUnavailableError, match=r"within 0\.3 s; it serves one"),
    ):
        read_rpc_devices(endpoint, timeout_s=0.3)
    with pytest.raises(BackendUnavailableError, match="cannot be reached"):
        read_rpc_devices(f"127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        read_rpc_devices("127.0.0.1")


def test_rpc_servers_become_devices_after_the_nodes_and_before_the_heads_gpus() -> None:
    node = GpuInfo("rpc", 0, "10.0.0.2:50052", 8 * GIB, 4 * GIB, 0)
    cuda = GpuInfo("nvidia", 0, "RTX", 16 * GIB, 15 * GIB, 0)
    head = dataclasses.replace(probe_machine(), gpus=(node, cuda))
    raw = RpcDevice("10.0.0.3:50052", 0, 20 * GIB, 24 * GIB, "7.0.0")
    machine = with_rpc_servers(head, [raw])
    assert [gpu.name for gpu in machine.gpus] == ["10.0.0.2:50052", "10.0.0.3:50052", "RTX"]
    assert machine.gpus[1].free_bytes == 20 * GIB and machine.gpus[1].index == 1
    two = [raw, RpcDevice("10.0.0.3:50052", 1, GIB, GIB, "7.0.0")]
    with pytest.raises(ConfigError, match="one device per endpoint"):
        with_rpc_servers(head, two)


def test_yoyu_plan_rpc_plans_the_real_rpc_server_as_a_device(
    built_rpc_server: Path, real_gemma: Path
) -> None:
    with rpc_server(built_rpc_server) as endpoint:
        result = subprocess.run(
            [sys.executable, "-m", "yoyu", "plan", str(real_gemma), "--rpc", endpoint,
             "--ctx", "2048", "--json"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    names = [device["name"] for device in plan["devices"]]
    assert names == ["CPU", f"RPC[{endpoint}]"] and plan["settings"]["engine"] == "llama-server"


def test_yoyu_run_rpc_starts_llama_server_over_it_and_reports_its_share(
    built_llama_server: Path, built_rpc_server: Path, real_gemma: Path, tmp_path: Path
) -> None:
    environment = {**os.environ, "PATH": f"{built_llama_server.parent}:{os.environ['PATH']}"}
    with rpc_server(built_rpc_server) as endpoint:
        result = subprocess.run(
            [sys.executable, "-m", "yoyu", "run", str(real_gemma), "Name a colour.",
             "--rpc", endpoint, "--ctx", "2048", "--max-tokens", "4", "--json"],
            capture_output=True, text=True, timeout=180, check=False, env=environment,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [share] = json.loads(result.stdout)["nodes"]
    assert share["node"] == endpoint and share["layers"] == 19  # every block and the output
    assert abs(share["printed_bytes"] - share["planned_bytes"]) < 2 * MIB


def test_yoyu_serve_rpc_splits_a_served_model_over_it(
    built_llama_server: Path, built_rpc_server: Path, real_gemma: Path, tmp_path: Path
) -> None:
    config = tmp_path / "yoyu.toml"
    with rpc_server(built_rpc_server) as endpoint:
        config.write_text(
            f'[backends.server]\nkind = "llama.cpp"\nserver_binary = "{built_llama_server}"\n'
            f'[served.split]\nbackend = "server"\npath = "{real_gemma}"\nrpc = ["{endpoint}"]\n'
            "settings = { n_ctx = 2048 }\n",
            encoding="utf-8",
        )
        rpc_pid = next(
            c.pid for c in psutil.net_connections("tcp")
            if c.laddr and c.laddr.port == int(endpoint.rsplit(":", 1)[1]) and c.pid
        )  # fmt: skip
        idle = psutil.Process(rpc_pid).memory_info().rss
        with GatewayProcess(["--config", str(config)], log_path=tmp_path / "serve.log") as gw:
            client = OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
            answer = client.chat.completions.create(
                model="split", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
            engine = psutil.Process(gw.engine_pids()[0])
            argv = " ".join(" ".join(p.cmdline()) for p in [engine, *engine.children(True)])
            held = psutil.Process(rpc_pid).memory_info().rss - idle
    assert answer.choices[0].message.content is not None
    assert f"--rpc {endpoint}" in argv
    assert held > 100 * MIB  # the model's blocks live in the rpc-server now
