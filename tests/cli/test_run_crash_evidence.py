"""A `yoyu run` SIGKILLed mid-answer keeps its evidence: the samples and phase marks up to
the kill are in the store (committed once a second while the run goes on), the run reads as
interrupted, and the engine it started does not outlive it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from yoyu.monitor.phases import GENERATION_START, LOAD_END, LOAD_START
from yoyu.monitor.recorder import DEFAULT_FLUSH_INTERVAL_S
from yoyu.monitor.store import RunStore, default_store_path, run_state
from yoyu.testing.waiting import wait_until

pytestmark = pytest.mark.slow


def test_a_run_killed_mid_answer_keeps_its_samples_up_to_the_kill(
    real_gemma: Path, isolated_home: Path
) -> None:
    store_path = default_store_path()
    command = [sys.executable, "-m", "yoyu", "run", str(real_gemma), "Tell a long story",
               "--ctx", "2048", "--max-tokens", "1500", "--temperature", "0", "--json"]  # fmt: skip
    child = subprocess.Popen(
        command, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: _answering_for(store_path) >= 1.5, 180, "the answer to be written")
        engines = psutil.Process(child.pid).children(recursive=True)
        killed_at = time.time()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    with RunStore(store_path) as store:
        (record,) = store.list_runs()
        samples, events = store.samples(record.id), store.events(record.id)
    assert run_state(record) == "interrupted" and record.result is None
    kinds = [event.kind for event in events]
    assert [k for k in kinds if "." not in k][:3] == [LOAD_START, LOAD_END, GENERATION_START]
    generation_start = next(event.t_s for event in events if event.kind == GENERATION_START)
    during = [sample for sample in samples if sample.t_s > generation_start]
    assert len(during) >= 10  # 10 Hz over at least 1.5 s of the answer
    # bounded loss: what was committed reaches to within a flush interval (and a sample) of it
    lost_s = killed_at - samples[-1].system.wall_time
    assert 0 <= lost_s <= DEFAULT_FLUSH_INTERVAL_S + 0.5
    # the engine ends with the yoyu that started it (engine_main watches its parent)
    wait_until(lambda: not any(engine.is_running() for engine in engines), 30, "the engine to end")


def test_runs_show_says_which_run_was_interrupted(real_gemma: Path, isolated_home: Path) -> None:
    """`yoyu runs` marks it, and `runs show` says when its last sample was taken."""
    store_path = default_store_path()
    with RunStore(store_path) as store:
        gone = store.create_run("gone", "run", {"n_ctx": 256})
    _forget_owner(store_path, gone)
    listing = _yoyu("runs", "--json")
    assert [(run["id"], run["state"]) for run in json.loads(listing)] == [(gone, "interrupted")]
    assert "interrupted" in _yoyu("runs")
    assert "interrupted" in _yoyu("runs", "show", str(gone))


def _answering_for(store_path: Path) -> float:
    """Seconds of the answer already committed to the store (0 before it starts)."""
    if not store_path.exists():
        return 0.0
    with RunStore(store_path) as store:
        runs = store.list_runs()
        if not runs:
            return 0.0
        events, samples = store.events(runs[0].id), store.samples(runs[0].id)
    start = next((event.t_s for event in events if event.kind == GENERATION_START), None)
    if start is None or not samples:
        return 0.0
    return samples[-1].t_s - start


def _forget_owner(store_path: Path, run_id: int) -> None:
    """A run whose writer is gone: a pid no process has (pid_max is below 2**22)."""
    with sqlite3.connect(store_path) as connection:
        connection.execute("UPDATE runs SET owner_pid = ? WHERE id = ?", (2**22 + 1, run_id))


def _yoyu(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "yoyu", *args], capture_output=True, text=True, timeout=60,
        env=os.environ.copy(), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout
