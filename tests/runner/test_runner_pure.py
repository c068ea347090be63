"""The pure parts of the runner on plain values: A/B statistics, soak verdict, options."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from yoyu.backends.protocol import Usage
from yoyu.errors import SettingsError
from yoyu.estimate.types import RunSettings
from yoyu.models.chat_format import choose_chat_format
from yoyu.models.spec import ModelSpec
from yoyu.monitor.phases import PhaseProfile, PhaseReading
from yoyu.runner import (
    ABRun,
    SoakPoint,
    Speed,
    ab_result,
    parse_duration,
    schedule,
    settings_from_file,
    settings_from_mapping,
    soak_loop,
    soak_result,
    spread_of,
)
from yoyu.runner.result import TurnResult
from yoyu.runner.soak import Conversation
from yoyu.runner.stats import difference
from yoyu.units import MIB


def reading(rss_mib: float, t_s: float = 0.0) -> PhaseReading:
    rss = int(rss_mib * MIB)
    return PhaseReading(t_s, 8000 * MIB - rss, 0, rss, rss // 2, rss // 2, 0, None)


def profile(rss_mib: float) -> PhaseProfile:
    base, loaded, peak = reading(0), reading(rss_mib), reading(rss_mib + 5)
    return PhaseProfile(base, loaded, loaded, peak, loaded, loaded, 0.5)


def ab_run(label: str, repeat: int, rss_mib: float, decode: float = 10.0) -> ABRun:
    return ABRun(label, repeat, None, profile(rss_mib), Speed(100.0, decode))


def test_spread_is_median_and_range_of_known_values() -> None:
    spread = spread_of([3.0, None, 1.0, 2.0])
    assert spread is not None
    assert (spread.median, spread.low, spread.high, spread.n) == (2.0, 1.0, 3.0, 3)
    assert spread.range == 2.0
    assert spread_of([None, None]) is None


def test_a_difference_counts_only_beyond_the_noise() -> None:
    a, b = spread_of([100.0, 102.0]), spread_of([110.0, 111.0])
    assert a is not None and b is not None
    clear = difference("peak", "process_rss_bytes", a, b)
    assert clear.delta == 9.5 and clear.noise == 2.0 and clear.exceeds_noise is True
    noisy = spread_of([95.0, 115.0])
    assert noisy is not None
    assert difference("peak", "x", a, noisy).exceeds_noise is False
    single = spread_of([500.0])
    assert single is not None
    assert difference("peak", "x", a, single).exceeds_noise is None  # no noise estimate
    assert difference("peak", "x", a, b, floor=20.0).exceeds_noise is False


def test_ab_result_finds_a_real_difference_and_ignores_noise() -> None:
    runs = [ab_run("a", i, 100 + i) for i in range(3)] + [ab_run("b", i, 200 + i) for i in range(3)]
    result = ab_result(("a", "b"), runs)
    by_key = {(d.phase, d.metric): d for d in result.differences}
    rss_peak = by_key[("peak", "process_rss_bytes")]
    assert rss_peak.delta == pytest.approx(100 * MIB, abs=1)
    assert rss_peak.exceeds_noise is True
    baseline = by_key[("baseline", "process_rss_bytes")]
    assert baseline.delta == 0 and baseline.exceeds_noise is False
    decode = by_key[("speed", "decode_tps")]
    assert decode.delta == 0 and decode.exceeds_noise is False
    assert result.stats["a"]["peak"]["process_rss_bytes"].n == 3
    assert result.to_dict()["labels"] == ["a", "b"]


def test_runs_alternate_between_the_two_sides() -> None:
    assert schedule(["a", "b"], 2) == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    with pytest.raises(SettingsError, match="repeat"):
        schedule(["a", "b"], 0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1.5m", 90)],
)
def test_durations_accept_seconds_minutes_hours(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "0s", "10ms", "-5m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(SettingsError, match="duration"):
        parse_duration(text)


def point(turn: int, t_s: float, growth_mib: float) -> SoakPoint:
    return SoakPoint(turn, t_s, int(growth_mib * MIB), int(growth_mib * MIB), True)


def test_soak_verdict_from_settled_points() -> None:
    growing = soak_result([point(i, 60.0 * i, 100 + 5 * i) for i in range(6)])
    assert growing.leak.verdict == "leak"
    assert growing.leak.slope_mib_per_min == pytest.approx(5.0)
    steady = soak_result([point(i, 60.0 * i, 100 + (0.01 if i % 2 else 0)) for i in range(6)])
    assert steady.leak.verdict == "no_leak"
    short = soak_result([point(0, 0.0, 100), point(1, 1.0, 101)])
    assert short.leak.verdict == "inconclusive"
    assert short.to_dict()["leak"]["stderr_mib_per_min"] is None  # infinity is not JSON
    assert math.isinf(short.leak.stderr_mib_per_min)


def test_a_short_soak_with_little_growth_is_not_called_a_leak() -> None:
    warming_up = soak_result([point(i, 1.0 * i, 50 + 0.1 * i) for i in range(5)])
    assert warming_up.leak.slope_mib_per_min == pytest.approx(6.0)  # steep, but 0.4 MiB in all
    assert warming_up.leak.verdict == "inconclusive"
    assert "soak longer" in warming_up.leak.reason
    assert soak_result([point(i, 1.0 * i, 50 + 2 * i) for i in range(5)]).leak.verdict == "leak"


def test_soak_loop_runs_past_the_duration_until_it_has_enough_points() -> None:
    ticks = iter(range(100))
    points = soak_loop(lambda turn: point(turn, turn, 1), 2.0, clock=lambda: float(next(ticks)))
    assert len(points) == 4  # the duration ran out after 1 turn; 4 points are the minimum


def test_settings_take_short_names_and_ollama_names() -> None:
    base = RunSettings()
    settings = settings_from_mapping(
        {"ctx": 2048, "kv_type": "q8_0", "num_parallel": 1, "gpu_layers": 3}, base
    )
    assert (settings.n_ctx, settings.type_k, settings.type_v) == (2048, "q8_0", "q8_0")
    assert settings.n_gpu_layers == 3
    with pytest.raises(SettingsError, match="unknown setting 'ctxx'"):
        settings_from_mapping({"ctxx": 1}, base)
    with pytest.raises(SettingsError, match="Ollama daemon setting"):
        settings_from_mapping({"max_loaded_models": 2}, base)
    with pytest.raises(SettingsError, match="KV cache type"):
        settings_from_mapping({"kv_type": "q9"}, base)


def test_settings_files_are_toml(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("ctx = 1024\nbatch = 128\n", encoding="utf-8")
    assert settings_from_file(path).n_ctx == 1024
    path.write_text("ctx = = 1", encoding="utf-8")
    with pytest.raises(Exception, match="cannot read settings"):
        settings_from_file(path)


def test_conversation_forgets_old_exchanges_before_the_context_fills() -> None:
    conversation = Conversation(n_ctx=400, max_tokens=50, system="Be brief.")
    conversation.add("one", "1", prompt_tokens=20)
    conversation.add("two", "2", prompt_tokens=40)
    assert [m.content for m in conversation.messages("three")] == [
        "Be brief.", "one", "1", "two", "2", "three",
    ]  # fmt: skip
    conversation.add("three", "3", prompt_tokens=200)  # over half the budget of 300
    assert len(conversation.exchanges) < 3
    assert conversation.messages("four")[-1].content == "four"


def turn_with(text: str, completion_tokens: int | None, finish_reason: str | None) -> TurnResult:
    usage = None if completion_tokens is None else Usage(12, completion_tokens)
    return TurnResult(
        index=0, text=text, usage=usage, speed=Speed(None, None), first_token_s=None,
        finish_reason=finish_reason, profile=PhaseProfile(None, None, None, None, None, None, None),
        origin_t_s=0.0, settled=True,
    )  # fmt: skip


def test_an_empty_answer_is_never_silent() -> None:
    notice = turn_with("  \n", 0, "stop").empty_answer
    assert notice is not None
    assert "answered nothing (finish reason stop after 0 tokens)" in notice
    assert "chat template" in notice
    assert "after" not in (turn_with("", None, None).empty_answer or "after")
    assert turn_with("Hello.", 2, "stop").empty_answer is None


def test_a_file_without_a_template_gets_its_familys_format() -> None:
    gemma = dataclasses.replace(spec_named("gemma3"), chat_template=False)
    choice = choose_chat_format(gemma, "llama-cpp-python")
    assert choice.chat_format == "gemma" and choice.notice is not None
    assert "no chat template" in choice.notice and "'gemma'" in choice.notice
    unknown = dataclasses.replace(spec_named("rwkv7"), chat_template=False)
    fallback = choose_chat_format(unknown, "llama-cpp-python")
    assert fallback.chat_format is None and "'llama-2'" in (fallback.notice or "")
    assert choose_chat_format(dataclasses.replace(gemma, chat_template=True), "x").notice is None


def spec_named(architecture: str) -> ModelSpec:
    return ModelSpec(
        name="m", architecture=architecture, format="gguf", paths=(), file_bytes=0,
        quantization=None, n_layers=1, n_embd=8, n_head=1, n_head_kv=1, head_dim_k=8,
        head_dim_v=8, n_ff=8, vocab_size=8, context_length=8, params_total=0, params_active=0,
        tensor_bytes=0, layer_bytes=(0,), nonrepeating_bytes=0, type_bytes={},
    )  # fmt: skip
