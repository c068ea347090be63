from __future__ import annotations

import pytest

from yoyu.units import GIB, MIB, format_bytes, format_count, format_mib


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.50 KiB"),
        (685 * MIB + 314573, "685.30 MiB"),
        (int(4.58 * GIB), "4.58 GiB"),
        (-2 * GIB, "-2.00 GiB"),
        (1024**4 * 3, "3.00 TiB"),
        (None, "-"),
    ],
)
def test_format_bytes_matches_llama_cpp_style(n_bytes: int | None, text: str) -> None:
    assert format_bytes(n_bytes) == text


def test_format_mib_always_uses_mib() -> None:
    assert format_mib(3 * GIB) == "3072.00 MiB"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (8_030_261_248, "8.03B"),
        (671_026_419_200, "671B"),
        (1_026_000_000_000, "1.03T"),
        (999, "999"),
    ],
)
def test_format_count(count: int, text: str) -> None:
    assert format_count(count) == text
