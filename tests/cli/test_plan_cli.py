"""``yoyu plan`` end to end: JSON that validates against the published schema,
exit codes (0 runs, 1 does not fit, 2 bad input) and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from yoyu.testing.hf_folders import LLAMA_3_2_1B, write_llama_folder
from yoyu.testing.sparse_models import write_sparse_model

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema" / "plan.schema.json"


def run_plan(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YOYU_HOME": str(home / "yoyu"), "HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "yoyu", "plan", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def plan_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    return data


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("sparse")
    names = ("llama-3.1-8b-q4_k_m", "qwen2.5-32b-q4_k_m", "kimi-k2-q4_k_m")
    return {name: str(write_sparse_model(folder, name, tokenizer=False).paths[0]) for name in names}


@pytest.mark.slow
def test_fitting_plan_is_schema_valid_json_and_exit_0(
    models: dict[str, str], isolated_home: Path
) -> None:
    model = models["llama-3.1-8b-q4_k_m"]
    result = run_plan(model, "--machine", "linux-rtx5060ti-16g", "--ctx", "8192", "--json",
                      "--emit", "llama-server", home=isolated_home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = plan_json(result)
    assert (data["verdict"], data["n_gpu_layers"], data["ctx"]) == ("FITS", 33, 8192)
    assert data["emit"]["argv"][:3] == ["llama-server", "-m", model]
    assert "-ngl" in data["emit"]["argv"] and data["llama_fit_params"] is None


@pytest.mark.slow
def test_plan_that_does_not_fit_exits_1_with_moves(
    models: dict[str, str], isolated_home: Path
) -> None:
    result = run_plan(models["qwen2.5-32b-q4_k_m"], "--machine", "mac-studio-m2-max-32g",
                      "--free", "11GiB", "--json", home=isolated_home)  # fmt: skip
    assert result.returncode == 1, result.stderr
    data = plan_json(result)
    assert data["verdict"] == "DOES_NOT_FIT" and data["risk"] == "abort"
    assert data["moves"][-1]["action"] == "remote"


@pytest.mark.slow
def test_cluster_plan_with_rpc_commands(models: dict[str, str], isolated_home: Path) -> None:
    node = "mac-studio-m3-ultra-512g"
    result = run_plan(models["kimi-k2-q4_k_m"], "--node", node, "--node", node, "--ctx", "4096",
                      "--emit", "rpc", "--json", home=isolated_home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = plan_json(result)
    assert data["verdict"] == "NEEDS_CLUSTER"
    assert [(n["first_layer"], n["last_layer"]) for n in data["nodes"]] == [(0, 30), (31, 60)]
    head = data["emit"]["commands"][-1]["argv"]
    assert head[head.index("-ts") + 1] == "31,31"  # 31 worker blocks; 30 head blocks + output


@pytest.mark.slow
def test_human_output_shows_devices_verdict_and_speed(
    models: dict[str, str], isolated_home: Path
) -> None:
    result = run_plan(models["llama-3.1-8b-q4_k_m"], "--machine", "linux-rtx5060ti-16g",
                      "--ctx", "8192", home=isolated_home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for fragment in ("Verdict FITS", "risk safe", "CUDA0", "KV cache", "1024.00 MiB", "tok/s"):
        assert fragment in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--ctx", "-1"), "ctx must be 0"),
        (("--free", "-5GiB"), "--free must not be negative"),
        (("--free", "lots"), "is not a size"),
        (("--machine", "no-such-box"), "unknown machine preset"),
        (("--emit", "nothing"), "unknown --emit"),
        (("--emit", "rpc"), "needs a cluster plan"),
        (("--kv-type", "q3_x"), "not a KV cache type"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: tuple[str, ...], fragment: str, models: dict[str, str], isolated_home: Path
) -> None:
    result = run_plan(models["llama-3.1-8b-q4_k_m"], "--machine", "linux-rtx5060ti-16g", *args,
                      home=isolated_home)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]


@pytest.mark.slow
def test_help_lists_json(isolated_home: Path) -> None:
    result = run_plan("--help", home=isolated_home)
    assert result.returncode == 0 and "--json" in result.stdout


def test_llama_fit_puts_llama_cpps_own_figures_beside_the_plan(
    built_fit_params: Path, real_gemma: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{built_fit_params.parent}{os.pathsep}{os.environ['PATH']}")
    args = (str(real_gemma), "--ctx", "4096", "--engine", "llama-server", "--compare-fit")
    result = run_plan(*args, "--json", home=isolated_home)
    assert result.returncode == 0, result.stderr
    data = plan_json(result)
    peer = data["llama_fit_params"]
    (host,) = peer["estimate"]["devices"]
    cpu = next(device for device in data["devices"] if device["name"] == "CPU")
    assert host["device"] == "CPU" and host["context_bytes"] // 2**20 == cpu["kv_bytes"] // 2**20
    assert peer["fit"]["fits"] and peer["fit"]["printed"].startswith("-c 4096 -ngl")
    shown = run_plan(*args, home=isolated_home)
    assert "llama.cpp's own estimate" in shown.stdout and "llama.cpp's fit -c 4096" in shown.stdout


def test_llama_fit_without_the_program_is_one_line_and_exit_2(
    real_gemma: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{Path(sys.executable).parent}")
    result = run_plan(str(real_gemma), "--compare-fit", home=isolated_home)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "yoyu engine install" in result.stderr


def test_a_vllm_plan_of_a_folder_sizes_the_pool_and_emits_it(
    tmp_path: Path, isolated_home: Path
) -> None:
    """`yoyu plan FOLDER --engine vllm`: a pool too big for the memory given is the move
    taken, the JSON (schema-checked) and the emitted command carry the pool it chose."""
    folder = write_llama_folder(tmp_path / "llama-3.2-1b", LLAMA_3_2_1B)
    flags = ["--engine", "vllm", "--machine", "linux-cpu-32g", "--free", "10GiB",
             "--ctx", "8192", "--kv-cache-memory", "8GiB"]  # fmt: skip
    result = run_plan(str(folder), *flags, "--json", "--emit", "vllm", home=isolated_home)
    assert result.returncode == 0, result.stderr
    data = plan_json(result)
    assert data["verdict"] == "FITS_WITH_CHANGES" and data["applied_move"]["action"] == "kv_pool"
    pool = data["applied_move"]["settings_change"]["kv_cache_bytes"]
    argv = data["emit"]["argv"]
    assert argv[argv.index("--kv-cache-memory-bytes") + 1] == str(pool) and pool < 8 * 1024**3
    human = run_plan(str(folder), *flags, home=isolated_home)
    assert "max_model_len 8192 · KV auto · pool" in human.stdout
    assert "flash attention" not in human.stdout
