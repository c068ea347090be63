"""llama.cpp's own programs, built from the tree llama-cpp-python was made from.

``llama-server`` (parallel slots, a capped sliding-window cache, no Python
logits array), ``rpc-server`` (one machine's memory as a device of another
machine's llama.cpp) and ``llama-fit-params`` (llama.cpp's own placement)
are not on PyPI. llama-cpp-python's source distribution vendors the exact
llama.cpp tree its wheel was built from, so programs built from it read
models and allocate exactly as the library yoyu already measures.

``install`` fetches that source with pip, builds the three targets with
cmake (static, so no library path is needed at run time) into
``<data>/engines/<key>/bin`` and writes ``manifest.json`` beside it;
``installed`` reads the manifests back. ``find_engine`` takes the build for
the installed llama-cpp-python after a configured or PATH ``llama-server``.
A build takes minutes (about 10 on two cores): ``on_progress`` hears each
step and cmake's percentage, and the whole output goes to ``build.log``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TextIO

from yoyu.errors import YoyuError
from yoyu.paths import data_dir

PACKAGE = "llama-cpp-python"
MANIFEST = "manifest.json"
LOG_NAME = "build.log"
ACCELERATORS = ("cuda", "metal")
# cmake target -> installed name (the RPC server's target is ggml-rpc-server).
TARGETS = {"llama-server": "llama-server", "llama-fit-params": "llama-fit-params"}
RPC_TARGET = ("ggml-rpc-server", "rpc-server")
_PERCENT = re.compile(r"^\[\s*(\d+)%\]")
_CMAKE_BASE = (
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON",
)  # fmt: skip
_ACCELERATOR_FLAGS = {"cuda": "-DGGML_CUDA=ON", "metal": "-DGGML_METAL=ON"}

Progress = Callable[[str, int | None], None]  # (step, cmake's percent or None)


class EngineBuildError(YoyuError):
    """The engine could not be fetched or built; the message names the tool or the log."""

    error_code = "engine_build_failed"


@dataclass(frozen=True)
class BuildOptions:
    """What to build: for which llama-cpp-python, with which accelerators and RPC."""

    version: str
    accelerators: tuple[str, ...] = ()
    rpc: bool = True

    @property
    def key(self) -> str:
        """The build's folder name: one per version and set of flags."""
        parts = sorted(self.accelerators) or ["cpu"]
        parts += ["rpc"] if self.rpc else []
        return f"{PACKAGE}-{self.version}-{'+'.join(parts)}"

    def cmake_flags(self) -> list[str]:
        flags = [*_CMAKE_BASE, f"-DGGML_RPC={'ON' if self.rpc else 'OFF'}"]
        return flags + [_ACCELERATOR_FLAGS[name] for name in sorted(self.accelerators)]

    def targets(self) -> dict[str, str]:
        return {**TARGETS, **(dict([RPC_TARGET]) if self.rpc else {})}


@dataclass(frozen=True)
class EngineBuild:
    """An installed build: where its programs are and what they were built from."""

    key: str
    version: str  # of llama-cpp-python, whose vendored llama.cpp tree was built
    accelerators: tuple[str, ...]
    rpc: bool
    programs: dict[str, str]  # installed name -> absolute path
    llama_cpp: str  # the server's own --version line, e.g. "0.5.0-dev (build 1, commit 0c1e570)"
    built_at: float
    build_seconds: float

    def program(self, name: str) -> Path | None:
        path = self.programs.get(name)
        return Path(path) if path else None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def engines_dir() -> Path:
    """Where builds live: outside any checkout, so a rebuild is never needed twice."""
    return data_dir() / "engines"


def installed_version() -> str:
    """The llama-cpp-python this environment runs (its tree is the one to build)."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        raise EngineBuildError(
            f"{PACKAGE} is not installed here; install yoyu (it depends on it) first"
        ) from None


def installed(root: Path | None = None) -> list[EngineBuild]:
    """Every build with a readable manifest whose programs still exist, newest first."""
    builds = []
    for manifest in sorted((root or engines_dir()).glob(f"*/{MANIFEST}")):
        build = _read_manifest(manifest)
        if build is not None and all(Path(path).is_file() for path in build.programs.values()):
            builds.append(build)
    return sorted(builds, key=lambda build: build.built_at, reverse=True)


def installed_for(version: str, root: Path | None = None) -> EngineBuild | None:
    """The newest build of ``version``'s tree, or None."""
    return next((build for build in installed(root) if build.version == version), None)


def found_program(name: str) -> str | None:
    """``name`` on PATH, else the one ``yoyu engine install`` built for the installed
    llama-cpp-python (the same tree the library runs), else None."""
    on_path = shutil.which(name)
    if on_path:
        return on_path
    try:
        build = installed_for(installed_version())
    except EngineBuildError:
        return None
    program = build.program(name) if build is not None else None
    return str(program) if program is not None else None


def install(
    options: BuildOptions,
    root: Path | None = None,
    *,
    on_progress: Progress | None = None,
    jobs: int | None = None,
) -> EngineBuild:
    """Fetch, configure, build and install; an existing build of the same key is kept."""
    folder = (root or engines_dir()) / options.key
    existing = _read_manifest(folder / MANIFEST)
    if existing is not None and all(Path(p).is_file() for p in existing.programs.values()):
        return existing
    cmake = _cmake()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / LOG_NAME
    report = on_progress or (lambda step, percent: None)
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        source = _fetch_source(options.version, folder / "src", log, log_path, report)
        build_dir = folder / "build"
        report("configuring with cmake", None)
        run_logged([cmake, "-S", str(source), "-B", str(build_dir), *options.cmake_flags()],
             log, log_path, "cmake could not configure llama.cpp", report)  # fmt: skip
        jobs_flag = ["-j", str(jobs or os.cpu_count() or 2)]
        build = [cmake, "--build", str(build_dir), "--config", "Release", *jobs_flag,
                 "--target", *options.targets()]  # fmt: skip
        report("compiling (minutes)", 0)
        run_logged(build, log, log_path, "the build failed", report)
    programs = _install_programs(build_dir, folder / "bin", options.targets())
    result = EngineBuild(
        key=options.key, version=options.version, accelerators=tuple(sorted(options.accelerators)),
        rpc=options.rpc, programs=programs, llama_cpp=_server_version(programs["llama-server"]),
        built_at=time.time(), build_seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    shutil.rmtree(build_dir, ignore_errors=True)  # hundreds of MB of objects; the programs stay
    return result


# -- steps ---------------------------------------------------------------------


def _cmake() -> str:
    """cmake's path once cmake and a C++ compiler are there; else the one line that says
    which is missing (cmake finds the compiler itself)."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise EngineBuildError(
            "cmake is not installed; install it (apt-get install cmake, brew install cmake, "
            "or pip install cmake) and run yoyu engine install again"
        )
    compiler = next(filter(None, map(shutil.which, ("c++", "g++", "clang++"))), None)
    if compiler is None:
        raise EngineBuildError(
            "no C++ compiler (c++, g++ or clang++) is installed; install one (apt-get install "
            "build-essential, or xcode-select --install on macOS) and run yoyu engine install again"
        )
    return cmake


def _fetch_source(
    version: str, folder: Path, log: TextIO, log_path: Path, report: Progress
) -> Path:
    """llama-cpp-python's sdist for ``version``, unpacked; its ``vendor/llama.cpp``."""
    tree = folder / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (tree / "CMakeLists.txt").is_file():
        return tree
    folder.mkdir(parents=True, exist_ok=True)
    report(f"fetching {PACKAGE} {version}'s source from PyPI", None)
    fetch = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "-d", str(folder), f"{PACKAGE}=={version}"]  # fmt: skip
    run_logged(fetch, log, log_path, f"pip could not fetch {PACKAGE}=={version}'s source", report)
    archives = sorted(folder.glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        raise EngineBuildError(f"pip fetched no source archive into {folder}; see {log_path}")
    import tarfile  # only a build unpacks the source

    with tarfile.open(archives[-1]) as archive:
        archive.extractall(folder, filter="data")
    if not (tree / "CMakeLists.txt").is_file():
        raise EngineBuildError(f"{archives[-1].name} has no vendor/llama.cpp tree; see {log_path}")
    return tree


def run_logged(
    command: Sequence[str], log: TextIO, log_path: Path, failure: str, report: Progress
) -> None:
    """Run ``command`` with its output in the log (cmake's percentages go to ``report``);
    a failure is one line with the last error line and the log's path."""
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    last_error = ""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if match := _PERCENT.match(line):
                report("compiling (minutes)", int(match.group(1)))
            if "error" in line.lower():
                last_error = line.strip()
    if process.returncode != 0:
        log.flush()
        detail = f": {last_error[:200]}" if last_error else ""
        raise EngineBuildError(f"{failure}{detail}; the full log is {log_path}")


def _install_programs(build_dir: Path, bin_dir: Path, targets: dict[str, str]) -> dict[str, str]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    programs = {}
    for target, name in targets.items():
        built = next((p for p in build_dir.rglob(target) if p.is_file()), None)
        if built is None:
            raise EngineBuildError(f"the build made no {target} under {build_dir}")
        destination = bin_dir / name
        shutil.copy2(built, destination)
        programs[name] = str(destination)
    return programs


def _server_version(server: str) -> str:
    """The ``version:`` line of ``llama-server --version`` (llama.cpp's build and commit)."""
    done = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=30)
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("version:"):
            return line.removeprefix("version:").strip()
    return "unknown"


def _read_manifest(path: Path) -> EngineBuild | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["accelerators"] = tuple(data["accelerators"])
        return EngineBuild(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None
