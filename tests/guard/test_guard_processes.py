"""The guard against real processes taking real memory, under a budget.

The machine has far more memory than these tests take, so the guard is told
to act as if only ``BUDGET`` were available when it started: caution then sits
at half of it and abort at a quarter (the default floors, shrunk). A hog that
takes memory at a set rate must be stopped before its own peak RSS (``VmHWM``,
which the hog prints as SIGTERM arrives: ``wait4``'s ``ru_maxrss`` also holds
the test process's RSS at the fork) reaches the abort floor, i.e. ``BUDGET - abort``.
Memory taken by other processes on the machine meanwhile counts against the
budget too, which can only make the guard act earlier.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from conftest import MIB, Hog
from yoyu.guard import AuditLog, Guard, GuardPolicy, ProcessTarget, read_audit
from yoyu.guard.policy import DEFAULT_PROTECTED
from yoyu.monitor.store import RunStore
from yoyu.testing.waiting import wait_until

BUDGET = 1024 * MIB
ABORT_CROSSING = BUDGET - BUDGET // 4  # memory taken since start at which available hits abort
STOP_TIMEOUT_S = 15.0


def budget_policy(**changes: object) -> GuardPolicy:
    return GuardPolicy(budget_bytes=BUDGET, grace_s=1.0, **changes)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("rate_mib_s", [200, 1024, 4096])
def test_hog_is_stopped_before_it_crosses_the_abort_floor(
    rate_mib_s: int, start_hog: Callable[..., Hog], tmp_path: Path
) -> None:
    target = ProcessTarget()
    with Guard(target, budget_policy(), audit=AuditLog(tmp_path / "guard.jsonl")) as guard:
        hog = start_hog(rate_mib_s, "--limit", "2048")
        target.set_pids(hog.pid)
        status = hog.finish(STOP_TIMEOUT_S)
    assert status is not None, f"the guard never stopped a hog growing at {rate_mib_s} MiB/s"
    assert guard.stopped_target
    assert hog.peak_rss_bytes is not None
    assert hog.peak_rss_bytes < ABORT_CROSSING, (
        f"peak RSS {hog.peak_rss_bytes / MIB:.0f} MiB crossed the abort floor at "
        f"{ABORT_CROSSING / MIB:.0f} MiB (achieved {hog.achieved_rate_mib_s()} MiB/s)"
    )
    assert status == -signal.SIGTERM


@pytest.mark.slow
def test_steady_process_below_caution_is_never_touched(
    start_hog: Callable[..., Hog], tmp_path: Path
) -> None:
    target = ProcessTarget()
    with Guard(target, budget_policy(), audit=AuditLog(tmp_path / "guard.jsonl")) as guard:
        hog = start_hog(100, "--limit", "96")  # 96 MiB at 100 MiB/s, then holds
        target.set_pids(hog.pid)
        hog.read_until_taken(96 * MIB)
        held_until = time.monotonic() + 1.5  # watched while it holds
        while time.monotonic() < held_until:
            assert hog.process.poll() is None, "the steady process was stopped"
            time.sleep(0.05)
    assert not guard.stopped_target
    assert [r.kind for r in guard.actions if r.kind != "warn"] == []
    assert hog.process.poll() is None


def test_protected_process_in_the_tree_is_never_signalled(
    start_hog: Callable[..., Hog], tmp_path: Path
) -> None:
    keeper = tmp_path / "keepme"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", keeper)
    policy = budget_policy(protected=DEFAULT_PROTECTED | {"keepme"})
    target = ProcessTarget()
    with Guard(target, policy, audit=AuditLog(tmp_path / "guard.jsonl")) as guard:
        hog = start_hog(1024, "--limit", "1024", "--spawn", str(keeper), "60")
        keeper_pid = int(hog.read_line().split()[1])
        target.set_pids(hog.pid)
        assert hog.finish(STOP_TIMEOUT_S) is not None
    try:
        keeper_process = psutil.Process(keeper_pid)
        assert keeper_process.status() != psutil.STATUS_ZOMBIE
        terminate = next(r for r in guard.actions if r.kind == "terminate")
        assert {"pid": keeper_pid, "name": "keepme"} in terminate.detail["spared"]
        assert keeper_pid not in terminate.pids
        assert hog.pid in terminate.pids
    finally:
        os.kill(keeper_pid, signal.SIGKILL)


@pytest.mark.slow
def test_child_ignoring_sigterm_is_killed_after_the_grace_period(
    start_hog: Callable[..., Hog], tmp_path: Path
) -> None:
    grace_s = 0.5
    target = ProcessTarget()
    policy = GuardPolicy(budget_bytes=BUDGET, grace_s=grace_s)
    with Guard(target, policy, audit=AuditLog(tmp_path / "guard.jsonl")) as guard:
        # Grows at 400 MiB/s past the predicted crossing, then holds above the kill floor.
        hog = start_hog(400, "--limit", "640", "--ignore-term")
        target.set_pids(hog.pid)
        status = hog.finish(STOP_TIMEOUT_S)
    assert status == -signal.SIGKILL, [(r.kind, r.message) for r in guard.actions]
    steps = {record.kind: record for record in guard.actions}
    assert "terminate" in steps and "kill" in steps
    waited = steps["kill"].t_s - steps["terminate"].t_s
    assert grace_s <= waited < grace_s + 0.5
    assert "grace period" in steps["kill"].message


def test_log_holds_the_trigger_samples_in_the_file_and_the_run_store(
    start_hog: Callable[..., Hog], tmp_path: Path
) -> None:
    audit_path = tmp_path / "guard.jsonl"
    with RunStore(tmp_path / "runs.sqlite") as store:
        run_id = store.create_run("memory_hog", "guard", {"budget": BUDGET})
        target = ProcessTarget()
        audit = AuditLog(audit_path, store, run_id)
        with Guard(target, budget_policy(), audit=audit):
            hog = start_hog(1024, "--limit", "1024")
            target.set_pids(hog.pid)
            assert hog.finish(STOP_TIMEOUT_S) is not None
        events = store.events(run_id)
        stored_samples = store.samples(run_id)
    terminate = next(r for r in read_audit(audit_path) if r.kind == "terminate")
    assert len(terminate.samples) >= 3  # the trend that predicted the crossing
    taken = [s["process"]["anon_bytes"] for s in terminate.samples]
    assert taken[-1] > taken[0]  # the hog's growth, as the samples recorded it
    assert terminate.detail["available_bytes"] < BUDGET  # what the guard saw, budget applied
    assert terminate.detail["floor"] == "abort"
    assert hog.pid in terminate.samples[-1]["process"]["pids"]
    assert "guard.terminate" in [event.kind for event in events]
    assert len(stored_samples) >= len(terminate.samples)


class _UnloadingTarget:
    """A target whose graceful step stops the process itself (as the llama.cpp backend does)."""

    def __init__(self, hog: Hog) -> None:
        self.hog = hog
        self.unloads = 0

    def pids(self) -> list[int]:
        return [self.hog.pid] if self.hog.returncode is None else []

    def unload(self) -> None:
        """Blocks until the process has exited, as a backend's unload does."""
        self.unloads += 1
        os.kill(self.hog.pid, signal.SIGINT)
        wait_until(
            lambda: psutil.Process(self.hog.pid).status() == "zombie",
            10, "the hog to exit", poll_s=0.005,
        )  # fmt: skip


def test_abort_unloads_first_when_the_target_can(
    start_hog: Callable[..., Hog], tmp_path: Path
) -> None:
    hog = start_hog(1024, "--limit", "1024", "--wait-stdin")
    assert hog.read_line() == "waiting"
    target = _UnloadingTarget(hog)
    with Guard(target, budget_policy(), audit=AuditLog(tmp_path / "guard.jsonl")) as guard:
        assert hog.process.stdin is not None
        hog.process.stdin.write(b"go\n")
        hog.process.stdin.flush()
        status = hog.finish(STOP_TIMEOUT_S)
    assert status == -signal.SIGINT  # the unload stopped it, not a SIGTERM from the guard
    assert target.unloads == 1
    assert [r.kind for r in guard.actions if r.kind != "warn"] == ["unload"]
