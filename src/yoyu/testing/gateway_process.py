"""``yoyu serve`` as a real child process on a free 127.0.0.1 port, for tests and benchmarks.

Started with the same console entry point a user runs (``python -m yoyu
serve ...``), ready once ``/health`` answers, stopped with SIGTERM so the
engines it started are shut down the way a user's Ctrl-C would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from yoyu.testing.waiting import WaitTimeout, wait_until

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class GatewayProcess:
    """``with GatewayProcess(["--config", path]) as gateway: gateway.base_url``;
    ``command="dashboard"`` runs ``yoyu dashboard`` (the same server, nothing served)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        command: str = "serve",
    ) -> None:
        self.command = command
        self.port = port or free_port()
        self.args = ["--port", str(self.port), *args]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> GatewayProcess:
        command = [sys.executable, "-m", "yoyu", self.command, *self.args]
        if self.log_path is None:
            self.process = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL)
        else:
            with self.log_path.open("wb") as log:  # the child keeps its own copy
                self.process = subprocess.Popen(
                    command, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
        self._wait_ready()
        return self

    def engine_pids(self) -> list[int]:
        """Engine processes the gateway started (its children), alive now."""
        if self.process is None:
            return []
        try:
            children = psutil.Process(self.process.pid).children(recursive=False)
        except psutil.NoSuchProcess:
            return []
        return [child.pid for child in children if child.is_running()]

    def terminate(self) -> int | None:
        """SIGTERM and wait (SIGKILL after STOP_TIMEOUT_S); what it leaves running stays."""
        if self.process is None:
            return None
        self.process.terminate()
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def stop(self) -> int | None:
        """``terminate()``, then kill any engine the gateway failed to stop."""
        engines = self.engine_pids()
        code = self.terminate()
        for pid in engines:  # a gateway that failed to stop its engines is a bug; tidy anyway
            if psutil.pid_exists(pid):
                psutil.Process(pid).kill()
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def _wait_ready(self) -> None:
        assert self.process is not None
        try:
            wait_until(self._answers_health, READY_TIMEOUT_S, "yoyu serve to answer /health")
        except WaitTimeout:
            self.stop()
            raise

    def _answers_health(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"yoyu serve exited with {self.process.returncode}: {self.log_text()}"
            )
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
