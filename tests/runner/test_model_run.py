"""``ModelRun`` with the real managed llama.cpp backend on a tiny model: phases present
and ordered, the engine gone after the run, everything in the store, watchers around
the load, a failed load stored and reported in one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from yoyu.backends.llamacpp_server import LlamaCppServerBackend, python_engine
from yoyu.backends.protocol import ChatMessage
from yoyu.errors import BackendStartError
from yoyu.estimate.types import RunSettings
from yoyu.monitor.phases import PHASE_NAMES, phase_profile
from yoyu.monitor.store import RunStore
from yoyu.runner import ModelRun, RunConfig, SettlePolicy, WatchContext
from yoyu.testing.tiny_models import TinyModel, write_tiny_model

SETTINGS = RunSettings(n_ctx=256, n_batch=64, n_ubatch=64, swa_full=True)
FAST_SETTLE = SettlePolicy(tolerance_bytes=1024**2, window_s=0.3, cap_s=5.0)
HELLO = [ChatMessage("user", "Say hello.")]


def backend(tmp_path: Path) -> LlamaCppServerBackend:
    return LlamaCppServerBackend(
        engine=python_engine(), log_dir=tmp_path / "logs", start_timeout_s=60, stop_grace_s=5
    )


def config(model: Path) -> RunConfig:
    return RunConfig(str(model), SETTINGS, settle=FAST_SETTLE)


def assert_ordered(profile_phases: dict[str, object]) -> None:
    readings = {name: profile_phases[name] for name in PHASE_NAMES}
    assert all(reading is not None for reading in readings.values()), readings
    rss = {name: reading.process_rss_bytes for name, reading in readings.items()}
    assert rss["peak"] >= rss["loaded"] >= rss["baseline"]
    assert rss["loaded"] > rss["baseline"]  # the engine holds memory once loaded
    times = [readings[name].t_s for name in PHASE_NAMES]
    assert times[:3] == sorted(times[:3]) and times[3] <= times[4] <= times[5]


@pytest.mark.slow
def test_one_shot_run_profiles_stores_and_unloads(tiny: TinyModel, tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    run = ModelRun(config(tiny.path), backend=backend(tmp_path), store=store, seed=1)
    with run:
        turn = run.ask(HELLO, max_tokens=8, temperature=0.0)
        assert run.loaded is not None and run.loaded.pid is not None
        engine_pid = run.loaded.pid
        assert psutil.pid_exists(engine_pid)
    assert not psutil.pid_exists(engine_pid)  # the child is gone after stop
    assert_ordered(turn.profile.readings())
    assert turn.usage is not None and turn.usage.completion_tokens > 0
    assert turn.speed.decode_tps is not None and turn.speed.decode_tps > 0
    assert turn.speed.prefill_tps is not None and turn.speed.prefill_tps > 0
    assert turn.profile.stabilize_s is not None and turn.profile.stabilize_s >= 0.3
    report = run.report()
    assert report["phases"]["baseline"]["t_s"] == 0.0  # seconds since the load started
    assert report["predicted"]["total_bytes"] > tiny.tensor_bytes
    # stored: the run, its samples, its events and result; the profile rebuilds the same
    assert run.run_id is not None
    record = store.get_run(run.run_id)
    assert record.mode == "run" and record.finished is not None
    assert record.result is not None and record.result["text"] == turn.text
    assert record.prediction is not None
    stored = {k: v for k, v in record.prediction.items() if k in report["predicted"]}
    assert stored == report["predicted"]  # and what a later plan matches runs by:
    assert record.prediction["settings"]["n_ctx"] == report["settings"]["n_ctx"]
    assert record.prediction["file_bytes"] == tiny.path.stat().st_size
    kinds = [event.kind for event in store.events(run.run_id)]
    assert kinds == [
        "load_start", "load_end", "generation_start", "first_token", "generation_end",
        "stabilized", "unload", "unloaded",
    ]  # fmt: skip
    samples = store.samples(run.run_id)
    # the first chunk's reading is in the turn's window whatever the sampler thread managed
    first_token = next(e.t_s for e in store.events(run.run_id) if e.kind == "first_token")
    assert any(sample.t_s == first_token for sample in samples)
    rebuilt = phase_profile(samples, store.events(run.run_id))
    assert rebuilt.peak == turn.profile.peak
    assert samples[-1].process.rss_bytes == 0  # sampled after the unload: nothing left
    store.close()


@pytest.mark.slow
def test_interactive_turns_each_get_a_profile(tiny: TinyModel, tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    with ModelRun(config(tiny.path), mode="chat", backend=backend(tmp_path), store=store) as run:
        first = run.ask(HELLO, max_tokens=6)
        history = [*HELLO, ChatMessage("assistant", first.text), ChatMessage("user", "More.")]
        second = run.ask(history, max_tokens=6)
    assert [first.index, second.index] == [0, 1]
    assert_ordered(first.profile.readings())
    assert_ordered(second.profile.readings())
    # both turns share the one load
    assert first.profile.loaded == second.profile.loaded
    assert second.profile.pre_generation is not None and first.profile.stabilized is not None
    assert second.profile.pre_generation.t_s >= first.profile.stabilized.t_s
    assert store.get_run(run.run_id or 0).result is not None
    assert len(store.get_run(run.run_id or 0).result["turns"]) == 2  # type: ignore[index]
    store.close()


@pytest.mark.slow
def test_watchers_are_entered_around_load_and_left_before_unload(
    tiny: TinyModel, tmp_path: Path
) -> None:
    seen: list[tuple[str, list[int]]] = []

    @contextmanager
    def watcher(context: WatchContext) -> Iterator[None]:
        seen.append(("enter", context.backend.pids()))
        yield
        seen.append(("exit", context.backend.pids()))

    store = RunStore(tmp_path / "runs.sqlite")
    run = ModelRun(config(tiny.path), backend=backend(tmp_path), store=store, watchers=[watcher])
    with run:
        run.ask(HELLO, max_tokens=2)
    assert [step for step, _ in seen] == ["enter", "exit"]
    assert seen[0][1] == []  # entered before the engine started
    assert run.loaded is not None and run.loaded.pid in seen[1][1]  # left while it still ran
    store.close()


def engine_rejected_model(tiny: TinyModel, folder: Path) -> Path:
    """A GGUF yoyu's reader accepts but llama.cpp refuses: a required key renamed."""
    data = tiny.path.read_bytes().replace(b"llama.embedding_length", b"llama.embedding_lengtx")
    path = folder / "no-embedding-length.gguf"
    path.write_bytes(data)
    return path


@pytest.mark.slow
def test_a_failed_load_is_stored_and_raised(tiny: TinyModel, tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    model = engine_rejected_model(tiny, tmp_path)
    run = ModelRun(config(model), backend=backend(tmp_path), store=store)
    with pytest.raises(BackendStartError, match="embedding_length") as raised:
        run.open()
    assert "\n" not in str(raised.value)
    assert run.run_id is not None
    record = store.get_run(run.run_id)
    assert record.result is not None and "embedding_length" in record.result["error"]
    assert [e.kind for e in store.events(run.run_id)] == ["load_start"]
    assert run.backend.pids() == []
    store.close()


@pytest.mark.slow
def test_a_template_the_engine_cannot_render_is_replaced_and_named(tmp_path: Path) -> None:
    broken = write_tiny_model(tmp_path / "broken.gguf", chat_template="{% if %}")
    run = ModelRun(config(broken.path), backend=backend(tmp_path), seed=1)
    with run:  # llama-cpp-python alone would fail to load: it compiles every template
        turn = run.ask(HELLO, max_tokens=4, temperature=0.0)
    assert turn.usage is not None and turn.usage.completion_tokens > 0
    assert run.load_settings["chat_format"] == "chatml"  # no family format for a tiny llama
    (notice,) = run.notices
    assert "cannot render the chat template" in notice and "TemplateSyntaxError" in notice
    assert "'chatml'" in notice
