"""Start-up of the ``yoyu`` command: quick commands import only what they use.

Each light command runs as a user runs it (``python -m yoyu ...``, a fresh
process) under ``-X importtime``, whose log names every module imported; the
test fails when one of them is a server, MCP, plotting or engine-binding
stack (each costs 0.1 to 0.4 s before the command prints anything). The
registry that lets ``yoyu --help`` list commands without importing them must
say of each command what the command itself says.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from yoyu.cli import app
from yoyu.cli.registry import COMMANDS, load_command
from yoyu.machine.nvidia import nvml_library_loads
from yoyu.monitor.store import RunStore
from yoyu.testing.tiny_models import write_tiny_model

CLI_SOURCE = Path(__file__).resolve().parents[2] / "src" / "yoyu" / "cli"

# Top-level packages no light command needs (pydantic and rich stay: typer uses them).
HEAVY = {
    "mcp", "starlette", "uvicorn", "matplotlib", "llama_cpp", "numpy", "gguf", "httpx",
    "anyio", "openai", "huggingface_hub", "httpx2",
    "babel",  # the message catalog's dev tool; gettext reads the catalog at run time
}  # fmt: skip
# yoyu's own layers above the core that no light command needs.
HEAVY_YOYU = ("yoyu.gateway", "yoyu.mcp", "yoyu.rollout", "yoyu.runner.session", "yoyu.node")
# What `yoyu plan FILE` imports only when the plan needs it, and so not for a model that fits
# as asked on this machine with no run stored (about 45 ms of its start-up on 2 CPUs).
PLAN_ON_DEMAND = {
    "yoyu.models.catalog": "read only to name a smaller model",
    "yoyu.models.catalog_tables": "the catalog's derived tensor tables",
    "yoyu.models.hf_model": "the Hugging Face folder reader",
    "yoyu.models.names": "an Ollama, installed or catalog name",
    "yoyu.models.discover": "the scan of installed models",
    "yoyu.cli.plan_training": "--train",
    "yoyu.plan.training": "--train",
    "yoyu.machine.presets": "--machine and --node",
    "tomllib": "presets, the catalog and settings files",
    "yoyu.monitor.store": "opened only when a run store exists",
    "sqlite3": "the run store",
    "tarfile": "unpacking llama.cpp's source for a build",
    "yoyu.machine.runtimes": "the engines found here, which yoyu machine and doctor list",
    "http.client": "asking Ollama its version",
    "psutil": "a platform without a probe of its own (Linux and macOS have one)",
}


def imported_modules(*args: str, exit_code: int = 0) -> list[str]:
    """Every module ``python -m yoyu ARGS`` imports, in order; the command must exit so."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "yoyu", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    log = result.stderr.splitlines()
    errors = [line for line in log if not line.startswith("import time:")]
    assert result.returncode == exit_code, "\n".join(errors)
    return [line.split("|")[-1].strip() for line in log if line.startswith("import time:")][1:]


def heavy_among(modules: list[str]) -> list[str]:
    return [name for name in modules if name.split(".")[0] in HEAVY or name.startswith(HEAVY_YOYU)]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("start") / "tiny.gguf", "llama").path


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("machine",),
        ("machine", "--json"),
        ("inspect", "{gguf}"),
        ("inspect", "{gguf}", "--json"),
        ("plan", "{gguf}"),
        ("plan", "{gguf}", "--json"),
        ("fit", "--machine", "linux-cpu-32g", "--family", "qwen3"),
        ("fit", "--machine", "linux-cpu-32g", "--json"),
        ("watch", "--once"),
        ("watch", "--json"),
    ],
    ids=" ".join,
)
def test_a_light_command_imports_no_heavy_module(args: tuple[str, ...], tiny_gguf: Path) -> None:
    argv = [arg.format(gguf=tiny_gguf) for arg in args]
    assert heavy_among(imported_modules(*argv)) == []


@pytest.mark.slow
@pytest.mark.parametrize("output", [(), ("--json",)], ids=["text", "json"])
def test_a_plan_that_fits_imports_only_what_it_uses(
    output: tuple[str, ...], tiny_gguf: Path
) -> None:
    modules = imported_modules("plan", str(tiny_gguf), *output)
    assert {name: PLAN_ON_DEMAND[name] for name in modules if name in PLAN_ON_DEMAND} == {}


@pytest.mark.slow
def test_a_plan_that_does_not_fit_reads_the_catalog_and_a_named_machine(tiny_gguf: Path) -> None:
    """The other side of the test above: what it leaves out is still there when needed."""
    modules = imported_modules(
        "plan", str(tiny_gguf), "--machine", "linux-cpu-32g", "--free", "1MiB", exit_code=1
    )
    assert {"yoyu.models.catalog", "yoyu.machine.presets", "tomllib"} <= set(modules)


# What `yoyu plan NAME` of a catalog model leaves out once the catalog's parsed copy is kept
# (issue 22: a catalog name planned in under 300 ms on 2 CPUs), with a run store to read.
CATALOG_PLAN_LEAVES_OUT = {
    "tomllib": "the catalog's TOML, read from its parsed copy in the cache",
    "psutil": "the run store is read without the process table",
    "yoyu.monitor.types": "the run store's samples, which a plan's history does not read",
    "yoyu.estimate.training_settings": "--train",
}
if sys.platform == "linux":
    CATALOG_PLAN_LEAVES_OUT["yoyu.machine.darwin"] = "macOS's probe"


@pytest.mark.slow
def test_a_plan_of_a_catalog_name_imports_only_what_it_uses() -> None:
    with RunStore():  # an empty store: the plan reads its history
        pass
    leaves_out = dict(CATALOG_PLAN_LEAVES_OUT)
    if not nvml_library_loads():
        leaves_out["pynvml"] = "no NVIDIA library to load, so no NVML bindings"
    args = ("plan", "llama3.2:3b", "--free", "16GiB")
    first = imported_modules(*args)  # parses the catalog and keeps the copy
    assert "tomllib" in first
    modules = imported_modules(*args)
    assert {name: leaves_out[name] for name in modules if name in leaves_out} == {}
    assert "yoyu.monitor.store" in modules  # the history was read


@pytest.mark.slow
def test_help_lists_every_command_without_importing_one() -> None:
    modules = imported_modules("--help")
    commands = [name for name in modules if name.startswith("yoyu.cli.")]
    assert commands == ["yoyu.cli.registry"]


@pytest.mark.slow
def test_a_command_imports_its_own_module_only() -> None:
    modules = imported_modules("machine", "--json")
    assert {name for name in modules if name.startswith("yoyu.cli.")} == {
        "yoyu.cli.registry", "yoyu.cli.machine", "yoyu.cli.output",
    }  # fmt: skip


def test_the_registry_help_is_each_commands_own_first_paragraph() -> None:
    for entry in COMMANDS:
        command = load_command(entry)
        text = command.short_help or command.help or ""
        assert entry.help == inspect.cleandoc(text).split("\n\n")[0], entry.name


def test_the_registry_names_every_module_that_registers_a_command() -> None:
    registering = {
        f"yoyu.cli.{path.stem}"
        for path in CLI_SOURCE.glob("*.py")
        if "\ndef register(" in path.read_text(encoding="utf-8")
    }
    assert {entry.module for entry in COMMANDS} == registering


def test_each_command_is_built_as_the_top_level_app_builds_it() -> None:
    group = typer.main.get_group(app)
    context = typer.Context(group)
    for entry in COMMANDS:
        command = group.get_command(context, entry.name)
        assert command is not None and command.name == entry.name
        assert group.get_command(context, entry.name) is command  # built once per group
    assert group.get_command(context, "no-such-command") is None
