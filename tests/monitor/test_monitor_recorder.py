"""The recorder commits what the sampler gathered, once each, as the run goes on."""

from __future__ import annotations

import os
from pathlib import Path

from yoyu.monitor.recorder import RunRecorder
from yoyu.monitor.sampler import Sampler
from yoyu.monitor.store import RunStore, run_state


def test_each_flush_writes_only_what_is_new_and_stop_writes_the_rest(tmp_path: Path) -> None:
    sampler = Sampler(lambda: [os.getpid()], gpus=False, smaps_interval_s=None)
    with RunStore(tmp_path / "runs.sqlite") as store:
        run_id = store.create_run("m", "run", {})
        recorder = RunRecorder(store, run_id, sampler, flush_interval_s=3600)
        sampler.mark("load_start")
        sampler.sample_now()
        assert recorder.flush() == 3  # two samples and one mark
        assert recorder.flush() == 0  # nothing twice
        sampler.mark("load_end")
        recorder.start().stop()  # the thread's first flush is an hour away: stop writes it
        assert [event.kind for event in store.events(run_id)] == ["load_start", "load_end"]
        assert len(store.samples(run_id)) == len(sampler.samples()) == 3
        assert run_state(store.get_run(run_id)) == "running"  # this process, not finished
        store.finish_run(run_id, {})
        assert run_state(store.get_run(run_id)) == "finished"
