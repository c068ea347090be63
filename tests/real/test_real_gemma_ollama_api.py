"""The Ollama API on the real Gemma 3 270M behind a real ``yoyu serve``, driven by the
real ``ollama`` client: the answers a real vocabulary gives (whole and streamed agree
token for token), what ``show`` reads from the real header, JSON output held to a
schema, and ``keep_alive: 0`` ending the engine process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import ollama
import openai
import psutil
import pytest

from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.waiting import wait_until

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def gateway(real_gemma: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("gemma-ollama")
    config = folder / "yoyu.toml"
    config.write_text(
        f"""
[server]
memory_floor = 0

[backends.local]
kind = "llama.cpp"

[served.gemma]
backend = "local"
path = "{real_gemma}"
settings = {{ n_ctx = 2048 }}
""",
        encoding="utf-8",
    )
    with GatewayProcess(["--config", str(config)], log_path=folder / "serve.log") as server:
        yield server


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=gateway.url, timeout=300) as made:
        yield made


def test_gemma_answers_as_on_v1_and_a_stream_gives_the_same_tokens(
    client: ollama.Client, gateway: GatewayProcess
) -> None:
    """The 270M base model rambles; what matters is that /api and /v1 say the same."""
    whole = client.chat(model="gemma", messages=QUESTION, options=GREEDY)
    with openai.OpenAI(base_url=gateway.base_url, api_key="unused") as v1:
        same = v1.chat.completions.create(
            model="gemma", messages=QUESTION, temperature=0, max_tokens=GREEDY["num_predict"]
        )
    assert whole.message.content and whole.message.content == same.choices[0].message.content
    assert same.usage is not None and whole.eval_count == same.usage.completion_tokens
    assert whole.prompt_eval_count == same.usage.prompt_tokens
    assert whole.done_reason == same.choices[0].finish_reason == "length"
    parts = list(client.chat(model="gemma", messages=QUESTION, options=GREEDY, stream=True))
    assert "".join(part.message.content or "" for part in parts) == whole.message.content
    assert parts[-1].eval_count == whole.eval_count
    generated = client.generate(model="gemma:latest", prompt=QUESTION[0]["content"], options=GREEDY)
    assert generated.response == whole.message.content  # /api/generate applies the template


def test_show_reads_the_real_header(client: ollama.Client) -> None:
    shown = client.show("gemma")
    assert shown.details is not None
    assert (shown.details.family, shown.details.quantization_level) == ("gemma3", "Q4_K_M")
    assert shown.details.parameter_size == "268.10M"
    assert shown.modelinfo is not None and shown.modelinfo["gemma3.context_length"] == 32768
    assert shown.template == ""  # this file carries no chat template (yoyu uses gemma's format)


def test_format_holds_the_answer_to_a_json_schema(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
    }
    asked = [{"role": "user", "content": "Name a city in Japan and its country as JSON."}]
    answer = client.chat(model="gemma", messages=asked, format=schema,
                         options={"temperature": 0, "num_predict": 64})  # fmt: skip
    parsed = json.loads(answer.message.content or "")
    assert set(parsed) == {"city", "country"} and all(isinstance(v, str) for v in parsed.values())


def test_keep_alive_zero_ends_gemmas_engine(client: ollama.Client, gateway: GatewayProcess) -> None:
    client.generate(model="gemma", prompt="")  # loads
    assert [m.model for m in client.ps().models] == ["gemma"]
    engines = gateway.engine_pids()
    assert engines
    assert client.chat(model="gemma", messages=[], keep_alive=0).done_reason == "unload"
    assert client.ps().models == []
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in engines), 30, "gemma to end")
