"""Hostile request bodies against a live `yoyu serve` (hypothesis): whatever the body,
the answer is a 200 or a 4xx in OpenAI's error shape naming the parameter, never a 5xx,
a traceback or a local path, and a refused body never reaches the upstream.

The upstream is the recording OpenAI stub on loopback, so every request that got through
is counted; the gateway runs as a real process with one served model and one alias.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yoyu.errors import BadRequestError
from yoyu.gateway.wire import chat_request
from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour

pytestmark = pytest.mark.slow

LEAKS = ("Traceback", 'File "', "/tmp/", "/work/", "site-packages", "/home/", "/root/")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "robot", ""]) | JSON},
    optional={"content": st.text(max_size=60) | JSON, "name": JSON, "tool_calls": JSON},
)
FIELDS = {
    "model": st.sampled_from(["stub", "alias", "nope", ""]) | JSON,
    "messages": st.lists(MESSAGE, max_size=3) | JSON,
    "prompt": st.text(max_size=60) | st.lists(st.integers(-5, 2**40), max_size=4) | JSON,
    "input": st.text(max_size=40) | st.lists(st.text(max_size=10), max_size=3) | JSON,
    "max_tokens": st.integers(-3, 2**40) | JSON, "temperature": st.floats() | JSON,
    "top_p": st.floats() | JSON, "stream": st.booleans() | JSON, "stop": JSON, "seed": JSON,
    "n": JSON, "tools": JSON, "stream_options": JSON, "response_format": JSON,
}  # fmt: skip
VALID = {
    "/v1/chat/completions": {"model": "stub", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "stub", "prompt": "hi"},
    "/v1/embeddings": {"model": "stub", "input": "hi"},
}


def bodies(path: str) -> st.SearchStrategy[object]:
    """A valid body with some fields changed or added, or anything at all."""
    changes = st.fixed_dictionaries({}, optional=FIELDS)
    mutated = changes.map(lambda change: {**VALID[path], **change})
    return mutated | changes | JSON


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIStub]:
    with OpenAIStub(StubBehaviour(models=("stub-model",))) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: OpenAIStub
) -> Iterator[GatewayProcess]:
    folder: Path = tmp_path_factory.mktemp("hostile")
    config = folder / "yoyu.toml"
    config.write_text(
        f"[server]\nmax_body_bytes = 65536\ncooldown_s = 0\nhealth_interval_s = 3600\n"
        f'[backends.up]\nkind = "openai"\nbase_url = "{upstream.base_url}"\n'
        f'models = ["stub-model"]\nremote = false\n'
        f'[served.stub]\nbackend = "up"\nupstream = "stub-model"\n'
        f'[aliases]\nalias = "stub"\n',
        encoding="utf-8",
    )
    with GatewayProcess(["--config", str(config)], log_path=folder / "serve.log") as server:
        yield server


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_any_body_gets_a_clean_answer_and_a_refused_one_reaches_nothing(
    gateway: GatewayProcess, upstream: OpenAIStub, path: str
) -> None:
    statuses: list[int] = []
    with httpx.Client(base_url=gateway.url, timeout=30) as client:

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
        @given(body=bodies(path))
        def check(body: object) -> None:
            before = len(upstream.generation_requests())
            response = client.post(path, content=json.dumps(body).encode(),
                                   headers={"Content-Type": "application/json"})  # fmt: skip
            assert response.status_code == 200 or 400 <= response.status_code < 500, (
                body, response.status_code, response.text[:300],
            )  # fmt: skip
            statuses.append(response.status_code)
            text = response.text
            assert not any(leak in text for leak in LEAKS), (body, text[:300])
            if response.status_code == 200:
                return
            error = response.json()["error"]
            assert error["message"] and error["type"], body
            if response.status_code in (400, 422):
                assert error["param"] or (response.status_code == 400 and _named(error)), body
            assert len(upstream.generation_requests()) == before, body  # nothing went through

        check()
    assert 200 in statuses and any(400 <= status < 500 for status in statuses)


def _named(error: dict[str, object]) -> bool:
    """A refusal of the whole body (not an object, not JSON) names what it wanted."""
    message = str(error["message"])
    return "JSON" in message or "object" in message or "body" in message


@pytest.mark.parametrize("role", [[], {}, 3, None, "robot"])
def test_a_role_that_is_not_a_role_name_is_refused_with_its_parameter(role: object) -> None:
    """Found by the fuzzing above: a list as a role was a 500 (unhashable in the role set)."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}, {"role": role}]}
    with pytest.raises(BadRequestError, match="is not a role") as refused:
        chat_request(body)
    assert refused.value.param == "messages[1].role"
