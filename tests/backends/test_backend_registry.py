"""Backend kinds: yoyu's own and plugins', registered through one function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from yoyu.backends.llamacpp_server import LlamaCppServerBackend, python_engine
from yoyu.backends.protocol import Backend
from yoyu.backends.registry import (
    BackendFactory,
    BackendRegistry,
    Register,
    backend_kinds,
    create_backend,
)
from yoyu.errors import ConfigError


@dataclass
class PluginStandIn:
    """What ``importlib.metadata`` hands the registry for one installed plugin."""

    name: str
    target: Callable[[], Any]

    def load(self) -> Any:
        return self.target()


def plugin_registering(kind: str, factory: BackendFactory) -> Callable[[], Any]:
    def register_backends(register: Register) -> None:
        register(kind, factory)

    return lambda: register_backends


def test_llama_cpp_is_built_in_and_made_with_its_options(tmp_path: Path) -> None:
    assert "llama.cpp" in backend_kinds()
    backend = create_backend("llama.cpp", engine=python_engine(), log_dir=tmp_path)
    try:
        assert isinstance(backend, LlamaCppServerBackend)
        assert isinstance(backend, Backend)
        assert backend.log_dir == tmp_path
        assert backend.loaded_models() == []
    finally:
        backend.close()


def test_a_plugin_kind_is_created_through_the_same_registry(tmp_path: Path) -> None:
    made: list[dict[str, Any]] = []

    def make_remote(**options: Any) -> Backend:
        made.append(options)
        return LlamaCppServerBackend(engine=python_engine(), log_dir=tmp_path)

    registry = BackendRegistry(
        plugins=lambda: [PluginStandIn("yoyu-remote", plugin_registering("remote", make_remote))]
    )
    assert registry.kinds() == ["llama.cpp", "ollama", "openai", "remote"]
    registry.create("remote", base_url="http://127.0.0.1:1/v1").close()
    assert made == [{"base_url": "http://127.0.0.1:1/v1"}]


def test_an_unknown_kind_names_the_known_ones() -> None:
    registry = BackendRegistry(plugins=list)
    with pytest.raises(ConfigError, match=r"unknown backend kind 'vllm'; known kinds: llama\.cpp"):
        registry.create("vllm")


def test_a_plugin_that_claims_a_taken_kind_is_refused_with_both_names() -> None:
    clash = PluginStandIn("yoyu-llama-fork", plugin_registering("llama.cpp", LlamaCppServerBackend))
    registry = BackendRegistry(plugins=lambda: [clash])
    with pytest.raises(ConfigError, match=r"from plugin 'yoyu-llama-fork' .* registered by yoyu"):
        registry.kinds()


def test_a_plugin_that_fails_to_import_is_named() -> None:
    def broken() -> Any:
        raise ImportError("No module named 'yoyu_mlx'")

    registry = BackendRegistry(plugins=lambda: [PluginStandIn("yoyu-mlx", broken)])
    with pytest.raises(ConfigError, match=r"plugin 'yoyu-mlx' failed to import .*yoyu_mlx"):
        registry.kinds()
