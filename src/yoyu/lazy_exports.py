"""Package facades that import a submodule only when one of its names is first used.

A package's ``__init__`` that imports every submodule makes importing any one
of them pay for all: ``yoyu.runner.options`` (one dataclass) would load the
session, the backends and httpx, and ``yoyu watch`` would load the guard's
thread and the run store to read its floors. A facade built here keeps
``from yoyu.runner import ModelRun`` working while importing
``yoyu.runner.session`` only then (PEP 562). The package keeps the same
imports under ``TYPE_CHECKING``, so mypy sees exact types and no ``__getattr__``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ModuleGetattr = Callable[[str], Any]
ModuleDir = Callable[[], list[str]]


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[ModuleGetattr, ModuleDir]:
    """``__getattr__`` and ``__dir__`` for ``package``, from ``{module: names it exports}``.

    A name that is also its module's own name (``yoyu.guard.decide.decide``) cannot be
    lazy: importing the submodule binds the package attribute to the module, so such a
    name must be imported eagerly.
    """
    home = {name: module for module, names in exports.items() for name in names}
    shadowed = sorted(name for name, module in home.items() if module.endswith(f".{name}"))
    if shadowed:
        raise ValueError(f"{package}: import {', '.join(shadowed)} eagerly (submodule names)")
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's own name)
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        # __import__, not importlib.import_module: `python -X importtime` logs only the former
        value = getattr(__import__(module, fromlist=[name]), name)
        namespace[name] = value  # once found, a plain attribute
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *home})

    return __getattr__, __dir__
