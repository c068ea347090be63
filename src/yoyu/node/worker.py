"""``yoyu node``: one worker of a llama.cpp RPC cluster, under yoyu's guard.

A worker is three things in one process: llama.cpp's ``rpc-server`` (a child,
under ``engine_main``'s watch so it ends with yoyu), yoyu's guard over it
(the budget the user gave, the floors of the guard policy: the rpc-server is
stopped before the worker's own apps run out of memory), and a small HTTP
status endpoint the head reads before it plans (``GET /status``).

llama.cpp's RPC protocol has no authentication: whoever reaches the port can
allocate memory and run graphs on this machine. So the worker binds
127.0.0.1 unless told otherwise, refuses any other address without
``allow_unauthenticated_rpc``, and then requires an API key for the status
endpoint (the RPC port itself cannot have one: keep it on a private network).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

from yoyu import __version__
from yoyu.backends import llamacpp_build
from yoyu.backends.engine_process import EngineExitedError, EngineNotReadyError, EngineProcess
from yoyu.backends.llamacpp_flags import watched_program
from yoyu.errors import BackendStartError, ConfigError
from yoyu.guard.guard import Guard
from yoyu.guard.policy import GuardPolicy
from yoyu.guard.targets import ProcessTarget
from yoyu.node.status import STATUS_PATH, NodeStatus
from yoyu.paths import data_dir

DEFAULT_RPC_PORT = 50052  # rpc-server's own default
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
UNAUTHENTICATED_FLAG = "--i-know-rpc-is-unauthenticated"


@dataclass(frozen=True)
class NodeOptions:
    """How a worker runs; ``status_port`` None = the RPC port + 1."""

    host: str = "127.0.0.1"
    rpc_port: int = DEFAULT_RPC_PORT
    status_port: int | None = None
    budget_bytes: int | None = None  # None: the machine's total memory
    threads: int | None = None  # None: every core
    rpc_server: str | None = None  # None: on PATH, else the one `yoyu engine install` built
    api_key: str | None = None
    allow_unauthenticated_rpc: bool = False
    log_dir: Path | None = None

    @property
    def status_address(self) -> tuple[str, int]:
        return self.host, self.status_port or self.rpc_port + 1


def check_bind(options: NodeOptions) -> None:
    """Refuse an open RPC port nobody chose to open, and an open status port without a key."""
    if is_loopback(options.host):
        return
    if not options.allow_unauthenticated_rpc:
        raise ConfigError(
            f"rpc-server has no authentication: anyone who reaches {options.host}:"
            f"{options.rpc_port} can use this machine's memory and CPU; bind 127.0.0.1, or "
            f"pass {UNAUTHENTICATED_FLAG} on a private network you trust"
        )
    if not options.api_key:
        raise ConfigError(
            f"the status endpoint on {options.host} needs an API key; set YOYU_API_KEY "
            "(the head sends the same key)"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_rpc_server(configured: str | None = None) -> str:
    """A configured rpc-server, else one on PATH, else the one ``yoyu engine install`` built."""
    if configured:
        return configured
    program = llamacpp_build.found_program("rpc-server")
    if program is None:
        raise ConfigError("no rpc-server found; run `yoyu engine install` (it builds one)")
    return program


def rpc_server_devices(log_text: str) -> tuple[str, ...]:
    """The device lines rpc-server prints under ``Devices:`` ("CPU: AMD EPYC (24105 MiB, ...)")."""
    lines = log_text.splitlines()
    if "Devices:" not in (line.strip() for line in lines):
        return ()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Devices:") + 1
    devices = []
    for line in lines[start:]:
        if not line.startswith("  ") or ":" not in line or line.strip().startswith(("transport",)):
            break
        devices.append(line.strip())
    return tuple(devices)


class NodeWorker:
    """``with NodeWorker(options): ...`` runs rpc-server, the guard and the status endpoint."""

    def __init__(self, options: NodeOptions, policy: GuardPolicy | None = None) -> None:
        check_bind(options)
        self.options = options
        total = psutil.virtual_memory().total
        self.budget_bytes = options.budget_bytes or total
        policy = policy or GuardPolicy()
        # The budget is the rpc-server's own: the head or other programs on this machine
        # do not count against it (the machine's floors still hold).
        self.policy = dataclasses.replace(
            policy, budget_bytes=options.budget_bytes, budget_of_tree=True
        )
        self.engine: EngineProcess | None = None
        self.guard: Guard | None = None
        self._server: ThreadingHTTPServer | None = None
        self._serving: threading.Thread | None = None
        self._exit_reason: str | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> NodeWorker:
        server = self._server = _status_server(self)  # first: a taken port starts nothing
        try:
            self.engine = self._start_rpc_server()
        except BaseException:
            server.server_close()
            self._server = None
            raise
        # Loading a model over RPC is a steep ramp by design: up to the offer it is the
        # plan being carried out, not a runaway (the guard then judges by its floors).
        floors = self.policy.resolve(self.budget_bytes)
        planned = self.budget_bytes - floors.caution_bytes  # what the node offers
        target = ProcessTarget(self.engine.pid)
        self.guard = Guard(target, self.policy, planned_bytes=planned).start()
        self._serving = threading.Thread(target=server.serve_forever, name="yoyu-node", daemon=True)
        self._serving.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            if self._serving is not None:
                self._server.shutdown()  # returns once serve_forever has ended
            self._server.server_close()
        if self.guard is not None:
            self.guard.stop()
        if self.engine is not None and self.engine.is_alive():
            self.engine.stop(STOP_GRACE_S)

    def __enter__(self) -> NodeWorker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Block until the rpc-server exits (the guard stopped it, or it crashed)."""
        assert self.engine is not None, "start() first"
        return self.engine.wait_exited(timeout_s if timeout_s is not None else 10**9)

    @property
    def status_port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    # -- what the head reads -------------------------------------------------

    def status(self) -> NodeStatus:
        memory = psutil.virtual_memory()
        alive = self.engine is not None and self.engine.is_alive()
        thresholds = self.guard.thresholds if self.guard is not None else None
        return NodeStatus(
            name=socket.gethostname(),
            rpc_port=self.options.rpc_port,
            budget_bytes=self.budget_bytes,
            available_bytes=memory.available,
            total_bytes=memory.total,
            floor_bytes=thresholds.caution_bytes if thresholds is not None else 0,
            engine_pid=self.engine.pid if alive and self.engine is not None else None,
            engine_rss_bytes=_tree_rss(self.engine.pid) if alive and self.engine else 0,
            stopped_reason=None if alive else self._stopped_reason(),
            devices=rpc_server_devices(self.engine.log_text()) if self.engine else (),
            yoyu_version=__version__,
        )

    def _stopped_reason(self) -> str:
        if self.guard is not None and self.guard.first_stop is not None:
            return f"stopped by the guard: {self.guard.first_stop.message}"
        code = self.engine.poll() if self.engine is not None else None
        return f"rpc-server exited with status {code}"

    # -- the engine ----------------------------------------------------------

    def _start_rpc_server(self) -> EngineProcess:
        options = self.options
        argv = [find_rpc_server(options.rpc_server), "-H", options.host]
        argv += ["-p", str(options.rpc_port), "-t", str(options.threads or os.cpu_count() or 1)]
        log_dir = options.log_dir or data_dir() / "engine-logs"
        log_path = log_dir / f"rpc-server-{options.rpc_port}.log"
        engine = EngineProcess(watched_program(argv), log_path=log_path, env=os.environ)
        try:
            engine.wait_until_ready(
                lambda: _accepts(options.host, options.rpc_port), READY_TIMEOUT_S
            )
        except (EngineExitedError, EngineNotReadyError):
            engine.stop(STOP_GRACE_S)
            raise BackendStartError(
                f"rpc-server did not start on {options.host}:{options.rpc_port}: "
                f"{engine.log_tail() or 'no output'} (log: {log_path})"
            ) from None
        return engine


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        processes: Sequence[psutil.Process] = [root, *root.children(recursive=True)]
        return sum(process.memory_info().rss for process in processes)
    except psutil.Error:
        return 0


def _status_server(worker: NodeWorker) -> ThreadingHTTPServer:
    key = worker.options.api_key

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if key and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, {"error": "a valid API key is required (Bearer)"})
            elif self.path == STATUS_PATH:
                self._send(200, worker.status().to_dict())
            else:
                self._send(404, {"error": f"not found; GET {STATUS_PATH}"})

        def _send(self, code: int, body: object) -> None:
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the head polls; a line per poll would drown the worker's own log

    host, port = worker.options.status_address
    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {host}:{port} for the node's status ({error.strerror}); "
            "pass --status-port, or --port for another pair"
        ) from None
