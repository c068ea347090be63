"""``yoyu profile --compare A.toml B.toml``: alternated runs with the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_run_cli import YoyuCli

from yoyu.testing.tiny_models import TinyModel, write_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("profile-models") / "tiny.gguf")


@pytest.mark.slow
def test_profile_compares_two_settings_files(
    tiny: TinyModel, tmp_path: Path, yoyu_cli: YoyuCli
) -> None:
    small, large = tmp_path / "small.toml", tmp_path / "large.toml"
    small.write_text("ctx = 256\nbatch = 64\n", encoding="utf-8")
    large.write_text("ctx = 4096\nbatch = 64\n", encoding="utf-8")
    code, out, _ = yoyu_cli("profile", str(tiny.path), "--compare", str(small), str(large),
        "--repeat", "1", "--max-tokens", "4", "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["labels"] == ["small", "large"]
    assert [(run["label"], run["repeat"]) for run in data["runs"]] == [("small", 0), ("large", 0)]
    assert len({run["run_id"] for run in data["runs"]}) == 2  # each run loaded afresh
    peak = next(
        d for d in data["differences"]
        if d["phase"] == "loaded" and d["metric"] == "process_anon_bytes"
    )  # fmt: skip
    # 4096 cells of KV cache instead of 256: llama.cpp allocates more anonymous memory
    assert peak["delta"] > 0
    assert peak["exceeds_noise"] is None  # one run a side: no noise estimate
    code, out, _ = yoyu_cli("runs", "--json")
    assert [run["mode"] for run in json.loads(out)[:2]] == ["profile", "profile"]


def test_profile_needs_two_files(tiny: TinyModel, yoyu_cli: YoyuCli) -> None:
    code, _, err = yoyu_cli("profile", str(tiny.path))
    assert code == 2 and "--compare A.toml B.toml" in err


def test_a_bad_settings_file_is_one_line(
    tiny: TinyModel, tmp_path: Path, yoyu_cli: YoyuCli
) -> None:
    bad, good = tmp_path / "bad.toml", tmp_path / "good.toml"
    bad.write_text("kv_type = 'q9'\n", encoding="utf-8")
    good.write_text("ctx = 256\n", encoding="utf-8")
    code, _, err = yoyu_cli("profile", str(tiny.path), "--compare", str(bad), str(good))
    assert code == 2 and "bad.toml" in err and err.count("\n") == 1
