"""Which backend kinds exist, and how to make one: built-ins and plugins alike.

As in simonw/llm, a plugin is a module named in the ``yoyu.backends``
entry-point group whose entry point is a function taking ``register``::

    # pyproject.toml of a plugin
    [project.entry-points."yoyu.backends"]
    mlx = "yoyu_mlx:register_backends"

    # yoyu_mlx.py
    def register_backends(register):
        register("mlx", MlxBackend)  # MlxBackend(name=..., **options) -> Backend

Every factory takes ``name`` (the ``[backends.NAME]`` table it was made
from; several backends may share a kind) and the table's other keys; the
backend declares ``name``, ``remote`` and ``engine_kind`` (the protocol).
yoyu's own backends are registered through the very same function, so there
is one path to test and a plugin cannot do anything a built-in cannot. A
kind registered twice is a configuration error that names both sources.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any, Protocol

from yoyu.backends.options import check_option_types
from yoyu.backends.protocol import Backend
from yoyu.errors import ConfigError

ENTRY_POINT_GROUP = "yoyu.backends"
BackendFactory = Callable[..., Backend]
Register = Callable[[str, BackendFactory], None]

# kind -> "module:attribute" of its factory, imported only when that kind is made.
_BUILTIN_FACTORIES = {
    "llama.cpp": "yoyu.backends.llamacpp_server:LlamaCppServerBackend",
    "ollama": "yoyu.backends.ollama:OllamaBackend",
    "openai": "yoyu.backends.openai_compatible:OpenAICompatibleBackend",
}


class PluginEntryPoint(Protocol):
    """What the registry needs of an ``importlib.metadata.EntryPoint``."""

    @property
    def name(self) -> str: ...

    def load(self) -> Any: ...


def register_builtin_backends(register: Register) -> None:
    """yoyu's own backends, registered like any plugin's."""
    for kind, target in _BUILTIN_FACTORIES.items():
        register(kind, _lazy_factory(target))


def _lazy_factory(target: str) -> BackendFactory:
    module_name, _, attribute = target.partition(":")

    def make(**options: Any) -> Backend:
        factory: BackendFactory = getattr(importlib.import_module(module_name), attribute)
        check_option_types(factory, options)  # base_url = [] is one line, not a traceback
        return factory(**options)

    return make


def _installed_plugins() -> Iterable[PluginEntryPoint]:
    return entry_points(group=ENTRY_POINT_GROUP)


class BackendRegistry:
    """Backend kinds by name; plugins are found on first use."""

    def __init__(
        self, plugins: Callable[[], Iterable[PluginEntryPoint]] = _installed_plugins
    ) -> None:
        self._factories: dict[str, BackendFactory] = {}
        self._sources: dict[str, str] = {}
        self._plugins = plugins
        self._loaded = False

    def kinds(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._factories)

    def create(self, kind: str, **options: Any) -> Backend:
        """A new backend of ``kind``; ``options`` go to its factory."""
        self._ensure_loaded()
        factory = self._factories.get(kind)
        if factory is None:
            known = ", ".join(sorted(self._factories))
            raise ConfigError(f"unknown backend kind {kind!r}; known kinds: {known}")
        return factory(**options)

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        register_builtin_backends(self._registrar("yoyu"))
        for plugin in self._plugins():
            self._load_plugin(plugin)

    def _load_plugin(self, plugin: PluginEntryPoint) -> None:
        try:
            register_backends = plugin.load()
        except Exception as exc:
            raise ConfigError(
                f"backend plugin {plugin.name!r} failed to import ({type(exc).__name__}: {exc}); "
                "reinstall or uninstall it"
            ) from exc
        register_backends(self._registrar(f"plugin {plugin.name!r}"))

    def _registrar(self, source: str) -> Register:
        def register(kind: str, factory: BackendFactory) -> None:
            if kind in self._factories:
                raise ConfigError(
                    f"backend kind {kind!r} from {source} is already registered by "
                    f"{self._sources[kind]}; uninstall one of them"
                )
            self._factories[kind] = factory
            self._sources[kind] = source

        return register


_DEFAULT_REGISTRY = BackendRegistry()


def backend_kinds() -> list[str]:
    """Every backend kind available: built-in and installed plugins."""
    return _DEFAULT_REGISTRY.kinds()


def create_backend(kind: str, **options: Any) -> Backend:
    """A new backend of ``kind`` (``"llama.cpp"``, ``"ollama"``, ``"openai"``, or a
    plugin's), made with ``options``."""
    return _DEFAULT_REGISTRY.create(kind, **options)
