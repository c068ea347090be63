"""OllamaBackend against the fake Ollama (real HTTP on 127.0.0.1, Ollama's documented
answers): Ollama itself cannot run here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from yoyu.backends.ollama import OllamaBackend, PullProgress, PullResult, ollama_name
from yoyu.backends.openai_http import HttpTimeouts
from yoyu.backends.protocol import (
    Backend,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ModelRef,
    summarize_stream,
)
from yoyu.backends.registry import create_backend
from yoyu.errors import (
    BackendCrashedError,
    BackendRequestError,
    BackendStartError,
    BackendTimeoutError,
    BackendUnavailableError,
    SettingsError,
)
from yoyu.testing.fake_ollama import FakeOllama

HELLO = (ChatMessage("user", "Say hello."),)
REPLY = "Hello there from the fake"


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        server.install("llama3.2", size=2_000_000_000)
        server.install("qwen2.5-coder:7b", size=4_700_000_000)
        server.reply(REPLY)
        yield server


@pytest.fixture
def backend(fake: FakeOllama) -> Iterator[OllamaBackend]:
    made = OllamaBackend(base_url=fake.base_url, timeouts=HttpTimeouts(connect_s=2, read_s=5))
    yield made
    made.close()


def test_is_a_backend_registered_as_ollama_and_honours_ollama_host(
    fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake.base_url.removeprefix("http://"))
    made = create_backend("ollama", name="home")
    try:
        checked: Backend = made
        assert isinstance(checked, Backend)
        assert isinstance(made, OllamaBackend)
        assert made.name == "home" and made.base_url == fake.base_url
        assert made.remote is False
        assert made.health().ok and made.health().detail == "Ollama 0.12.6"
    finally:
        made.close()
    default, lan = OllamaBackend(environ={}), OllamaBackend(base_url="http://gpu-box.lan:11434")
    assert default.base_url == "http://127.0.0.1:11434" and default.remote is False
    assert lan.remote is True
    default.close()
    lan.close()


def test_health_of_nothing_listening_is_not_ok() -> None:
    backend = OllamaBackend(base_url="http://127.0.0.1:9", timeouts=HttpTimeouts(connect_s=1))
    health = backend.health()
    backend.close()
    assert not health.ok and "refused" in health.detail


@pytest.mark.slow
def test_installed_and_loaded_models_come_from_tags_and_ps(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    assert {(m.id, m.loaded, m.size_bytes) for m in backend.list_models()} == {
        ("llama3.2:latest", False, 2_000_000_000),
        ("qwen2.5-coder:7b", False, 4_700_000_000),
    }
    assert backend.loaded_models() == []

    loaded = backend.load(ModelRef("llama3.2"), {"n_ctx": 4096, "num_gpu": 0})

    assert loaded.id == "llama3.2" and loaded.backend == "ollama"
    assert loaded.size_bytes == 2_000_000_000 + 4096 * 4096  # the fake's size grows with num_ctx
    assert loaded.vram_bytes == 0  # num_gpu 0: nothing on a GPU
    assert loaded.load_s is not None and loaded.load_s > 0
    (load_request,) = fake.requests_to("/api/chat")
    assert load_request.body["messages"] == []
    assert load_request.body["options"] == {"num_ctx": 4096, "num_gpu": 0}
    listed = {m.id: m.loaded for m in backend.list_models()}
    assert listed == {"llama3.2:latest": True, "qwen2.5-coder:7b": False}
    (resident,) = backend.loaded_models()
    assert resident.id == "llama3.2:latest" and resident.settings == {"num_ctx": 4096, "num_gpu": 0}


def test_requests_repeat_the_load_options_so_ollama_does_not_reload(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    backend.load(ModelRef("llama3.2"), {"num_ctx": 8192, "keep_alive": -1})
    backend.chat(ChatRequest("llama3.2", HELLO, max_tokens=3, temperature=0.0))
    list(backend.stream_complete(CompletionRequest("llama3.2", "Once")))

    chat, stream = fake.requests_to("/api/chat")[1], fake.requests_to("/api/generate")[0]
    assert chat.body["options"] == {"num_ctx": 8192, "num_predict": 3, "temperature": 0.0}
    assert chat.body["keep_alive"] == -1 and stream.body["keep_alive"] == -1
    assert stream.body["options"] == {"num_ctx": 8192}
    assert fake.reloads == 0

    # A client that forgets the options makes Ollama reload (this is what we avoid).
    backend._settings.clear()
    backend.chat(ChatRequest("llama3.2", HELLO))
    assert fake.reloads == 1


def test_chat_maps_counts_and_nanosecond_durations(backend: OllamaBackend) -> None:
    response = backend.chat(ChatRequest("llama3.2", HELLO, max_tokens=3))

    assert response.text == "Hello there from"
    assert response.finish_reason == "length"
    assert response.usage.prompt_tokens == 2 and response.usage.completion_tokens == 3
    timings = response.engine_timings
    assert timings is not None
    assert timings.decode_tokens == 3 and timings.decode_ms == pytest.approx(30.0)
    assert timings.prompt_ms == pytest.approx(2.0)
    assert timings.decode_tps == pytest.approx(100.0)
    assert response.raw["done"] is True


def test_stream_chat_yields_each_token_then_a_closing_chunk(backend: OllamaBackend) -> None:
    chunks = list(backend.stream_chat(ChatRequest("llama3.2", HELLO)))

    summary = summarize_stream(chunks)
    assert summary.text == REPLY
    assert summary.token_chunks == len(REPLY.split())
    assert summary.finish_reason == "stop"
    assert summary.usage is not None and summary.usage.completion_tokens == 5
    assert chunks[-1].content is None and chunks[-1].engine_timings is not None
    assert [c.t_s for c in chunks] == sorted(c.t_s for c in chunks)


def test_completion_is_raw_generate_streamed_and_not(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    whole = backend.complete(CompletionRequest("llama3.2", "Once upon", seed=7, stop=("\n",)))
    streamed = summarize_stream(list(backend.stream_complete(CompletionRequest("llama3.2", "x"))))

    assert whole.text == streamed.text == REPLY
    first = fake.requests_to("/api/generate")[0].body
    assert first["raw"] is True and first["stream"] is False
    assert first["options"] == {"seed": 7, "stop": ["\n"]}


def test_extra_fields_go_where_ollama_expects_them(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    backend.chat(ChatRequest("llama3.2", HELLO, extra={"top_k": 20, "format": "json"}))
    body = fake.requests_to("/api/chat")[0].body
    assert body["options"] == {"top_k": 20}
    assert body["format"] == "json"


@pytest.mark.slow
def test_unload_waits_until_ps_no_longer_lists_the_model(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    backend.load(ModelRef("qwen2.5-coder:7b"), {})
    fake.linger_polls("qwen2.5-coder:7b", 3)
    polls_before = len(fake.requests_to("/api/ps"))

    backend.unload("qwen2.5-coder:7b")

    assert backend.loaded_models() == []
    assert fake.requests_to("/api/chat")[-1].body == {
        "model": "qwen2.5-coder:7b",
        "messages": [],
        "keep_alive": 0,
    }
    # one poll before the request, then three that still list it, then one that does not
    assert len(fake.requests_to("/api/ps")) - polls_before >= 4
    unloads = len(fake.requests_to("/api/chat"))
    backend.unload("qwen2.5-coder:7b")  # absent: a no-op, nothing sent
    assert len(fake.requests_to("/api/chat")) == unloads


@pytest.mark.slow
def test_an_unload_that_never_finishes_times_out(fake: FakeOllama) -> None:
    backend = OllamaBackend(base_url=fake.base_url, unload_timeout_s=0.2)
    try:
        backend.load(ModelRef("llama3.2"), {})
        fake.linger_polls("llama3.2", 10_000)
        with pytest.raises(BackendTimeoutError, match=r"still lists 'llama3\.2'"):
            backend.unload("llama3.2")
    finally:
        backend.close()


def test_loading_an_uninstalled_model_is_a_start_error_with_ollamas_words(
    backend: OllamaBackend,
) -> None:
    with pytest.raises(BackendStartError, match=r"404.*model 'mistral' not found"):
        backend.load(ModelRef("mistral"), {})


def test_unknown_load_settings_are_refused_before_anything_is_sent(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    with pytest.raises(SettingsError, match="no load setting 'flash_attn'"):
        backend.load(ModelRef("llama3.2"), {"flash_attn": True})
    assert fake.requests == []


def test_error_status_keeps_ollamas_message_and_status(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    fake.fail_next(500, "the model failed to generate a response", path="/api/chat")
    with pytest.raises(BackendRequestError, match="failed to generate") as raised:
        backend.chat(ChatRequest("llama3.2", HELLO))
    assert raised.value.status_code == 500
    with pytest.raises(BackendRequestError) as missing:
        backend.chat(ChatRequest("nope", HELLO))
    assert missing.value.status_code == 404


def test_an_error_line_mid_stream_raises_after_the_tokens_before_it(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    fake.error_mid_stream_after(2)
    received: list[str | None] = []
    with pytest.raises(BackendRequestError, match="error was encountered while running"):
        for chunk in backend.stream_chat(ChatRequest("llama3.2", HELLO)):
            received.append(chunk.content)
    assert received == ["Hello", " there"]


def test_a_server_dying_mid_stream_raises_instead_of_hanging(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    fake.die_mid_stream_after(1)
    with pytest.raises(BackendCrashedError):
        list(backend.stream_chat(ChatRequest("llama3.2", HELLO)))
    assert backend.health().ok  # the server itself is still there


def test_nothing_listening_is_unavailable() -> None:
    backend = OllamaBackend(base_url="http://127.0.0.1:9", timeouts=HttpTimeouts(connect_s=1))
    with pytest.raises(BackendUnavailableError):
        backend.chat(ChatRequest("llama3.2", HELLO))
    backend.close()


def test_show_returns_details_and_model_info(backend: OllamaBackend) -> None:
    shown = backend.show("llama3.2")
    assert shown["details"]["quantization_level"] == "Q4_K_M"
    assert shown["model_info"]["general.architecture"] == "llama"


def test_ollama_names_get_the_latest_tag() -> None:
    assert ollama_name("llama3.2") == "llama3.2:latest"
    assert ollama_name("qwen2.5-coder:7b") == "qwen2.5-coder:7b"
    assert ollama_name("hf.co/org/model") == "hf.co/org/model:latest"


# -- pull ------------------------------------------------------------------------


def test_pull_reports_progress_in_order_and_the_model_is_then_listed(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    fake.pullable("gemma3:1b", size=815_000_000)
    seen: list[PullProgress] = []
    result = backend.pull("gemma3:1b", on_progress=seen.append)
    assert result == PullResult("gemma3:1b", 815_000_000)
    statuses = [progress.status for progress in seen]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    downloads = [p for p in seen if p.digest is not None]
    assert len({p.digest for p in downloads}) == 2
    first_layer = [p for p in downloads if p.digest == downloads[0].digest]
    total = first_layer[0].total
    assert total is not None
    assert [p.completed for p in first_layer] == [None, total // 2, total]
    assert fake.requests_to("/api/pull")[0].body == {"model": "gemma3:1b", "stream": True}
    listed = {model.id: model.size_bytes for model in backend.list_models()}
    assert listed["gemma3:1b"] == 815_000_000


def test_pulling_a_model_the_registry_lacks_raises_ollamas_message(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    seen: list[PullProgress] = []
    with pytest.raises(BackendRequestError, match="pull model manifest: file does not exist"):
        backend.pull("no-such-model:7b", on_progress=seen.append)
    assert [p.status for p in seen] == ["pulling manifest"]
    assert "no-such-model:7b" not in {model.id for model in backend.list_models()}


def test_a_connection_dropped_mid_pull_raises_crashed(
    backend: OllamaBackend, fake: FakeOllama
) -> None:
    fake.pullable("gemma3:1b", size=815_000_000)
    fake.die_mid_stream_after(3)
    seen: list[PullProgress] = []
    with pytest.raises(BackendCrashedError):
        backend.pull("gemma3:1b", on_progress=seen.append)
    assert len(seen) == 3 and seen[-1].status != "success"
    assert "gemma3:1b" not in {model.id for model in backend.list_models()}
