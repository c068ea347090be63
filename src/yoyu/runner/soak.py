"""``yoyu soak``: a long conversation, memory read once settled after every turn, a verdict.

Each turn's point is the tree's anonymous + swapped memory once it has
settled (``yoyu.monitor.stabilize``): RSS would mix in the mmap'd weights the
page cache drops and re-reads. The verdict is ``yoyu.monitor.check_leak``'s
slope over those points, in MiB per minute with its standard error.

``soak_loop`` drives any ``step`` (a model's turn, or a test's process that
grows on purpose) until the duration is spent and at least ``min_turns`` points
exist, so a short soak still has enough points to say something.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from yoyu.backends.protocol import ChatMessage
from yoyu.errors import SettingsError
from yoyu.monitor.leak import (
    DEFAULT_SIGMAS,
    DEFAULT_THRESHOLD_MIB_PER_MIN,
    MIN_POINTS,
    LeakCheck,
    check_leak,
)
from yoyu.monitor.phases import settling_figures, stabilize
from yoyu.monitor.sampler import Sampler
from yoyu.runner.options import SettlePolicy
from yoyu.runner.session import ModelRun

_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^\s*(?:{_NUMBER}h)?\s*(?:{_NUMBER}m)?\s*(?:{_NUMBER}s?)?\s*$")
MIN_GROWTH_MIB = 4.0  # a few allocator arenas; a 10-minute soak at 1 MiB/min grows 10
SOAK_PROMPTS = (
    "Tell me a short fact about the sea.",
    "And one about mountains.",
    "Now one about rivers.",
    "Summarize what you said in one line.",
)


@dataclass(frozen=True)
class SoakPoint:
    """Memory of the watched tree once settled after turn ``turn``."""

    turn: int
    t_s: float  # seconds since the soak started
    growth_bytes: int  # anonymous + swapped
    rss_bytes: int
    settled: bool


@dataclass(frozen=True)
class SoakResult:
    points: tuple[SoakPoint, ...]
    leak: LeakCheck

    def to_dict(self) -> dict[str, Any]:
        leak = asdict(self.leak)
        if leak["stderr_mib_per_min"] == float("inf"):
            leak["stderr_mib_per_min"] = None  # JSON has no infinity
        return {"points": [asdict(point) for point in self.points], "leak": leak}


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``30s``, ``10m``, ``1h``, ``1h30m``; zero or garbled is an error."""
    match = _DURATION.match(text.lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise SettingsError(f"duration {text!r} is not valid; write e.g. 30s, 10m or 1h")
    hours, minutes, seconds = (float(group or 0) for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise SettingsError(f"duration {text!r} must be longer than zero")
    return total


def soak_result(
    points: Sequence[SoakPoint],
    threshold_mib_per_min: float = DEFAULT_THRESHOLD_MIB_PER_MIN,
    sigmas: float = DEFAULT_SIGMAS,
    min_growth_mib: float = MIN_GROWTH_MIB,
) -> SoakResult:
    """The verdict over the settled points (pure).

    A leak also needs the fitted growth over the whole soak to reach
    ``min_growth_mib``: allocators settle in steps of a few hundred KiB in the
    first turns, and a short soak would extrapolate that to MiB per minute.
    """
    leak = check_leak([(p.t_s, p.growth_bytes) for p in points], threshold_mib_per_min, sigmas)
    grown_mib = leak.slope_mib_per_min * leak.duration_s / 60
    if leak.verdict == "leak" and grown_mib < min_growth_mib:
        reason = (
            f"{leak.reason}, but only {grown_mib:.2f} MiB in all (a leak needs "
            f"{min_growth_mib:g} MiB); soak longer"
        )
        leak = dataclasses.replace(leak, verdict="inconclusive", reason=reason)
    return SoakResult(tuple(points), leak)


def settle_point(sampler: Sampler, policy: SettlePolicy, turn: int, origin_t_s: float) -> SoakPoint:
    """Wait for the tree to settle and read it."""
    settled = stabilize(
        lambda: settling_figures(sampler.sample_now()),
        policy.tolerance_bytes, policy.window_s, policy.cap_s,
    )  # fmt: skip
    sample = sampler.sample_now()
    return SoakPoint(
        turn, sample.t_s - origin_t_s, sample.process.growth_bytes, sample.process.rss_bytes,
        settled.settled,
    )  # fmt: skip


def soak_loop(
    step: Callable[[int], SoakPoint],
    duration_s: float,
    *,
    min_turns: int = MIN_POINTS,
    clock: Callable[[], float] = time.monotonic,
    on_point: Callable[[SoakPoint], None] | None = None,
) -> list[SoakPoint]:
    """Call ``step(turn)`` until ``duration_s`` has passed and ``min_turns`` points exist."""
    started = clock()
    points: list[SoakPoint] = []
    while clock() - started < duration_s or len(points) < min_turns:
        point = step(len(points))
        points.append(point)
        if on_point is not None:
            on_point(point)
    return points


class Conversation:
    """A chat history that forgets its oldest exchanges before the context overflows."""

    def __init__(self, n_ctx: int, max_tokens: int, system: str | None = None) -> None:
        self.budget_tokens = max(n_ctx - 2 * max_tokens, n_ctx // 4)
        self.system = [ChatMessage("system", system)] if system else []
        self.exchanges: list[tuple[ChatMessage, ChatMessage]] = []

    def messages(self, prompt: str) -> list[ChatMessage]:
        history = [message for pair in self.exchanges for message in pair]
        return [*self.system, *history, ChatMessage("user", prompt)]

    def add(self, prompt: str, answer: str, prompt_tokens: int | None) -> None:
        self.exchanges.append((ChatMessage("user", prompt), ChatMessage("assistant", answer)))
        if prompt_tokens is not None and prompt_tokens > self.budget_tokens // 2:
            self.exchanges = self.exchanges[len(self.exchanges) // 2 + 1 :]


def run_soak(
    run: ModelRun,
    duration_s: float,
    *,
    max_tokens: int,
    prompts: Sequence[str] = SOAK_PROMPTS,
    threshold_mib_per_min: float = DEFAULT_THRESHOLD_MIB_PER_MIN,
    on_point: Callable[[SoakPoint], None] | None = None,
    **request: Any,
) -> SoakResult:
    """A multi-turn conversation with the loaded model; one settled point per turn."""
    if run.sampler is None or run.prediction is None:
        raise SettingsError("open the run before soaking it")
    conversation = Conversation(run.prediction.settings.n_ctx or 4096, max_tokens)
    origin = run.sampler.snapshot().t_s

    def step(turn: int) -> SoakPoint:
        prompt = prompts[turn % len(prompts)]
        result = run.ask(conversation.messages(prompt), max_tokens=max_tokens, **request)
        usage = result.usage
        conversation.add(prompt, result.text, usage.prompt_tokens if usage else None)
        reading = result.profile.stabilized
        assert reading is not None  # ask() settles before it returns
        growth = (reading.process_anon_bytes or reading.process_rss_bytes) + (
            reading.process_swap_bytes or 0
        )
        return SoakPoint(
            turn, reading.t_s - origin, growth, reading.process_rss_bytes, result.settled
        )

    points = soak_loop(step, duration_s, on_point=on_point)
    return soak_result(points, threshold_mib_per_min)
