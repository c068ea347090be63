"""The lazy package facades: every exported name still there, and a submodule
imported alone no longer drags in its siblings (``yoyu.lazy_exports``)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
import types

import pytest

from yoyu.lazy_exports import lazy_exports

FACADES = ("yoyu.machine", "yoyu.monitor", "yoyu.guard", "yoyu.runner")


@pytest.mark.parametrize("package", FACADES)
def test_every_exported_name_resolves(package: str) -> None:
    facade = importlib.import_module(package)
    for name in facade.__all__:
        assert getattr(facade, name) is not None, f"{package}.{name}"
        assert name in dir(facade)


@pytest.mark.parametrize("package", FACADES)
def test_an_unknown_name_is_an_attribute_error(package: str) -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(importlib.import_module(package), "no_such_name")  # noqa: B009


@pytest.mark.parametrize("package", FACADES)
def test_no_lazy_name_is_also_a_submodule(package: str) -> None:
    """Importing ``package.NAME`` binds the attribute NAME to the module: such a name
    must be bound eagerly, or ``from package import NAME`` could give the module."""
    facade = importlib.import_module(package)
    submodules = {info.name for info in pkgutil.iter_modules(facade.__path__)}
    for name in set(facade.__all__) & submodules:
        assert not isinstance(vars(facade).get(name), types.ModuleType | None), name


def test_a_name_named_like_its_module_is_refused() -> None:
    with pytest.raises(ValueError, match="decide"):
        lazy_exports("yoyu.guard", {"yoyu.guard.decide": ("decide",)})


def test_a_name_is_imported_once_then_a_plain_attribute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    package = types.ModuleType("toy_facade")
    monkeypatch.setitem(sys.modules, "toy_facade", package)
    package_getattr, package_dir = lazy_exports("toy_facade", {"json": ("dumps",)})
    assert package_getattr("dumps") is json.dumps
    assert package.dumps is json.dumps
    assert "dumps" in package_dir()


def modules_after(statement: str) -> set[str]:
    """The yoyu modules a fresh interpreter holds after ``statement``."""
    probe = f"{statement}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return {name for name in json.loads(result.stdout) if name.startswith("yoyu")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("statement", "not_imported"),
    [
        ("import yoyu.runner.options", "yoyu.runner.session"),
        ("from yoyu.guard import policy_from_settings", "yoyu.monitor.store"),
        ("import yoyu.monitor.process_tree", "yoyu.monitor.sampler"),
        ("import yoyu.machine.linux", "yoyu.machine.probe"),
    ],
)
def test_a_submodule_alone_leaves_its_siblings(statement: str, not_imported: str) -> None:
    assert not_imported not in modules_after(statement)
