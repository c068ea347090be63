"""``yoyu run`` end to end with the real managed engine on a tiny model: the JSON
contract, the streamed answer and profile table, the plot, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from yoyu.testing.tiny_models import TinyModel, write_tiny_model

YoyuCli = Callable[..., tuple[int, str, str]]  # the yoyu_cli fixture (tests/conftest.py)

PHASES = ("baseline", "loaded", "pre_generation", "peak", "post_generation", "stabilized")
PHASE_KEYS = {"t_s", "system_available_bytes", "swap_used_bytes", "process_rss_bytes",
              "gpu_used_bytes"}  # fmt: skip
SMALL = ["--ctx", "256", "--batch", "64", "--max-tokens", "6", "--seed", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("cli-models") / "tiny.gguf")


@pytest.mark.slow
def test_run_json_keeps_the_contract(tiny: TinyModel, yoyu_cli: YoyuCli) -> None:
    code, out, _ = yoyu_cli("run", str(tiny.path), "Say hi", *SMALL, "--json")
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    assert {"text", "usage", "speed", "phases", "stabilize_s", "predicted", "run_id"} <= set(data)
    assert set(data["usage"]) >= {"prompt_tokens", "completion_tokens"}
    assert data["usage"]["completion_tokens"] > 0 and data["usage"]["prompt_tokens"] > 0
    assert set(data["speed"]) >= {"prefill_tps", "decode_tps"}
    assert tuple(data["phases"]) == PHASES
    for phase in PHASES:
        assert set(data["phases"][phase]) >= PHASE_KEYS, phase
        assert {"process_anon_bytes", "process_file_bytes", "process_swap_bytes"} <= set(
            data["phases"][phase]
        )
    rss = {phase: data["phases"][phase]["process_rss_bytes"] for phase in PHASES}
    assert rss["peak"] >= rss["loaded"] > rss["baseline"]
    assert data["stabilize_s"] >= 0
    assert data["predicted"]["total_bytes"] > 0 and "kv_bytes" in data["predicted"]
    assert isinstance(data["run_id"], int)
    assert data["settings"]["n_ctx"] == 256


@pytest.mark.slow
def test_run_streams_then_prints_the_profile_and_plots(
    tiny: TinyModel, tmp_path: Path, yoyu_cli: YoyuCli
) -> None:
    png = tmp_path / "run.png"
    code, out, err = yoyu_cli("run", str(tiny.path), "Say hi", *SMALL, "--plot", str(png))
    assert code == 0
    assert "Memory by phase (MiB)" in out and "Predicted vs measured" in out
    for label in ("baseline", "loaded", "pre-gen", "peak", "post-gen", "settled", "predicted"):
        assert label in out
    assert " MiB" in out and "peak RSS" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "timeline drawn" in err
    engines = [p for p in psutil.Process().children(recursive=True) if "llama_cpp" in " ".join(
        p.cmdline())]  # fmt: skip
    assert engines == []  # nothing left running


def test_a_missing_model_is_one_line_and_exit_2(tmp_path: Path, yoyu_cli: YoyuCli) -> None:
    code, out, err = yoyu_cli("run", str(tmp_path / "absent.gguf"), "hi")
    assert code == 2 and out == ""
    assert err.startswith("error: no model") and err.count("\n") == 1


def test_a_garbage_gguf_is_one_line_and_exit_2(tmp_path: Path, yoyu_cli: YoyuCli) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a model at all " * 100)
    code, _, err = yoyu_cli("run", str(garbage), "hi", "--json")
    assert code == 2
    assert "garbage.gguf" in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_model_the_engine_refuses_is_one_line_exit_2_and_stored(
    tiny: TinyModel, tmp_path: Path, yoyu_cli: YoyuCli
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(
        tiny.path.read_bytes().replace(b"llama.embedding_length", b"llama.embedding_lengtx")
    )
    code, _, err = yoyu_cli("run", str(broken), "hi", *SMALL)
    assert code == 2 and err.count("\n") == 1 and "could not serve" in err
    code, out, _ = yoyu_cli("runs", "--json")
    assert code == 0
    assert "error" in json.loads(out)[0]["result"]


@pytest.mark.slow
def test_a_run_that_outgrows_the_guard_budget_is_stopped_with_the_guards_reason(
    tiny: TinyModel, yoyu_cli: YoyuCli
) -> None:
    # The engine alone holds ~80 MiB; the plan refuses a 32 MiB budget before it starts...
    code, _, err = yoyu_cli("run", str(tiny.path), "Say hi", *SMALL, "--budget", "32MiB")
    assert code == 1
    assert "does not fit" in err and "32.00 MiB free (given)" in err
    # ...and forced past the plan, the guard stops it.
    code, _, err = yoyu_cli("run", str(tiny.path), "Say hi", *SMALL, "--budget", "32MiB", "--force")
    assert code == 75
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: the guard stopped the model:")
    assert "floor" in lines[-1]
    engines = [
        p for p in psutil.Process().children(recursive=True) if "llama_cpp" in " ".join(p.cmdline())
    ]
    assert engines == []


def test_no_guard_and_a_budget_contradict(tiny: TinyModel, yoyu_cli: YoyuCli) -> None:
    code, _, err = yoyu_cli("run", str(tiny.path), "hi", *SMALL, "--no-guard", "--budget", "1GiB")
    assert code == 2
    assert err.strip() == "error: --budget sets the guard's budget; drop --no-guard to use it"
