"""The SQLite run store: round trip, versioned schema, a writer thread beside a reader."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from yoyu.errors import RunStoreError
from yoyu.monitor.store import MIGRATIONS, SCHEMA_VERSION, RunStore
from yoyu.monitor.types import (
    EngineSample,
    Event,
    GpuSample,
    ProcessSample,
    Sample,
    SystemSample,
)
from yoyu.paths import data_dir

MIB = 1024**2


def make_sample(t_s: float, with_gpu: bool = True) -> Sample:
    system = SystemSample(
        t_s=t_s,
        wall_time=1_750_000_000.25 + t_s,
        total_bytes=32768 * MIB,
        available_bytes=20000 * MIB - int(t_s * MIB),
        used_bytes=12768 * MIB + int(t_s * MIB),
        swap_total_bytes=2048 * MIB,
        swap_used_bytes=3 * MIB,
        page_in_per_s=1.5,
        page_out_per_s=None,
        major_faults_per_s=12.0,
        psi_some_avg10=0.25,
        psi_full_avg10=None,
        macos_pressure="warn" if t_s > 1 else None,
    )
    process = ProcessSample(
        pids=(4242, 4243),
        rss_bytes=900 * MIB,
        anon_bytes=300 * MIB,
        file_bytes=600 * MIB,
        shmem_bytes=0,
        swap_bytes=None,
        uss_bytes=310 * MIB if t_s == 0 else None,
        pss_bytes=None,
    )
    gpus = (GpuSample(0, 5000 * MIB, 19000 * MIB, 4800 * MIB), GpuSample(1, 10, 20, None))
    engine = EngineSample(0.125 + t_s / 100, 3, 1) if t_s > 1 else None  # vLLM's gauge
    return Sample(system, process, gpus if with_gpu else (), engine)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    samples = [make_sample(0.0), make_sample(0.5, with_gpu=False), make_sample(2.0)]
    events = [Event(0.0, "load_start"), Event(0.5, "guard_warn", "available 3.90 GiB < 4.00 GiB")]
    with RunStore(tmp_path / "runs.sqlite") as store:
        run_id = store.create_run(
            "qwen2.5-0.5b", "one-shot", {"ctx": 4096, "kv": "q8_0"}, {"total_bytes": 123}
        )
        store.add_samples(run_id, samples)
        for event in events:
            store.add_event(run_id, event)
        store.finish_run(run_id, {"text": "hi", "decode_tps": 41.5})
    with RunStore(tmp_path / "runs.sqlite") as reopened:
        run = reopened.get_run(run_id)
        assert reopened.samples(run_id) == samples
        assert reopened.events(run_id) == events
    assert (run.model, run.mode, run.settings) == (
        "qwen2.5-0.5b",
        "one-shot",
        {"ctx": 4096, "kv": "q8_0"},
    )
    assert run.prediction == {"total_bytes": 123}
    assert run.result == {"text": "hi", "decode_tps": 41.5}
    assert run.finished is not None and run.finished >= run.started


def test_runs_are_listed_newest_first_and_unknown_ids_are_user_errors(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store:
        first = store.create_run("a", "chat", {})
        second = store.create_run("b", "soak", {})
        assert [run.id for run in store.list_runs()] == [second, first]
        assert store.list_runs()[0].result is None
        with pytest.raises(RunStoreError, match="no run 999"):
            store.get_run(999)
        with pytest.raises(RunStoreError, match="no run 999"):
            store.finish_run(999, {})


def test_default_location_is_the_data_dir() -> None:
    with RunStore() as store:
        store.create_run("m", "one-shot", {})
    assert (data_dir() / "runs.sqlite").is_file()


def test_schema_is_versioned_and_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    RunStore(path).close()  # reopening runs no migration twice
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.commit()
    connection.close()
    with pytest.raises(RunStoreError, match="newer than this yoyu"):
        RunStore(path)


def test_a_store_of_the_first_schema_is_upgraded_and_keeps_its_samples(tmp_path: Path) -> None:
    """A store written before the engine gauge existed: its runs and samples read back,
    with no engine reading, and new samples keep theirs."""
    path = tmp_path / "runs.sqlite"
    connection = sqlite3.connect(path)
    MIGRATIONS[0](connection)
    connection.execute("PRAGMA user_version = 1")
    connection.execute(
        "INSERT INTO runs (started, model, mode, settings) VALUES (1.0, 'old', 'chat', '{}')"
    )
    connection.execute(
        "INSERT INTO samples (run_id, t_s, wall_time, total_bytes, available_bytes, used_bytes,"
        " swap_total_bytes, swap_used_bytes, pids, rss_bytes, gpus)"
        " VALUES (1, 0.5, 2.0, 100, 60, 40, 0, 0, '[7]', 30, '[]')"
    )
    connection.commit()
    connection.close()
    with RunStore(path) as store:
        (old,) = store.samples(1)
        assert old.process.rss_bytes == 30 and old.engine is None
        run_id = store.create_run("new", "one-shot", {})
        store.add_samples(run_id, [make_sample(2.0)])
        assert store.samples(run_id)[0].engine == EngineSample(0.145, 3, 1)


def test_a_file_that_is_not_sqlite_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunStoreError, match="cannot open run store"):
        RunStore(path)


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["two-connections", "one-store"])
def test_writer_thread_and_reader_never_see_half_a_batch(tmp_path: Path, shared: bool) -> None:
    path, batch, batches = tmp_path / "runs.sqlite", 20, 40
    writer_store = RunStore(path)
    reader_store = writer_store if shared else RunStore(path)
    run_id = writer_store.create_run("m", "soak", {})
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for index in range(batches):
                writer_store.add_samples(
                    run_id, [make_sample(index + i / batch) for i in range(batch)]
                )
        except BaseException as error:
            failures.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[int] = []
    while writer.is_alive():
        seen.append(len(reader_store.samples(run_id)))
    writer.join()
    seen.append(len(reader_store.samples(run_id)))
    assert failures == []
    assert seen == sorted(seen) and seen[-1] == batch * batches
    assert all(count % batch == 0 for count in seen)
    reader_store.close()
    if not shared:
        writer_store.close()
