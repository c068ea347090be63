"""What one answer amounts to: its text, tokens, speed and memory profile.

``t_s`` in the JSON is seconds since the run's load started (the sampler's
clock is monotonic and means nothing to a reader); everything else is bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from yoyu.backends.protocol import StreamSummary, Usage
from yoyu.monitor.phases import PhaseProfile, PhaseReading


@dataclass(frozen=True)
class Speed:
    """Prefill (prompt tokens per second) and decode (generated tokens per second)."""

    prefill_tps: float | None
    decode_tps: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"prefill_tps": _round(self.prefill_tps), "decode_tps": _round(self.decode_tps)}


@dataclass(frozen=True)
class TurnResult:
    """One generation of a run and the phase profile around it."""

    index: int
    text: str
    usage: Usage | None
    speed: Speed
    first_token_s: float | None
    finish_reason: str | None
    profile: PhaseProfile
    origin_t_s: float  # the run's load_start on the sampler's clock
    settled: bool

    @property
    def empty_answer(self) -> str | None:
        """One line saying the answer was empty and how it ended; None for a real answer."""
        if self.text.strip():
            return None
        tokens = self.usage.completion_tokens if self.usage else None
        ended = f"finish reason {self.finish_reason or 'unknown'}"
        count = "" if tokens is None else f" after {tokens} token{'s' if tokens != 1 else ''}"
        return (
            f"the model answered nothing ({ended}{count}); a model prompted in a format it "
            "was not trained on often stops at once: check its chat template"
        )

    def phases(self) -> dict[str, dict[str, Any] | None]:
        return {
            name: _relative(reading, self.origin_t_s)
            for name, reading in self.profile.readings().items()
        }

    def to_dict(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "text": self.text,
            "usage": {
                "prompt_tokens": usage.prompt_tokens if usage else None,
                "completion_tokens": usage.completion_tokens if usage else None,
            },
            "speed": self.speed.to_dict(),
            "phases": self.phases(),
            "stabilize_s": _round(self.profile.stabilize_s),
            "stabilized_settled": self.settled,
            "first_token_s": _round(self.first_token_s),
            "finish_reason": self.finish_reason,
        }


def measured_speed(summary: StreamSummary) -> Speed:
    """Prefill: evaluated prompt tokens over the time to the first token; decode: the
    engine's own timer when it gave one, else the stream's clock.

    Prefill is not taken from the engine's timer: llama-cpp-python's server
    reports a prompt-eval time of a few hundredths of a millisecond whatever
    the prompt (0.07 ms for 44 tokens, here, on a 1 GB model too), so the
    time to first token, which includes that evaluation, is the honest figure.
    """
    timings = summary.engine_timings
    prompt = summary.usage.prompt_tokens if summary.usage else None
    if timings is not None:
        prompt = timings.prompt_tokens  # cached tokens cost nothing; count the evaluated ones
    prefill = prompt / summary.first_token_s if prompt and summary.first_token_s else None
    decode = timings.decode_tps if timings is not None else None
    return Speed(prefill, decode or summary.decode_tps)


def _relative(reading: PhaseReading | None, origin_t_s: float) -> dict[str, Any] | None:
    if reading is None:
        return None
    data = asdict(reading)
    data["t_s"] = round(reading.t_s - origin_t_s, 3)
    return data


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
