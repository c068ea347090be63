"""engine_main's --exec mode, the watch over a ``llama-server`` binary: it ends the
program when the yoyu that started it dies, lets a normal stop reach the program
once, and leaves with the program's own status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from yoyu.backends.engine_process import EngineProcess
from yoyu.backends.llamacpp_server import LlamaCppEngine, LlamaCppServerBackend
from yoyu.backends.protocol import ModelRef
from yoyu.errors import BackendStartError

WATCH = [sys.executable, "-m", "yoyu.backends.engine_main", str(os.getpid()), "--exec"]

# A parent that starts a watched program in its own session (as yoyu does), says
# the watcher's pid, and waits to be killed.
PARENT_SOURCE = """
import os, subprocess, sys
watch = [sys.executable, "-m", "yoyu.backends.engine_main", str(os.getpid()), "--exec"]
child = subprocess.Popen([*watch, "sleep", "60"], start_new_session=True)
print(child.pid, flush=True)
sys.stdin.read()
"""


def run_watched(program: list[str]) -> int:
    return subprocess.run([*WATCH, *program], timeout=60).returncode


@pytest.mark.slow
def test_the_program_ends_when_the_yoyu_that_started_it_is_killed() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PARENT_SOURCE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as parent:
        assert parent.stdout is not None
        watcher = psutil.Process(int(parent.stdout.readline()))
        program = _wait_for_child(watcher)
        assert program.name() == "sleep"
        parent.kill()  # SIGKILL: nothing of the parent runs again
    _gone, alive = psutil.wait_procs([watcher, program], timeout=30)
    assert alive == [], "the program outlived the process that started it"


def test_the_watcher_leaves_with_the_programs_code_or_signal() -> None:
    assert run_watched(["sh", "-c", "exit 3"]) == 3
    assert run_watched(["sh", "-c", "kill -KILL $$"]) == -signal.SIGKILL
    assert run_watched(["true"]) == 0


def test_a_program_that_cannot_start_is_one_line_and_127(tmp_path: Path) -> None:
    missing = str(tmp_path / "llama-server")
    done = subprocess.run([*WATCH, missing], capture_output=True, text=True, timeout=60)
    assert done.returncode == 127
    assert done.stderr.strip() == f"engine_main: cannot start {missing}: No such file or directory"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_stop_reaches_the_program_once_and_its_clean_exit_is_reported(tmp_path: Path) -> None:
    """llama-server skips its clean shutdown on a second SIGTERM, so the watcher must
    not forward the group's signal: it ignores it (two signals close together may
    merge into one, so the disposition is what is checked, not a count)."""
    received = tmp_path / "received"
    program = (
        "import signal, sys\n"
        f"def note(*_):\n    open({str(received)!r}, 'a').write('TERM\\n')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, note)\n"
        "print('ready', flush=True)\n"
        "signal.pause()\n"
    )
    engine = EngineProcess(
        [*WATCH, sys.executable, "-c", program], log_path=tmp_path / "log", env=dict(os.environ)
    )
    engine.wait_until_ready(lambda: "ready" in engine.log_text(), timeout_s=20)
    ignored = _ignored_signals(engine.pid)
    assert signal.SIGTERM in ignored and signal.SIGINT in ignored
    assert engine.stop(grace_s=10) == 0  # the program's own clean exit, not the watcher's
    assert received.read_text().splitlines() == ["TERM"]


def test_a_missing_llama_server_binary_is_a_start_error_that_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "bin" / "llama-server"
    backend = LlamaCppServerBackend(
        engine=LlamaCppEngine("llama-server", str(missing)), log_dir=tmp_path / "logs"
    )
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF")  # never read: the engine never starts
    with pytest.raises(BackendStartError) as raised:
        backend.load(ModelRef("m", model_file), {})
    message = str(raised.value)
    assert "exited (code 127) before it was ready" in message
    assert f"cannot start {missing}: No such file or directory" in message
    assert backend.pids() == []


def test_a_llama_server_binary_is_started_under_the_watch(tmp_path: Path) -> None:
    argv = LlamaCppEngine("llama-server", "/opt/llama/llama-server").argv(
        ModelRef("m"), tmp_path / "m.gguf", 8080, {"n_ctx": 512}
    )
    exec_at = argv.index("--exec")
    assert argv[:exec_at] == [sys.executable, "-m", "yoyu.backends.engine_main", str(os.getpid())]
    assert argv[exec_at + 1 : exec_at + 3] == ["/opt/llama/llama-server", "-m"]
    assert argv[argv.index("--port") + 1] == "8080"


def _ignored_signals(pid: int) -> set[int]:
    """The signals a process ignores, from the SigIgn mask in /proc/PID/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16
    )
    return {number for number in range(1, 65) if mask & (1 << (number - 1))}


def _wait_for_child(process: psutil.Process) -> psutil.Process:
    """The watcher's one child, once it has started the program."""
    for _ in range(2000):
        children = process.children()
        if children and children[0].name() != process.name():
            return children[0]
        psutil.wait_procs([process], timeout=0.01)
    raise AssertionError("the watcher started no program")


# A parent that runs a module under engine_main (as llama-cpp-python's server runs): the
# module takes SIGTERM as "finish first" and spins, like a server stuck on a huge prompt.
STUCK_MODULE = """
import signal, time
signal.signal(signal.SIGTERM, lambda *_: None)
print("busy", flush=True)
while True:
    sum(range(10_000))
"""
STUCK_PARENT = """
import os, subprocess, sys
watch = [sys.executable, "-m", "yoyu.backends.engine_main", str(os.getpid()), "stuck_engine"]
env = {**os.environ, "PYTHONPATH": sys.argv[1]}
child = subprocess.Popen(watch, start_new_session=True, env=env, stdout=subprocess.PIPE)
child.stdout.readline()
print(child.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_an_engine_too_busy_to_stop_still_ends_with_its_yoyu(tmp_path: Path) -> None:
    (tmp_path / "stuck_engine.py").write_text(STUCK_MODULE, encoding="utf-8")
    pythonpath = os.pathsep.join([str(tmp_path), *sys.path])
    with subprocess.Popen(
        [sys.executable, "-c", STUCK_PARENT, pythonpath],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as parent:
        assert parent.stdout is not None
        engine = psutil.Process(int(parent.stdout.readline()))
        assert engine.cpu_percent(interval=0.3) > 20  # busy, ignoring SIGTERM
        parent.kill()
    _gone, alive = psutil.wait_procs([engine], timeout=30)
    for leftover in alive:  # the failure is reported below; the core is given back now
        leftover.kill()
    assert alive == [], "a busy engine outlived the yoyu that started it"
