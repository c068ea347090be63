"""``yoyu soak`` with the real engine: settled points per turn, a verdict, durations."""

from __future__ import annotations

import json

import pytest
from test_run_cli import YoyuCli

from yoyu.testing.tiny_models import TinyModel, write_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("soak-models") / "tiny.gguf")


@pytest.mark.slow
def test_a_short_soak_gives_points_and_a_verdict(tiny: TinyModel, yoyu_cli: YoyuCli) -> None:
    code, out, _ = yoyu_cli(
        "soak", str(tiny.path), "--duration", "2s", "--ctx", "512", "--batch", "64",
        "--max-tokens", "4", "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == (1 if data["leak"]["verdict"] == "leak" else 0)
    points = data["points"]
    assert len(points) >= 4  # at least the minimum, even when the duration runs out first
    assert [p["turn"] for p in points] == list(range(len(points)))
    times = [p["t_s"] for p in points]
    assert times == sorted(times)
    assert all(p["growth_bytes"] > 0 and p["rss_bytes"] >= p["growth_bytes"] for p in points)
    assert data["leak"]["verdict"] in ("leak", "no_leak", "inconclusive")
    assert data["leak"]["n_points"] == len(points)
    code, out, _ = yoyu_cli("runs", "show", str(data["run_id"]), "--json")
    assert json.loads(out)["mode"] == "soak"


def test_a_bad_duration_is_one_line(tiny: TinyModel, yoyu_cli: YoyuCli) -> None:
    code, _, err = yoyu_cli("soak", str(tiny.path), "--duration", "ten minutes")
    assert code == 2 and "30s, 10m or 1h" in err
