"""``yoyu dashboard`` and ``--open``: where the browser is sent, when, and what a monitor
serves; a bad bind is refused in one line like ``yoyu serve``'s."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from yoyu.cli import serve as serve_cli
from yoyu.cli.dashboard import monitor_config
from yoyu.cli.serve import dashboard_url, open_when_ready
from yoyu.gateway.config import BackendConfig, GatewayConfig, ServedModel
from yoyu.testing.waiting import wait_until


def test_the_dashboards_address_for_a_browser_on_this_machine() -> None:
    assert dashboard_url("127.0.0.1", 8040) == "http://127.0.0.1:8040/"
    assert dashboard_url("0.0.0.0", 9000) == "http://127.0.0.1:9000/"
    assert dashboard_url("::1", 8040) == "http://[::1]:8040/"


@pytest.fixture
def late_server() -> Iterator[tuple[str, threading.Event]]:
    """A server whose /health answers 503 until ``ready`` is set."""
    ready = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/health" and ready.is_set() else 503
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", ready
    server.shutdown()
    server.server_close()


def test_open_waits_for_the_server_then_opens_the_dashboard(
    late_server: tuple[str, threading.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ready = late_server
    opened: list[str] = []

    def record(address: str) -> bool:
        opened.append(address)
        return True

    monkeypatch.setattr(serve_cli.webbrowser, "open", record)
    open_when_ready(url)
    wait_until(lambda: serve_cli_polled(url), 5, "the first /health poll")
    assert opened == []  # not before the server answers
    ready.set()
    wait_until(lambda: opened, 10, "the browser to be opened")
    assert opened == [url]


def serve_cli_polled(url: str) -> bool:
    import httpx

    return httpx.get(url + "health", timeout=1).status_code == 503


def test_a_monitor_serves_nothing_and_runs_no_guard_of_its_own() -> None:
    served = ServedModel("m", "local", upstream="m")
    config = GatewayConfig(
        backends={"local": BackendConfig("local", "openai", {"base_url": "http://x/v1"})},
        served={"m": served}, aliases={"a": "m"},
    )  # fmt: skip
    monitor = monitor_config(config)
    assert (monitor.served, monitor.backends, monitor.aliases, monitor.routes) == ({}, {}, {}, {})
    assert monitor.server.guard is False and monitor.guard == config.guard


def test_a_dashboard_beyond_loopback_without_a_key_is_refused(
    yoyu_cli: Callable[..., tuple[int, str, str]],
) -> None:
    code, out, err = yoyu_cli("dashboard", "--host", "0.0.0.0")
    assert code == 2
    assert "without an API key" in out + err and "Traceback" not in out + err
