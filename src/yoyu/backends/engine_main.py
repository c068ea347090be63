"""Run an engine, and end it when the yoyu that started it dies.

yoyu starts each engine in its own session, so a Ctrl-C meant for yoyu does
not reach it and a stop reaches everything it spawned. The price: a yoyu
killed with SIGKILL (or by the OOM killer) would leave its engines running,
holding the very memory yoyu exists to give back. This entry point watches
its parent; once the parent is gone (the process is re-parented), the engine
gets SIGTERM and shuts down as on a normal stop, and SIGKILL a few seconds
later if it is too busy to (``end_self``).

    python -m yoyu.backends.engine_main PARENT_PID MODULE [ARGS...]
    python -m yoyu.backends.engine_main PARENT_PID --exec PROGRAM [ARGS...]

A Python module (llama-cpp-python's server) runs in this process. A program
(a ``llama-server`` binary) runs as its child in the same process group, so
the group signals of a normal stop reach it directly; this process ignores
them and only waits, then leaves with the child's status (its signal too),
so a caller sees the engine's own exit. Linux's ``PR_SET_PDEATHSIG`` would
need no extra process, but it fires when the *thread* that started the
engine ends, and yoyu starts engines from worker threads.
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

PARENT_POLL_S = 0.5
ORPHAN_GRACE_S = 5.0  # an orphaned engine has this long to stop by itself after SIGTERM
_EXEC = "--exec"
_NOT_STARTED = 127  # the shell's status for a program that could not be run
_USAGE = (
    "usage: python -m yoyu.backends.engine_main PARENT_PID MODULE [ARGS...]\n"
    "       python -m yoyu.backends.engine_main PARENT_PID --exec PROGRAM [ARGS...]"
)


def watch_parent(
    parent_pid: int, on_orphaned: Callable[[], None] | None = None, poll_s: float = PARENT_POLL_S
) -> None:
    """Block until the parent is gone, then call ``on_orphaned`` (default: end this process)."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    (on_orphaned or end_self)()


def end_self(grace_s: float = ORPHAN_GRACE_S) -> None:
    """SIGTERM this process, and SIGKILL it if it is still here after ``grace_s``.

    A server busy with a request nobody will read (a huge prompt) takes
    SIGTERM as "finish what you are doing, then stop" and may never stop; the
    watch runs in its own thread, which still gets its turn (the interpreter
    switches threads every few milliseconds, and llama.cpp's C calls release
    the GIL), so the second signal always comes.
    """
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os.kill(os.getpid(), signal.SIGKILL)


def run_module(parent_pid: int, module: str, args: list[str]) -> None:
    """The module's ``__main__`` in this process, ended by SIGTERM if the parent dies."""
    threading.Thread(target=watch_parent, args=(parent_pid,), daemon=True).start()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def supervise(parent_pid: int, argv: list[str]) -> int:
    """Run ``argv`` as a child, SIGTERM it if the parent dies; its status, for exit."""
    for group_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(group_signal, signal.SIG_IGN)  # the child gets the group's own
    try:
        child = subprocess.Popen(argv, preexec_fn=_restore_default_signals)
    except OSError as error:  # one line in the engine's log, as a shell would say it
        print(f"engine_main: cannot start {argv[0]}: {error.strerror}", file=sys.stderr)
        return _NOT_STARTED
    threading.Thread(target=watch_parent, args=(parent_pid, child.terminate), daemon=True).start()
    return child.wait()


def _restore_default_signals() -> None:
    """In the child, before exec: the program handles SIGTERM/SIGINT its own way."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def exit_like(returncode: int) -> None:
    """Leave with ``returncode``: a negative one (killed by a signal) by that signal."""
    if returncode >= 0:
        raise SystemExit(returncode)
    signum = -returncode
    if signum not in (signal.SIGKILL, signal.SIGSTOP):  # these two cannot be handled
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # a signal whose default is not to end the process


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit() or argv[1:] == [_EXEC]:
        raise SystemExit(_USAGE)
    parent_pid = int(argv[0])
    if argv[1] == _EXEC:
        exit_like(supervise(parent_pid, argv[2:]))
    else:
        run_module(parent_pid, argv[1], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
