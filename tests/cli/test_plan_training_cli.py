"""``yoyu plan MODEL --train``: JSON, exit codes (0 runs, 1 does not fit, 2 bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from test_plan_cli import SCHEMA_PATH, run_plan

from yoyu.testing.hf_folders import LLAMA_3_2_1B, write_llama_folder

TRAINING_SCHEMA = json.loads(
    (SCHEMA_PATH.parent / "training_plan.schema.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_llama_folder(tmp_path_factory.mktemp("l1b"), LLAMA_3_2_1B))


@pytest.mark.slow
def test_training_plan_json_on_a_preset(folder: str, isolated_home: Path) -> None:
    result = run_plan(folder, "--train", "lora", "--targets", "q,k,v,o", "--seq", "1024",
                      "--machine", "linux-rtx4090-24g", "--json", home=isolated_home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    jsonschema.validate(data, TRAINING_SCHEMA)
    assert (data["kind"], data["verdict"], data["device"]) == ("training", "FITS", "CUDA0")
    assert data["settings"]["targets"] == ["q", "k", "v", "o"]
    assert data["components"]["logits_bytes"] == 12 * 128256 * 1024


@pytest.mark.slow
def test_nothing_fits_exits_1_and_a_move_that_fits_is_adopted(isolated_home: Path) -> None:
    result = run_plan("llama3.1:70b", "--train", "lora", "--machine", "linux-cpu-32g",
                      home=isolated_home)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "DOES_NOT_FIT" in result.stdout and "RAM needs" in result.stdout
    moved = run_plan("llama3.1:8b", "--train", "lora", "--seq", "4096", "--batch", "4",
                     "--machine", "linux-rtx4090-24g", "--json", home=isolated_home)  # fmt: skip
    data = json.loads(moved.stdout)
    jsonschema.validate(data, TRAINING_SCHEMA)
    assert moved.returncode == 0 and data["applied_move"]["resulting_verdict"] == "FITS"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--train", "lora", "--rank", "0"), "--rank must be 1 or more, not 0"),
        (("--train", "lora", "--targets", "q,qkv"), "unknown --targets value 'qkv'"),
        (("--train", "dora"), "unknown --train value 'dora'"),
        (("--rank", "8"), "--rank plans fine-tuning; add --train lora|qlora"),
        (("--train", "lora", "--emit", "ollama"), "--emit plans inference"),
    ],
)
def test_bad_training_input_is_one_line_and_exit_2(
    folder: str, isolated_home: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_plan(folder, *args, "--machine", "linux-cpu-32g", home=isolated_home)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
