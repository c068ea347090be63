"""Floors, budget and the ``[guard]`` section."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoyu.errors import ConfigError, SettingsError
from yoyu.guard import Floor, GuardPolicy, parse_floor, policy_from_config, policy_from_settings
from yoyu.guard.policy import DEFAULT_PROTECTED, with_overrides

MIB = 1024**2
GIB = 1024**3


def test_floors_take_sizes_and_percentages() -> None:
    assert parse_floor("2 GiB") == Floor(bytes=2 * GIB)
    assert parse_floor("512MiB") == Floor(bytes=512 * MIB)
    assert parse_floor("1.5G") == Floor(bytes=int(1.5 * GIB))
    assert parse_floor("10%") == Floor(percent=10.0)
    assert Floor(percent=10.0).resolve(32 * GIB) == round(3.2 * GIB)


@pytest.mark.parametrize("text", ["5XB", "", "-1GiB", "150%", "0%", "ten"])
def test_bad_floors_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(SettingsError, match=r"e\.g\."):
        parse_floor(text)


def test_defaults_are_4_and_2_gib_on_a_big_machine() -> None:
    floors = GuardPolicy().resolve(32 * GIB)
    assert (floors.caution_bytes, floors.abort_bytes, floors.kill_bytes) == (4 * GIB, 2 * GIB, GIB)


def test_defaults_shrink_with_a_small_budget() -> None:
    floors = GuardPolicy(budget_bytes=512 * MIB).resolve(32 * GIB)
    assert floors.capacity_bytes == 512 * MIB
    assert (floors.caution_bytes, floors.abort_bytes) == (256 * MIB, 128 * MIB)


def test_percent_floors_are_of_the_budget_when_one_is_set() -> None:
    policy = with_overrides(GuardPolicy(), caution="50%", abort="20%", budget="1GiB")
    floors = policy.resolve(32 * GIB)
    assert (floors.caution_bytes, floors.abort_bytes) == (512 * MIB, round(0.2 * GIB))


def test_abort_must_be_below_caution() -> None:
    with pytest.raises(SettingsError, match="must be below the caution floor"):
        with_overrides(GuardPolicy(), caution="1GiB", abort="2GiB").resolve(32 * GIB)


def test_caution_must_be_below_the_capacity() -> None:
    with pytest.raises(SettingsError, match="raise --budget"):
        with_overrides(GuardPolicy(), caution="1GiB", budget="512MiB").resolve(32 * GIB)


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"^--abort '5XB' is not a size"):
        with_overrides(GuardPolicy(), abort="5XB")
    with pytest.raises(SettingsError, match="--budget"):
        with_overrides(GuardPolicy(), budget="0")


def test_config_section_sets_every_key() -> None:
    policy = policy_from_config(
        {
            "caution": "6 GiB",
            "abort": "10%",
            "budget": "16GiB",
            "swap_growth": "512MiB",
            "gpu_free_floor": "256MiB",
            "psi_some": 30,
            "psi_full": 50.5,
            "macos_pressure": "warn",
            "grace": 3,
            "lead_time": 0.5,
            "interval": 0.05,
            "idle_interval": 0.5,
            "protected": ["my-agent"],
        }
    )
    assert policy.caution == Floor(bytes=6 * GIB)
    assert policy.abort == Floor(percent=10.0)
    assert policy.budget_bytes == 16 * GIB
    assert policy.gpu_free_floor_bytes == 256 * MIB
    assert (policy.psi_some, policy.psi_full, policy.macos_pressure) == (30.0, 50.5, "warn")
    assert (policy.grace_s, policy.lead_time_s, policy.interval_s) == (3.0, 0.5, 0.05)
    assert policy.idle_interval_s == 0.5
    assert "my-agent" in policy.protected and policy.protected >= DEFAULT_PROTECTED


def test_config_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'abrot' in \[guard\]"):
        policy_from_config({"abrot": "2GiB"})


@pytest.mark.parametrize(
    ("key", "value"),
    [("caution", "lots"), ("grace", -1), ("psi_full", 150), ("protected", "vim"),
     ("macos_pressure", "high"), ("interval", 0), ("idle_interval", 60),
     ("idle_interval", "fast"), ("budget", True)],
)  # fmt: skip
def test_config_bad_values_name_key_and_value(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"\[guard\] {key} = "):
        policy_from_config({key: value})


def test_policy_is_read_from_yoyu_toml(isolated_home: Path) -> None:
    config = isolated_home / "yoyu" / "yoyu.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[guard]\nabort = "3 GiB"\ngrace = 1\n', encoding="utf-8")
    policy = policy_from_settings()
    assert policy.abort == Floor(bytes=3 * GIB)
    assert policy.grace_s == 1.0


def test_default_protected_names_cover_editors_terminals_and_agents() -> None:
    assert {"code", "nvim", "emacs", "tmux", "kitty", "claude", "sshd"} <= DEFAULT_PROTECTED
