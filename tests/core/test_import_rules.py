"""DESIGN.md's package table, enforced: each package imports only the ones
below it, and the core never touches HTTP, servers or the terminal."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src" / "yoyu"

# Modules at the top of the package that every layer may use (lazy_exports: the
# package facades that import a submodule when one of its names is first used).
# i18n: the message catalog; errors carry its Message, the CLI renders it.
SHARED = {"errors", "units", "paths", "toml", "config", "lazy_exports", "i18n"}

# Direct permissions from DESIGN.md; the check uses their transitive closure.
MAY_IMPORT: dict[str, set[str]] = {
    "machine": set(),
    "models": {"machine"},
    "estimate": {"models", "machine"},
    "plan": {"estimate", "models", "machine"},
    "monitor": {"machine"},
    "guard": {"monitor"},
    "backends": {"monitor"},
    # runner: one model run through a backend under the monitor and guard (run,
    # chat, profile, soak, migrate's smoke test). Not in DESIGN.md's table: the
    # orchestration had no home below cli, and cli is printing only.
    "runner": {"backends", "monitor", "guard", "plan"},
    "gateway": {"backends", "plan", "guard", "monitor", "node"},
    "mcp": {"gateway", "plan", "monitor"},
    # rollout moves an alias in yoyu.toml's [aliases] (rollout/aliases.py): it reads
    # the file with the gateway's own parser (gateway.config), so a migration can
    # never write a config that ``yoyu serve`` would refuse. It imports nothing else
    # of the gateway; the gateway never imports rollout.
    "rollout": {"plan", "backends", "monitor", "guard", "runner", "gateway"},
    # node: a worker (rpc-server from backends, under the guard) and the head's view
    # of it, a machine description with the node as an RPC device (estimate's name).
    "node": {"backends", "guard", "monitor", "machine", "estimate"},
    # testing: shapes and models the tests and benchmarks write, and real yoyu parts
    # they start (testing/nodes.py: `yoyu node` workers for RPC splits; testing/chaos.py
    # sizes its memory budget with the gateway's own sizer, so the budget is the one
    # `yoyu serve` admits against; testing/catalog.py, Babel's side of the message
    # catalog, reads the help texts of the commands as the CLI builds them)
    "testing": {"models", "machine", "node", "gateway", "cli"},
}
CORE = {"machine", "models", "estimate", "plan"}
FORBIDDEN_IN_CORE = {
    "httpx", "requests", "aiohttp", "starlette", "fastapi", "uvicorn",
    "openai", "mcp", "typer", "rich", "click", "llama_cpp",
}  # fmt: skip


def allowed_closure(package: str) -> set[str]:
    allowed, frontier = set(), [package]
    while frontier:
        for dependency in MAY_IMPORT.get(frontier.pop(), set()):
            if dependency not in allowed:
                allowed.add(dependency)
                frontier.append(dependency)
    return allowed | {package} | SHARED


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def package_files() -> list[tuple[str, Path]]:
    return [
        (path.relative_to(SOURCE_ROOT).parts[0], path)
        for path in sorted(SOURCE_ROOT.rglob("*.py"))
        if path.relative_to(SOURCE_ROOT).parts[0] in MAY_IMPORT
    ]


@pytest.mark.parametrize(("package", "path"), package_files(), ids=lambda v: str(v))
def test_package_imports_follow_design(package: str, path: Path) -> None:
    allowed = allowed_closure(package)
    for module in imported_modules(path):
        top, _, rest = module.partition(".")
        if top == "yoyu" and rest:
            assert rest.split(".")[0] in allowed, f"{path.name} imports {module}"
        if package in CORE:
            assert top not in FORBIDDEN_IN_CORE, f"core module {path.name} imports {module}"


def test_the_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    offending = tmp_path / "bad.py"
    offending.write_text("from yoyu.gateway import app\nimport httpx\n", encoding="utf-8")
    assert {"yoyu.gateway", "httpx"} <= imported_modules(offending)
    assert "gateway" not in allowed_closure("plan")
    assert "machine" in allowed_closure("guard")


def test_rollout_takes_only_the_gateways_config_parser() -> None:
    """The one gateway import rollout has a reason for (see MAY_IMPORT above)."""
    from_gateway = {
        module
        for package, path in package_files()
        if package == "rollout"
        for module in imported_modules(path)
        if module.startswith("yoyu.gateway")
    }
    assert from_gateway == {"yoyu.gateway.config"}
