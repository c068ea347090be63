"""The real Gemma 3 270M through the commands a user types: one answer from ``plan`` and
``run`` for the same settings, real text from ``run``, ``chat`` and ``yoyu serve``'s
``/v1/completions`` (the real ``openai`` client), the missing chat template named, and a
context the machine cannot hold refused by the plan (exit 1) before any engine starts."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest

from yoyu.testing.gateway_process import GatewayProcess

YoyuCli = Callable[..., tuple[int, str, str]]  # the yoyu_cli fixture (tests/conftest.py)

pytestmark = pytest.mark.slow

SMALL = ["--ctx", "2048", "--max-tokens", "24", "--seed", "1", "--temperature", "0"]


def test_plan_and_run_give_one_answer(real_gemma: Path, yoyu_cli: YoyuCli) -> None:
    code, out, _ = yoyu_cli("plan", str(real_gemma), "--ctx", "2048", "--json")
    assert code == 0
    plan: dict[str, Any] = json.loads(out)
    code, out, _ = yoyu_cli("run", str(real_gemma), "The sky is", *SMALL, "--json")
    assert code == 0
    run: dict[str, Any] = json.loads(out)
    assert run["predicted"]["total_bytes"] == plan["totals"]["total_bytes"]
    assert run["predicted"]["kv_bytes"] == plan["totals"]["kv_bytes"]
    assert plan["settings"]["engine"] == "llama-cpp-python"  # the engine yoyu run starts here
    # real text, and the file's missing template named with the format used instead
    assert run["text"].strip() and run["usage"]["completion_tokens"] > 0
    assert any("no chat template" in notice and "'gemma'" in notice for notice in run["notices"])


def test_each_engine_has_its_own_figures(real_gemma: Path, yoyu_cli: YoyuCli) -> None:
    def kv_mib(*flags: str) -> float:
        code, out, _ = yoyu_cli("plan", str(real_gemma), "--ctx", "32768", *flags, "--json")
        assert code == 0
        return float(json.loads(out)["totals"]["kv_bytes"]) / 1024**2

    # llama-cpp-python's server asks for the full-size sliding-window cache; llama-server not
    assert kv_mib("--engine", "llama-cpp-python") == 576.0
    assert kv_mib("--engine", "llama-server") == 111.0
    _, out, _ = yoyu_cli("plan", str(real_gemma), "--ctx", "32768", "--logits-all",
                     "--free", "64GiB", "--json")  # fmt: skip
    engine_gib = json.loads(out)["totals"]["engine_bytes"] / 1024**3
    assert engine_gib == 32.0  # 32768 tokens x 262,144 float32 logits


def test_a_context_the_budget_cannot_hold_is_refused_before_the_engine(
    real_gemma: Path, yoyu_cli: YoyuCli
) -> None:
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    code, out, err = yoyu_cli("run", str(real_gemma), "hello", "--ctx", "32768", "--budget", "1GiB")
    assert code == 1  # as yoyu plan: understood, and it does not fit
    assert out == ""
    assert "does not fit" in err and "at ctx 32768" in err and "1.44 GiB" in err
    assert len(err.strip().splitlines()) == 1
    after = {child.pid for child in psutil.Process().children(recursive=True)}
    assert after <= before  # no engine was started


def test_chat_answers_with_real_text(
    real_gemma: Path, yoyu_cli: YoyuCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Tell me about the sea.\nAnd the sky?\n"))
    code, out, _ = yoyu_cli("chat", str(real_gemma), *SMALL, "--json")
    assert code == 0
    turns = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(turns) == 2
    assert all(turn["text"].strip() for turn in turns)
    assert turns[1]["usage"]["prompt_tokens"] > turns[0]["usage"]["prompt_tokens"]


def test_serve_completes_real_text(real_gemma: Path, tmp_path: Path) -> None:
    with GatewayProcess(["--model", f"{real_gemma}=gemma"], log_path=tmp_path / "serve.log") as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused")
        completion = client.completions.create(
            model="gemma", prompt="The capital of France is", max_tokens=12, temperature=0
        )
        chat = client.chat.completions.create(
            model="gemma", messages=[{"role": "user", "content": "Hi!"}], max_tokens=12
        )
    assert completion.choices[0].text.strip()
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert chat.choices[0].message.content and chat.choices[0].message.content.strip()
