"""Run llama-cpp-python's server, and end it when the yoyu that started it dies.

yoyu starts each engine in its own session, so a Ctrl-C meant for yoyu does
not reach it and a stop reaches everything it spawned. The price: a yoyu
killed with SIGKILL (or by the OOM killer) would leave its engines running,
holding the very memory yoyu exists to give back. This entry point runs the
server module in-process and watches its parent; once the parent is gone
(the process is re-parented), it sends itself SIGTERM and the server shuts
down as on a normal stop.

    python -m yoyu.backends.engine_main PARENT_PID MODULE [ARGS...]

A ``llama-server`` binary is started directly and has no such watch.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

_POLL_S = 0.5


def watch_parent(parent_pid: int, poll_s: float = _POLL_S) -> None:
    """Block until the parent is gone, then SIGTERM this process."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        raise SystemExit("usage: python -m yoyu.backends.engine_main PARENT_PID MODULE [ARGS...]")
    parent_pid, module = int(argv[0]), argv[1]
    threading.Thread(target=watch_parent, args=(parent_pid,), daemon=True).start()
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
