"""The pure parts: smoke floors, [migrate] parsing, and the yoyu.toml text edits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from yoyu.errors import ConfigError, SettingsError
from yoyu.guard import GuardPolicy
from yoyu.rollout.aliases import (
    append_block,
    apply_promotion,
    plan_promotion,
    remove_block,
    set_alias,
    undo_promotion,
)
from yoyu.rollout.thresholds import (
    CAUTION,
    CONTINUE,
    STOP,
    MigrateThresholds,
    smoke_decision,
    thresholds_from_config,
    with_flags,
)
from yoyu.toml import load_toml
from yoyu.units import GIB, MIB


def parse(text: str, folder: Path) -> dict[str, Any]:
    scratch = folder / "scratch.toml"
    scratch.write_text(text, encoding="utf-8")
    return load_toml(scratch)


@pytest.mark.parametrize(
    ("available", "accept", "outcome"),
    [
        (5 * GIB, False, CONTINUE),
        (4 * GIB, False, CONTINUE),
        (3 * GIB, False, STOP),
        (3 * GIB, True, CAUTION),
        (2 * GIB, True, CAUTION),
        (2 * GIB - 1, True, STOP),
    ],
)
def test_smoke_bands(available: int, accept: bool, outcome: str) -> None:
    decision = smoke_decision(available, 4 * GIB, 2 * GIB, accept)
    assert decision.outcome == outcome
    if outcome == STOP and accept is False:
        assert "--accept-caution" in decision.reason


def test_smoke_floors_follow_the_guard_and_its_budget() -> None:
    assert MigrateThresholds().smoke_floors(GuardPolicy(), 32 * GIB) == (4 * GIB, 2 * GIB)
    small = GuardPolicy(budget_bytes=1 * GIB)
    assert MigrateThresholds().smoke_floors(small, 32 * GIB) == (512 * MIB, 256 * MIB)
    own = MigrateThresholds(smoke_continue_bytes=3 * GIB, smoke_stop_bytes=1 * GIB)
    assert own.smoke_floors(GuardPolicy(), 32 * GIB) == (3 * GIB, 1 * GIB)
    with pytest.raises(SettingsError, match="smoke_stop"):
        MigrateThresholds(smoke_continue_bytes=GIB, smoke_stop_bytes=2 * GIB).smoke_floors(
            GuardPolicy(), 32 * GIB
        )


def test_migrate_section_and_flags() -> None:
    thresholds = thresholds_from_config({"min_available": "6 GiB", "soak": "2m", "max_tokens": 32})
    assert (thresholds.min_available_bytes, thresholds.soak_s, thresholds.max_tokens) == (
        6 * GIB, 120.0, 32,
    )  # fmt: skip
    flagged = with_flags(thresholds, soak="30s", budget="1GiB", accept_caution=True)
    assert (flagged.soak_s, flagged.budget_bytes, flagged.accept_caution) == (30.0, GIB, True)
    assert flagged.min_available_bytes == 6 * GIB  # the file's value stays
    with pytest.raises(ConfigError, match="unknown key 'soak_time'"):
        thresholds_from_config({"soak_time": "1m"})
    with pytest.raises(ConfigError, match="smoke_stop"):
        thresholds_from_config({"smoke_stop": "lots"})
    with pytest.raises(SettingsError, match="--budget"):
        with_flags(thresholds, budget="plenty")


CONFIG = """\
# top comment
[backends.local]
kind = "llama.cpp"

[served.small]
backend = "local"
path = "/m/small.gguf"

[aliases]
# keep me
coder = "small"   # old
"""


def test_promotion_routes_the_alias_to_the_new_model_first(tmp_path: Path) -> None:
    promotion = plan_promotion(
        parse(CONFIG, tmp_path), "coder", "big", Path("/m/big.gguf"), block="m1"
    )
    assert promotion.previous == "small" and promotion.fallback == "small"
    assert promotion.tables["routes"][promotion.value] == {"chain": ["big", "small"]}
    path = tmp_path / "yoyu.toml"
    path.write_text(CONFIG, encoding="utf-8")
    apply_promotion(path, promotion)
    written = path.read_text(encoding="utf-8")
    document = parse(written, tmp_path)
    assert document["aliases"]["coder"] == promotion.value
    assert document["served"]["big"] == {"backend": "local", "path": "/m/big.gguf"}
    assert "# keep me" in written and "# top comment" in written
    assert f'coder = "{promotion.value}"   # old' in written  # only the value changed
    undo_promotion(path, promotion)
    assert path.read_text(encoding="utf-8") == CONFIG  # comments and spacing too


def test_a_new_alias_and_no_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "yoyu.toml"
    promotion = plan_promotion({}, "coder", "big", Path("/m/big.gguf"), block="m2")
    assert promotion.fallback is None and promotion.value == "big"
    assert set(promotion.tables) == {"served", "backends"}  # a llama.cpp backend is added
    apply_promotion(path, promotion)
    assert load_toml(path)["aliases"] == {"coder": "big"}
    undo_promotion(path, promotion)
    assert load_toml(path) in ({}, {"aliases": {}})


def test_an_inline_aliases_table_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "yoyu.toml"
    text = 'aliases = { coder = "small" }\n' + CONFIG.split("[aliases]")[0]
    path.write_text(text, encoding="utf-8")
    promotion = plan_promotion(parse(text, tmp_path), "coder", "big", Path("/b.gguf"), block="m3")
    with pytest.raises(ConfigError, match="by hand"):
        apply_promotion(path, promotion)
    assert path.read_text(encoding="utf-8") == text


def test_from_names_nothing_known() -> None:
    with pytest.raises(ConfigError, match="--from nowhere"):
        plan_promotion({}, "coder", "big", Path("/b.gguf"), source="nowhere")


def test_text_edits() -> None:
    assert set_alias("", "a", "x") == '[aliases]\na = "x"\n'
    assert set_alias("k = 1", "a", "x") == 'k = 1\n\n[aliases]\na = "x"\n'
    text = '[aliases]\n"my alias" = "x"\n[other]\nk = 1\n'
    assert set_alias(text, "my alias", "y") == '[aliases]\n"my alias" = "y"\n[other]\nk = 1\n'
    assert set_alias(text, "my alias", None) == "[aliases]\n[other]\nk = 1\n"
    block = append_block("a = 1", "b1", "[x]\nk = 1\n")
    assert block == "a = 1\n\n# >>> yoyu migrate b1\n[x]\nk = 1\n# <<< yoyu migrate b1\n"
    assert remove_block(block, "b1") == "a = 1\n"
    assert remove_block(block, "other") == block


def test_from_a_model_file_or_a_route_becomes_the_fallback(tmp_path: Path) -> None:
    old = tmp_path / "old.gguf"
    old.write_bytes(b"GGUF")
    document = parse(CONFIG + '\n[routes.pair]\nchain = ["small", "other"]\n', tmp_path)
    by_file = plan_promotion(document, "coder", "big", Path("/b.gguf"), source=str(old))
    assert by_file.fallback == "old"
    assert by_file.tables["served"]["old"] == {"backend": "local", "path": str(old)}
    assert by_file.tables["routes"][by_file.value] == {"chain": ["big", "old"]}
    by_route = plan_promotion(document, "coder", "big", Path("/b.gguf"), source="pair")
    assert by_route.tables["routes"][by_route.value] == {"chain": ["big", "small", "other"]}
    assert by_route.previous == "small"  # what --rollback puts back
