"""A backend's options from ``yoyu.toml`` checked against its factory's own signature.

``[backends.NAME]`` tables go to the factory as keyword arguments, and TOML
lets a user write any type: ``base_url = []`` would otherwise fail deep
inside the backend as an ``AttributeError``. The annotations already say what
each option takes, so they are the check: one place, no second list of keys.
An option whose type cannot come from TOML (an httpx transport, a timeouts
object) is refused the same way: it is set in code, not in the file.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class OptionTypeError(TypeError):
    """An option of the wrong type; a TypeError, as a wrong keyword is."""


def check_option_types(factory: Callable[..., Any], options: Mapping[str, object]) -> None:
    """Raise ``OptionTypeError`` for the first option its annotation does not allow."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # annotations that cannot be resolved: nothing to check
        return
    for name, value in options.items():
        hint = hints.get(name)
        if hint is not None and not _allows(hint, value):
            raise OptionTypeError(f"{name} = {value!r} is not {_describe(hint)}")


def _allows(hint: Any, value: object) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_allows(member, value) for member in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is Path:
        return isinstance(value, (str, Path))
    if origin in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and all(_allows(args[0], item) for item in value)
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, Mapping)
    return isinstance(value, origin or hint) if isinstance(origin or hint, type) else True


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(member) for member in typing.get_args(hint))
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
             type(None): "absent", Path: "a path"}  # fmt: skip
    if hint in names:
        return str(names[hint])
    if typing.get_origin(hint) in (list, tuple, collections.abc.Sequence):
        return f"a list, each item {_describe(typing.get_args(hint)[0])}"
    if typing.get_origin(hint) in (dict, collections.abc.Mapping):
        return "a table"
    return f"something set in code ({getattr(hint, '__name__', hint)}), not in yoyu.toml"
