"""Embeddings through all three backends: the managed llama.cpp engine (a tiny GGUF
loaded with ``embedding = true``), the same engine reached as an OpenAI-compatible
server, and Ollama's ``/api/embed`` on the fake."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from yoyu.backends.llamacpp_server import LlamaCppServerBackend, python_engine
from yoyu.backends.ollama import OllamaBackend
from yoyu.backends.openai_compatible import OpenAICompatibleBackend
from yoyu.backends.openai_http import HttpTimeouts, parse_embeddings
from yoyu.backends.protocol import ChatMessage, ChatRequest, LoadedModel, ModelRef
from yoyu.errors import BackendRequestError
from yoyu.testing.fake_ollama import EMBEDDING_DIMENSIONS, FakeOllama
from yoyu.testing.tiny_models import TinyModel, write_tiny_model

SETTINGS = {"n_ctx": 256, "n_batch": 64, "n_ubatch": 64, "seed": 1}
TIMEOUTS = HttpTimeouts(connect_s=2, read_s=20)
TEXTS = ["the sky is blue", "grass is green", "the sky is blue"]

Managed = tuple[LlamaCppServerBackend, LoadedModel]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="module")
def managed(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Managed]:
    backend = LlamaCppServerBackend(
        engine=python_engine(), log_dir=tmp_path_factory.mktemp("logs"), timeouts=TIMEOUTS
    )
    embedder = backend.load(ModelRef("embedder", tiny.path), {**SETTINGS, "embedding": True})
    backend.load(ModelRef("chatter", tiny.path), SETTINGS)
    yield backend, embedder
    backend.close()


@pytest.mark.slow
def test_a_model_loaded_for_embeddings_gives_one_vector_per_input(
    managed: Managed, tiny: TinyModel
) -> None:
    backend, _ = managed
    response = backend.embed("embedder", TEXTS)

    assert len(response.vectors) == 3
    assert response.dimensions == tiny.n_embd
    assert response.vectors[0] == response.vectors[2]  # same text, same vector
    assert response.vectors[0] != response.vectors[1]
    assert all(math.isfinite(x) for vector in response.vectors for x in vector)
    assert response.prompt_tokens is not None and response.prompt_tokens > 6
    assert response.model == "embedder"


def test_a_model_loaded_for_embeddings_still_chats(managed: Managed) -> None:
    backend, _ = managed
    response = backend.chat(ChatRequest("embedder", (ChatMessage("user", "hi"),), max_tokens=2))
    assert response.usage.completion_tokens >= 1


def test_a_model_not_loaded_for_embeddings_is_a_clear_400(managed: Managed) -> None:
    backend, _ = managed
    with pytest.raises(
        BackendRequestError, match=r"not loaded for embeddings.*embedding = true"
    ) as e:
        backend.embed("chatter", TEXTS)
    assert e.value.status_code == 400


def test_the_same_engine_embeds_through_the_openai_compatible_backend(managed: Managed) -> None:
    backend, embedder = managed
    compatible = OpenAICompatibleBackend(base_url=embedder.base_url, timeouts=TIMEOUTS)
    try:
        through_http = compatible.embed("embedder", TEXTS[:1])
    finally:
        compatible.close()
    direct = backend.embed("embedder", TEXTS[:2])
    assert through_http.vectors[0] == direct.vectors[0]


def test_per_token_vectors_are_mean_pooled_and_order_follows_index() -> None:
    payload = {
        "model": "m",
        "data": [
            {"index": 1, "embedding": [[1.0, 2.0], [3.0, 4.0]]},
            {"index": 0, "embedding": [0.5, -0.5]},
        ],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    response = parse_embeddings(payload, 0.1)
    assert response.vectors == ((0.5, -0.5), (2.0, 3.0))
    assert response.prompt_tokens == 3
    with pytest.raises(BackendRequestError, match="no data list"):
        parse_embeddings({"object": "list"}, 0.1)


@pytest.mark.slow
def test_ollama_embeds_through_api_embed() -> None:
    with FakeOllama() as fake:
        fake.install("all-minilm")
        backend = OllamaBackend(base_url=fake.base_url)
        try:
            backend.load(ModelRef("all-minilm"), {"num_ctx": 512})
            response = backend.embed("all-minilm", TEXTS)
            with pytest.raises(BackendRequestError) as missing:
                backend.embed("nomic-embed-text", TEXTS)
        finally:
            backend.close()
        (request,) = fake.requests_to("/api/embed")[:1]
    assert request.body["input"] == TEXTS
    assert request.body["options"] == {"num_ctx": 512}  # the load's options, so no reload
    assert len(response.vectors) == 3 and response.dimensions == EMBEDDING_DIMENSIONS
    assert response.vectors[0] == response.vectors[2] != response.vectors[1]
    assert response.prompt_tokens == 4 + 3 + 4  # the fake counts words
    assert response.model == "all-minilm:latest"
    assert missing.value.status_code == 404
