"""Runtime discovery: a real HTTP server stands in for Ollama's /api/version endpoint."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import pytest

from yoyu.machine.commands import CommandError
from yoyu.machine.runtimes import (
    ollama_base_url,
    parse_llama_server_version,
    probe_llama_cpp_python,
    probe_llama_server,
    probe_ollama,
    probe_runtimes,
)

ReadFixture = Callable[[str], str]
# Ollama's documented response (docs.ollama.com/api-reference/get-version).
OLLAMA_VERSION_BODY = b'{"version":"0.12.6"}'


def serve(body: bytes, content_type: str = "application/json") -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 answering every GET with ``body``; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/api/version" else 404
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ollama_port() -> Iterator[int]:
    yield from serve(OLLAMA_VERSION_BODY)


@pytest.fixture
def other_server_port() -> Iterator[int]:
    yield from serve(b"<html>not ollama</html>", content_type="text/html")


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


# --- Ollama ----------------------------------------------------------------------------


def test_ollama_found_with_its_version(ollama_port: int) -> None:
    runtime = probe_ollama({"OLLAMA_HOST": f"127.0.0.1:{ollama_port}"})
    assert (runtime.name, runtime.found, runtime.version) == ("ollama", True, "0.12.6")
    assert runtime.location == f"http://127.0.0.1:{ollama_port}"


def test_ollama_host_bound_to_all_interfaces_is_reached_on_loopback(ollama_port: int) -> None:
    runtime = probe_ollama({"OLLAMA_HOST": f"0.0.0.0:{ollama_port}"})
    assert runtime.found and runtime.version == "0.12.6"


def test_closed_port_means_not_found(closed_port: int) -> None:
    runtime = probe_ollama({"OLLAMA_HOST": f"http://127.0.0.1:{closed_port}"})
    assert (runtime.found, runtime.version) == (False, None)
    assert runtime.location == f"http://127.0.0.1:{closed_port}"


def test_another_server_on_the_port_is_not_ollama(other_server_port: int) -> None:
    assert not probe_ollama({"OLLAMA_HOST": f"127.0.0.1:{other_server_port}"}).found


def test_proxy_variables_do_not_reroute_the_local_check(
    ollama_port: int, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    assert probe_ollama({"OLLAMA_HOST": f"127.0.0.1:{ollama_port}"}).found


def test_injected_getter_receives_the_url_and_the_short_timeout() -> None:
    calls: list[tuple[str, float]] = []

    def get(url: str, timeout_s: float) -> bytes:
        calls.append((url, timeout_s))
        return json.dumps({"version": "0.5.7"}).encode()

    runtime = probe_ollama({}, http_get=get)
    assert runtime.version == "0.5.7"
    assert calls == [("http://127.0.0.1:11434/api/version", 0.3)]


@pytest.mark.parametrize(
    ("ollama_host", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("gpu-box", "http://gpu-box:11434"),
        ("gpu-box:1234", "http://gpu-box:1234"),
        (":11500", "http://127.0.0.1:11500"),
        ("http://gpu-box", "http://gpu-box:80"),
        ("https://ollama.example.org/", "https://ollama.example.org:443"),
        ("http://10.0.0.5:11434/base", "http://10.0.0.5:11434"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("::", "http://[::1]:11434"),
        ('"127.0.0.1:9999"', "http://127.0.0.1:9999"),
        ("127.0.0.1:notaport", "http://127.0.0.1:11434"),
    ],
)
def test_ollama_host_forms(ollama_host: str, url: str) -> None:
    assert ollama_base_url({"OLLAMA_HOST": ollama_host}) == url


# --- llama.cpp ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "version"),
    [
        ("runtimes/llama_server_version_b3369.txt", "3369 (278d0e18)"),
        (
            "runtimes/llama_server_version_homebrew_0_3_0.txt",
            "0.3.0 (build 10621, commit c1d0e7a00)",
        ),
    ],
)
def test_llama_server_version_output(fixture_text: ReadFixture, fixture: str, version: str) -> None:
    assert parse_llama_server_version(fixture_text(fixture)) == version


def test_llama_server_version_joined_onto_one_line() -> None:
    text = "version: 10125 (0db32c06e) built with cc (GCC) 14.2.0 for x86_64-linux-gnu"
    assert parse_llama_server_version(text) == "10125 (0db32c06e)"
    assert parse_llama_server_version("usage: llama-server [options]") is None


def test_llama_server_absent_from_path(tmp_path: Path) -> None:
    runtime = probe_llama_server({"PATH": str(tmp_path)})
    assert (runtime.found, runtime.version, runtime.location) == (False, None, None)


def put_executable_on_path(folder: Path) -> Path:
    executable = folder / "llama-server"
    executable.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    executable.chmod(0o755)
    return executable


def test_llama_server_on_path_reports_its_build(tmp_path: Path, fixture_text: ReadFixture) -> None:
    executable = put_executable_on_path(tmp_path)
    seen: list[Sequence[str]] = []

    def run(command: Sequence[str]) -> str:
        seen.append(command)
        return fixture_text("runtimes/llama_server_version_b3369.txt")

    runtime = probe_llama_server({"PATH": str(tmp_path)}, run=run)
    assert (runtime.found, runtime.version) == (True, "3369 (278d0e18)")
    assert runtime.location == str(executable)
    assert seen == [[str(executable), "--version"]]


def test_llama_server_that_fails_to_report_is_still_found(tmp_path: Path) -> None:
    put_executable_on_path(tmp_path)

    def run(command: Sequence[str]) -> str:
        raise CommandError("llama-server exited with 1")

    runtime = probe_llama_server({"PATH": str(tmp_path)}, run=run)
    assert (runtime.found, runtime.version) == (True, None)


def test_llama_cpp_python_version_is_the_installed_distribution() -> None:
    runtime = probe_llama_cpp_python()
    try:
        installed = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        assert not runtime.found
        return
    assert (runtime.found, runtime.version) == (True, installed)
    assert runtime.location is not None and runtime.location.endswith("llama_cpp")


def test_probe_runtimes_lists_all_three_in_order(closed_port: int, tmp_path: Path) -> None:
    env = {"OLLAMA_HOST": f"127.0.0.1:{closed_port}", "PATH": str(tmp_path)}
    names = [runtime.name for runtime in probe_runtimes(env)]
    assert names == ["ollama", "llama-server", "llama-cpp-python"]
    assert os.environ.get("OLLAMA_HOST") is None  # the conftest keeps the real one out
