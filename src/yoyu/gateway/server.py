"""Run a gateway: the composition root from a checked config to a listening uvicorn.

Kept apart from the app factory so tests can start the same server in a
thread (``start_in_thread``) that ``yoyu serve`` runs in the foreground.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import uvicorn

from yoyu.gateway.app import Extension, create_app
from yoyu.gateway.config import GatewayConfig, api_key
from yoyu.gateway.malloc_arenas import limit_malloc_arenas
from yoyu.gateway.service import GatewayService


@dataclass
class RunningServer:
    """A gateway started in a thread; ``stop()`` shuts it and its engines down."""

    server: uvicorn.Server
    thread: threading.Thread
    service: GatewayService

    @property
    def base_url(self) -> str:
        config = self.server.config
        return f"http://{config.host}:{config.port}/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.service.close()


# Makes the routes another package adds (MCP), given the service and the API key.
Extend = Callable[[GatewayService, str | None], Extension]
log = logging.getLogger(__name__)


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the app the moment a shutdown begins (Ctrl-C, SIGTERM):
    streams in flight then end with an error event, not a cut connection."""

    def __init__(self, config: uvicorn.Config, draining: threading.Event) -> None:
        super().__init__(config)
        self.draining = draining

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.draining.is_set():
            log.info("shutting down: streams in flight end, engines stop")
        self.draining.set()
        super().handle_exit(sig, frame)


def build_server(
    config: GatewayConfig, extend: Extend | None = None
) -> tuple[uvicorn.Server, GatewayService]:
    """Check the bind rule, then make the service and its server (nothing listens yet)."""
    key = api_key(config.server)
    service = GatewayService.from_config(config)
    extensions = [extend(service, key)] if extend else []
    draining = threading.Event()
    app = create_app(service, api_key=key, extensions=extensions, draining=draining)
    uv_config = uvicorn.Config(
        app,
        host=config.server.host,
        port=config.server.port,
        access_log=False,
        log_level=logging.getLevelName(logging.getLogger("yoyu").getEffectiveLevel()).lower(),
        timeout_graceful_shutdown=5,
    )
    return _DrainingServer(uv_config, draining), service


def serve(config: GatewayConfig, extend: Extend | None = None) -> None:
    """Serve in the foreground until interrupted; the engines yoyu started stop with it.

    The process is the gateway's own, so its allocator is set for a long life
    (``malloc_arenas``) before any worker thread exists."""
    limit_malloc_arenas()
    server, service = build_server(config, extend)
    try:
        server.run()
    finally:
        service.close()


def start_in_thread(
    config: GatewayConfig, timeout_s: float = 15.0, extend: Extend | None = None
) -> RunningServer:
    """Start serving in a daemon thread and return once it accepts connections."""
    server, service = build_server(config, extend)
    thread = threading.Thread(target=server.run, name="yoyu-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            service.close()
            raise RuntimeError("the gateway did not start; see its log")
        time.sleep(0.01)
    return RunningServer(server, thread, service)
