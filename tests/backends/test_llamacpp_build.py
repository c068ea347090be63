"""Building llama.cpp's programs: the choices, the manifests, the one-line failures.

The build itself (minutes) runs in CI through ``yoyu engine install`` (see
.ci/run); the llama-server tests then run on what it built.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from yoyu.backends import llamacpp_build
from yoyu.backends.llamacpp_build import (
    MANIFEST,
    BuildOptions,
    EngineBuild,
    EngineBuildError,
    install,
    installed,
)
from yoyu.backends.llamacpp_flags import choose_engine, find_engine
from yoyu.errors import ConfigError


def test_one_folder_per_version_and_flags() -> None:
    assert BuildOptions("0.3.36").key == "llama-cpp-python-0.3.36-cpu+rpc"
    assert BuildOptions("0.3.36", ("metal", "cuda"), rpc=False).key == (
        "llama-cpp-python-0.3.36-cuda+metal"
    )


def test_cmake_is_asked_for_static_programs_and_the_rpc_target_only_with_rpc() -> None:
    with_rpc = BuildOptions("0.3.36", ("cuda",))
    assert "-DBUILD_SHARED_LIBS=OFF" in with_rpc.cmake_flags()
    assert {"-DGGML_RPC=ON", "-DGGML_CUDA=ON"} <= set(with_rpc.cmake_flags())
    assert with_rpc.targets()["ggml-rpc-server"] == "rpc-server"
    assert "ggml-rpc-server" not in BuildOptions("0.3.36", rpc=False).targets()
    assert "-DGGML_RPC=OFF" in BuildOptions("0.3.36", rpc=False).cmake_flags()


def write_build(root: Path, key: str, version: str, built_at: float, *, program: bool) -> Path:
    folder = root / key
    (folder / "bin").mkdir(parents=True)
    server = folder / "bin" / "llama-server"
    if program:
        shutil.copy(sys.executable, server)  # any executable file: only its presence is read
    build = EngineBuild(key, version, (), True, {"llama-server": str(server)}, "0.5.0-dev",
                        built_at, 600.0)  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(build.to_dict()), encoding="utf-8")
    return server


def test_installed_builds_are_read_newest_first_and_broken_ones_skipped(tmp_path: Path) -> None:
    write_build(tmp_path, "old", "0.3.35", 1.0, program=True)
    write_build(tmp_path, "new", "0.3.36", 2.0, program=True)
    write_build(tmp_path, "gone", "0.3.36", 3.0, program=False)  # its program was deleted
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / MANIFEST).write_text("{not json", encoding="utf-8")
    assert [build.key for build in installed(tmp_path)] == ["new", "old"]
    found = llamacpp_build.installed_for("0.3.35", tmp_path)
    assert found is not None and found.key == "old"


def test_a_finished_build_is_not_built_again(tmp_path: Path) -> None:
    options = BuildOptions("0.3.36")
    write_build(tmp_path, options.key, "0.3.36", time.time(), program=True)
    steps: list[str] = []
    build = install(options, tmp_path, on_progress=lambda step, percent: steps.append(step))
    assert build.key == options.key and steps == []  # nothing fetched, configured or compiled


def test_run_and_serve_take_the_installed_build_when_none_is_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_engine().kind == "llama-cpp-python"  # nothing built in this (isolated) home
    version = llamacpp_build.installed_version()
    server = write_build(llamacpp_build.engines_dir(), "mine", version, 1.0, program=True)
    engine = find_engine()
    assert (engine.kind, engine.executable) == ("llama-server", str(server))
    assert find_engine("/opt/llama-server").executable == "/opt/llama-server"  # configured wins
    assert choose_engine("llama-cpp-python").kind == "llama-cpp-python"  # asked for by name
    assert choose_engine("llama-server").executable == str(server)


@pytest.mark.parametrize(
    ("name", "binary", "message"),
    [
        ("llama-server", None, "yoyu engine install"),
        ("llama-cpp-python", "/opt/llama-server", "remove one of them"),
        ("vllm", None, "unknown engine 'vllm'"),
    ],
)
def test_an_engine_that_cannot_be_had_is_a_config_error(
    name: str, binary: str | None, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # and nothing built in this home
    with pytest.raises(ConfigError, match=re.escape(message)):
        choose_engine(name, binary)


@pytest.mark.parametrize(("missing", "named"), [("cmake", "cmake"), ("c++", "C++ compiler")])
def test_a_missing_tool_is_one_line_naming_it(
    missing: str, named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compilers = {"c++", "g++", "clang++"}
    gone = compilers if missing == "c++" else {missing}
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name in gone else real_which(name))
    with pytest.raises(EngineBuildError, match=re.escape(named)) as caught:
        install(BuildOptions("0.3.36"), tmp_path)
    assert "\n" not in str(caught.value) and "yoyu engine install" in str(caught.value)


def test_a_failing_step_names_its_last_error_and_the_log(tmp_path: Path) -> None:
    log_path = tmp_path / "build.log"
    failing = [sys.executable, "-c", "print('compiling'); print('error: no llama.h'); exit(1)"]
    with log_path.open("w") as log, pytest.raises(EngineBuildError) as caught:
        llamacpp_build.run_logged(failing, log, log_path, "the build failed", lambda s, p: None)
    assert str(caught.value) == (f"the build failed: error: no llama.h; the full log is {log_path}")
    assert "compiling" in log_path.read_text()
