"""The net under cancellation: an engine busy with no request in flight is stopped."""

from __future__ import annotations

from yoyu.gateway.runaway import BUSY_TICKS, EngineLoad, RunawayWatch, process_tree_cpu_seconds


class Clock:
    """CPU seconds per pid, advanced by the test as a busy or idle engine would."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}

    def __call__(self, pid: int) -> float | None:
        return self.cpu.get(pid)


def run_ticks(
    watch: RunawayWatch, clock: Clock, engine: EngineLoad, ticks: int, cores_busy: float
) -> list[list[tuple[str, float]]]:
    """``ticks`` one-second ticks of ``engine`` using ``cores_busy`` cores."""
    results = []
    for second in range(ticks):
        assert engine.pid is not None
        clock.cpu[engine.pid] = clock.cpu.get(engine.pid, 0.0) + cores_busy
        results.append(watch.tick([engine], now_s=float(second + 100 * engine.pid)))
    return results


def test_an_idle_engine_that_keeps_a_core_busy_is_stopped_after_the_busy_ticks() -> None:
    clock = Clock()
    watch = RunawayWatch(clock)
    results = run_ticks(watch, clock, EngineLoad("g", 7, in_flight=0), BUSY_TICKS + 1, 0.9)
    # The first tick only takes a reading; then BUSY_TICKS busy ticks in a row.
    assert [bool(r) for r in results] == [False] * BUSY_TICKS + [True]
    ((model, share),) = results[-1]
    assert model == "g" and abs(share - 0.9) < 1e-9


def test_an_engine_serving_a_request_is_never_stopped() -> None:
    clock = Clock()
    watch = RunawayWatch(clock)
    results = run_ticks(watch, clock, EngineLoad("g", 7, in_flight=1), 10, 4.0)
    assert not any(results)


def test_a_quiet_tick_starts_the_count_again() -> None:
    clock = Clock()
    watch = RunawayWatch(clock)
    engine = EngineLoad("g", 7, in_flight=0)
    busy = run_ticks(watch, clock, engine, BUSY_TICKS, 0.9)
    clock.cpu[7] += 0.1  # a quiet second
    quiet = watch.tick([engine], now_s=1000.0)
    assert not any(busy) and not quiet
    again = [watch.tick([engine], now_s=1001.0 + i) for i in range(BUSY_TICKS)]
    assert not any(again)  # each of these took no CPU (the clock did not move)


def test_a_reloaded_engine_is_not_compared_with_the_one_before() -> None:
    clock = Clock()
    watch = RunawayWatch(clock)
    # One busy tick short of a stop, then the model is reloaded under a new pid.
    assert not any(run_ticks(watch, clock, EngineLoad("g", 7, 0), BUSY_TICKS, 0.9))
    clock.cpu[8] = 500.0  # the new engine's counter says nothing about the last second
    assert watch.tick([EngineLoad("g", 8, 0)], now_s=700.0 + BUSY_TICKS) == []


def test_an_engine_gone_or_not_started_is_skipped() -> None:
    watch = RunawayWatch(Clock())
    assert watch.tick([EngineLoad("g", None, 0), EngineLoad("h", 99, 0)], now_s=1.0) == []


def test_the_real_cpu_reading_counts_this_process_and_none_for_a_missing_one() -> None:
    import os

    seconds = process_tree_cpu_seconds(os.getpid())
    assert seconds is not None and seconds > 0
    assert process_tree_cpu_seconds(2**22 + 12345) is None
