"""A model's slots and its bounded line: real threads, no sleeps (each step waits for a
state the queue reports)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from yoyu.backends.cancellation import Cancellation
from yoyu.errors import QueueFullError, RequestCancelledError
from yoyu.gateway.queueing import ModelQueue, QueueLimits, Slot
from yoyu.testing.waiting import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def enter_in_thread(
    queue: ModelQueue, order: list[int], number: int, **options: object
) -> tuple[threading.Thread, list[Slot | BaseException]]:
    """Wait for a slot in another thread; its slot (or error) lands in the returned list."""
    outcome: list[Slot | BaseException] = []

    def run() -> None:
        try:
            slot = queue.enter(timeout_s=30, **options)  # type: ignore[arg-type]
        except BaseException as error:
            outcome.append(error)
            return
        order.append(number)
        outcome.append(slot)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def waiting(queue: ModelQueue, count: int) -> Callable[[], bool]:
    return lambda: queue.stats().waiting == count


def test_requests_beyond_the_slots_wait_and_start_in_arrival_order() -> None:
    queue = ModelQueue("m", QueueLimits(max_concurrent=2, max_queue=5))
    first, second = queue.enter(timeout_s=1), queue.enter(timeout_s=1)
    order: list[int] = []
    threads = []
    for number in range(3):
        threads.append(enter_in_thread(queue, order, number))
        wait_until(waiting(queue, number + 1), 5, "a request in line")
    assert queue.stats().running == 2 and order == []
    first.release()
    wait_until(lambda: order == [0], 5, "start order [0]")
    second.release()
    second.release()  # a second release of the same slot changes nothing
    wait_until(lambda: order == [0, 1], 5, "start order [0, 1]")
    assert queue.stats().running == 2 and queue.stats().waiting == 1
    slot_of_0 = threads[0][1][0]
    assert isinstance(slot_of_0, Slot)
    slot_of_0.release()
    wait_until(lambda: order == [0, 1, 2], 5, "start order [0, 1, 2]")


def test_a_full_line_is_refused_at_once_with_a_retry_after_from_the_pace_so_far() -> None:
    clock = Clock()
    queue = ModelQueue("m", QueueLimits(max_concurrent=1, max_queue=1), clock)
    with queue.enter(timeout_s=1):
        clock.now = 6.0  # the model takes 6 s a request
    running = queue.enter(timeout_s=1)
    order: list[int] = []
    enter_in_thread(queue, order, 0)
    wait_until(waiting(queue, 1), 5, "1 in line")
    with pytest.raises(QueueFullError, match="1 waiting") as refused:
        queue.enter(timeout_s=1)
    # one waiting ahead plus this one, each 6 s at one slot
    assert refused.value.retry_after_s == 12.0
    assert refused.value.http_status == 429
    assert queue.stats().rejected == 1
    running.release()
    wait_until(lambda: order == [0], 5, "start order [0]")


def test_a_client_that_leaves_while_queued_never_takes_a_slot() -> None:
    queue = ModelQueue("m", QueueLimits(max_concurrent=1, max_queue=4))
    running = queue.enter(timeout_s=1)
    cancel = Cancellation()
    order: list[int] = []
    thread, outcome = enter_in_thread(queue, order, 0, cancel=cancel)
    wait_until(waiting(queue, 1), 5, "1 in line")
    cancel.cancel("the client went away")
    thread.join(5)
    assert isinstance(outcome[0], RequestCancelledError)
    assert "went away" in str(outcome[0])
    assert queue.stats().waiting == 0
    running.release()
    assert queue.stats().running == 0  # the slot was not handed to the one that left


def test_a_waiter_past_its_deadline_leaves_the_line() -> None:
    queue = ModelQueue("m", QueueLimits(max_concurrent=1, max_queue=4))
    with queue.enter(timeout_s=1):
        with pytest.raises(RequestCancelledError, match=r"no free slot within 0\.01 s"):
            queue.enter(timeout_s=0.01)
        assert queue.stats().waiting == 0


def test_no_line_at_all_when_max_queue_is_zero() -> None:
    queue = ModelQueue("m", QueueLimits(max_concurrent=1, max_queue=0))
    with queue.enter(timeout_s=1), pytest.raises(QueueFullError):
        queue.enter(timeout_s=1)
    queue.enter(timeout_s=1).release()  # free again once the first left


def test_a_slot_handed_to_a_waiter_that_was_cancelled_meanwhile_goes_to_the_next() -> None:
    queue = ModelQueue("m", QueueLimits(max_concurrent=1, max_queue=4))
    running = queue.enter(timeout_s=1)
    cancel = Cancellation()
    order: list[int] = []
    thread, _ = enter_in_thread(queue, order, 0, cancel=cancel)
    wait_until(waiting(queue, 1), 5, "1 in line")
    enter_in_thread(queue, order, 1)
    wait_until(waiting(queue, 2), 5, "2 in line")
    # Hand the slot to the first waiter and cancel it before its thread wakes: the
    # queue's lock is held across both, so the waiter finds itself admitted and cancelled.
    with queue._lock:
        queue._running -= 1
        queue._admit_next()
        cancel.cancel("gone")
    thread.join(5)
    wait_until(lambda: order == [1], 5, "start order [1]")
    # The hand-over above stood for the first holder's release: one slot, now number 1's.
    assert queue.stats().running == 1 and queue.stats().waiting == 0
    del running


# -- tasks on an event loop share the same line --------------------------------------


def test_tasks_and_threads_wait_in_one_line_in_arrival_order() -> None:
    """A thread, a task, a thread: released one slot at a time, they start in that order."""
    queue = ModelQueue("m", QueueLimits(max_concurrent=1, max_queue=5))
    order: list[str] = []

    async def scenario() -> None:
        holder = await queue.enter_async(timeout_s=1)
        thread_a, outcome_a = enter_in_thread(queue, order, 0)
        await asyncio.to_thread(wait_until, waiting(queue, 1), 5, "thread 0 in line")

        async def task_in_line() -> Slot:
            slot = await queue.enter_async(timeout_s=30)
            order.append("task")
            return slot

        task = asyncio.ensure_future(task_in_line())
        await asyncio.to_thread(wait_until, waiting(queue, 2), 5, "the task in line")
        thread_b, outcome_b = enter_in_thread(queue, order, 2)
        await asyncio.to_thread(wait_until, waiting(queue, 3), 5, "thread 2 in line")
        holder.release()
        await asyncio.to_thread(wait_until, lambda: order == [0], 5, "thread 0 first")
        thread_a.join(5)
        assert not task.done() and queue.stats().running == 1
        slot_a = outcome_a[0]
        assert isinstance(slot_a, Slot)
        slot_a.release()
        task_slot = await task
        assert order == [0, "task"]
        task_slot.release()
        thread_b.join(5)
        assert order == [0, "task", 2] and isinstance(outcome_b[0], Slot)

    asyncio.run(scenario())


def test_a_task_cancelled_in_line_leaves_it_and_a_slow_line_times_out() -> None:
    queue = ModelQueue("m", QueueLimits(max_concurrent=1, max_queue=5))

    async def scenario() -> None:
        holder = await queue.enter_async(timeout_s=1)
        task = asyncio.ensure_future(queue.enter_async(timeout_s=30))
        await asyncio.to_thread(wait_until, waiting(queue, 1), 5, "the task in line")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert queue.stats().waiting == 0
        with pytest.raises(RequestCancelledError, match=r"no free slot within 0\.05 s"):
            await queue.enter_async(timeout_s=0.05)
        assert queue.stats().waiting == 0
        holder.release()
        assert queue.stats().running == 0  # nobody was handed the slot

    asyncio.run(scenario())


def test_a_slot_handed_to_a_task_cancelled_meanwhile_goes_to_the_next() -> None:
    """The slot is handed over (the task is woken) and the task is cancelled before it
    runs: the slot goes on to the next in line instead of being lost."""
    queue = ModelQueue("m", QueueLimits(max_concurrent=1, max_queue=5))

    async def scenario() -> None:
        holder = await queue.enter_async(timeout_s=1)
        first = asyncio.ensure_future(queue.enter_async(timeout_s=30))
        second = asyncio.ensure_future(queue.enter_async(timeout_s=30))
        await asyncio.to_thread(wait_until, waiting(queue, 2), 5, "two tasks in line")
        holder.release()  # hands the slot to the first task (woken, not yet run)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        slot = await second
        assert queue.stats().running == 1 and queue.stats().waiting == 0
        slot.release()
        assert queue.stats().running == 0

    asyncio.run(scenario())
