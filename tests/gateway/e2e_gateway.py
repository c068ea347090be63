"""The gateway that ``test_serve_e2e`` and ``test_ollama_api_e2e`` both drive, written once.

Behind it: the managed llama.cpp backend with two tiny GGUF models (a budget that
holds one of them, by the plan's own estimate), a loopback stub playing a remote
API, and a backend whose port nobody listens on. Each module adds its own served
models (an embedding model, one too big to load) through ``tiny_b_settings`` and
``extra_served``.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from yoyu.estimate.engine import LLAMA_CPP_PYTHON
from yoyu.gateway.config import ServedModel
from yoyu.gateway.sizing import PlanSizer
from yoyu.testing.gateway_process import GatewayProcess, free_port
from yoyu.testing.openai_stub import OpenAIStub
from yoyu.testing.tiny_models import write_tiny_model

LOAD_SETTINGS = {"n_ctx": 256, "n_batch": 64, "n_ubatch": 64, "seed": 1}
SETTINGS = "{ " + ", ".join(f"{key} = {value}" for key, value in LOAD_SETTINGS.items()) + " }"


def write_config(
    folder: Path, stub: OpenAIStub, *, tiny_b_settings: str = SETTINGS, extra_served: str = ""
) -> Path:
    """``folder/yoyu.toml`` serving tiny, tiny-b, dead, cloud and cloud-secret; the models
    are written beside it."""
    tiny_a = write_tiny_model(folder / "tiny-a.gguf").path
    tiny_b = write_tiny_model(folder / "tiny-b.gguf").path
    model = ServedModel("tiny", "local", path=tiny_a, settings=LOAD_SETTINGS)
    need = PlanSizer().size(model, LLAMA_CPP_PYTHON).need_bytes
    config = folder / "yoyu.toml"
    config.write_text(
        f"""
[server]
memory_floor = 0
memory_budget = {need * 3 // 2}
max_body_bytes = 65536
cooldown_s = 30
health_interval_s = 3600

[backends.local]
kind = "llama.cpp"
start_timeout_s = 60
stop_grace_s = 5

[backends.down]
kind = "openai"
base_url = "http://127.0.0.1:{free_port()}/v1"
models = ["gone"]
remote = false

[backends.cloud]
kind = "openai"
base_url = "{stub.base_url}"
models = ["stub-model"]
remote = true

[served.tiny]
backend = "local"
path = "{tiny_a}"
settings = {SETTINGS}

[served.tiny-b]
backend = "local"
path = "{tiny_b}"
settings = {tiny_b_settings}
{extra_served.format(tiny_b=tiny_b)}
[served.dead]
backend = "down"
upstream = "gone"

[served.cloud]
backend = "cloud"
upstream = "stub-model"

[served.cloud-secret]
backend = "cloud"
upstream = "stub-model"
private = true

[aliases]
coder = "tiny"

[routes]
resilient = ["dead", "tiny"]
""",
        encoding="utf-8",
    )
    return config


def metric(gateway: GatewayProcess, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` on ``/metrics`` carrying ``labels``."""
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition(" ")[0]))
        if line.partition("{")[0].split(" ")[0] == name and labels.items() <= found.items():
            return float(line.rsplit(" ", 1)[1])
    return None
