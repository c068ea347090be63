"""Pointing an alias in ``yoyu.toml`` at the new model, and back, without losing a byte
of the user's file.

No TOML writer is installed and a full rewrite would drop the user's comments
and layout, so edits are textual and small: one ``NAME = "TARGET"`` line in
``[aliases]``, plus one block of tables at the end of the file between two
marker comments (the new model's ``[served.ID]``, a ``[routes.ID]`` that
tries the new model first and the old one second, and ``[backends.local]``
when no llama.cpp backend exists). Undoing removes the block and restores the
line. Every edit is checked before it is written: the new text must parse to
exactly the old document plus the intended change, and the gateway must accept
it; otherwise nothing is written and the user is told to edit by hand. The
file is replaced atomically (``state.write_atomic``).

Promotion, for ``--alias coder`` that pointed at ``small``::

    [aliases]
    coder = "coder-fallback"           # was "small"

    # >>> yoyu migrate 20261123-125300-coder
    [served."big"]
    backend = "local"
    path = "/models/big.gguf"

    [routes."coder-fallback"]
    chain = ["big", "small"]
    # <<< yoyu migrate 20261123-125300-coder
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError, YoyuError
from yoyu.gateway.config import MANAGED_KIND, QUICK_START_BACKEND, parse_gateway_config
from yoyu.rollout.state import write_atomic
from yoyu.toml import TOMLDecodeError, load_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_HEADER = re.compile(r"^\s*\[")
_ALIASES_HEADER = re.compile(r"^\s*\[\s*aliases\s*\]\s*(#.*)?$")


@dataclass(frozen=True)
class Promotion:
    """What promoting writes: the alias's new value and the tables added in the block."""

    alias: str
    previous: str | None  # the alias's value before, None when it did not exist
    value: str  # what the alias points at afterwards (the route, or the new model)
    fallback: str | None  # the old model or route kept behind the new one
    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    block: str = ""  # the marker's name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Promotion:
        return cls(**data)


def plan_promotion(
    document: Mapping[str, Any],
    alias: str,
    new_id: str,
    new_path: Path,
    *,
    source: str | None = None,
    settings: Mapping[str, Any] | None = None,
    block: str = "",
) -> Promotion:
    """The edit (pure): which served model, route and backend to add; where the alias goes."""
    served = _section(document, "served")
    routes = _section(document, "routes")
    aliases = _section(document, "aliases")
    tables: dict[str, dict[str, dict[str, Any]]] = {"served": {}, "routes": {}, "backends": {}}
    backend = _managed_backend(document, tables)
    taken = {*served, *routes, *aliases}
    if new_id not in served:
        entry: dict[str, Any] = {"backend": backend, "path": str(new_path)}
        if settings:
            entry["settings"] = dict(settings)
        tables["served"][new_id] = entry
    fallback = _fallback(source, aliases.get(alias), served, routes, backend, tables, taken)
    if fallback is None:
        value = new_id
    else:
        old_chain = list(routes[fallback]["chain"]) if fallback in routes else [fallback]
        value = _free_name(f"{alias}-fallback", taken | set(tables["served"]))
        chain = [new_id, *(member for member in old_chain if member != new_id)]
        tables["routes"][value] = {"chain": chain}
    kept = {name: body for name, body in tables.items() if body}
    return Promotion(alias, aliases.get(alias), value, fallback, kept, block)


def _section(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    body = document.get(name, {})
    if not isinstance(body, dict):
        raise ConfigError(f"[{name}] in yoyu.toml must be a table")
    return body


def _managed_backend(document: Mapping[str, Any], tables: dict[str, dict[str, Any]]) -> str:
    """A llama.cpp backend of the file, or a ``[backends.local]`` added for the new model."""
    backends = _section(document, "backends")
    for name, body in backends.items():
        if isinstance(body, dict) and body.get("kind") == MANAGED_KIND:
            return str(name)
    name = _free_name(QUICK_START_BACKEND, set(backends))
    tables["backends"][name] = {"kind": MANAGED_KIND}
    return name


def _fallback(
    source: str | None,
    current: Any,
    served: Mapping[str, Any],
    routes: Mapping[str, Any],
    backend: str,
    tables: dict[str, dict[str, Any]],
    taken: set[str],
) -> str | None:
    """The rollback target: ``--from`` (a served id, a route or a model file), else the alias."""
    if source is None:
        return current if isinstance(current, str) else None
    if source in served or source in routes:
        return source
    path = Path(source).expanduser()
    if path.is_file():
        name = _free_name(path.stem, taken | set(tables["served"]))
        tables["served"][name] = {"backend": backend, "path": str(path.resolve())}
        return name
    raise ConfigError(
        f"--from {source}: no served model, route or model file by that name; give one of "
        "the [served] ids or routes in yoyu.toml, or a GGUF path"
    )


def _free_name(base: str, taken: set[str]) -> str:
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


# -- writing -----------------------------------------------------------------


def apply_promotion(path: Path, promotion: Promotion) -> None:
    """Write ``promotion`` into the file at ``path`` (created when missing), checked, atomically."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    before = _parse(text, path)
    edited = set_alias(text, promotion.alias, promotion.value)
    edited = append_block(edited, promotion.block, _block_body(promotion.tables))
    expected = copy.deepcopy(before)
    for section, entries in promotion.tables.items():
        expected.setdefault(section, {}).update(copy.deepcopy(entries))
    expected.setdefault("aliases", {})[promotion.alias] = promotion.value
    _check_and_write(path, edited, expected)


def undo_promotion(path: Path, promotion: Promotion) -> None:
    """Remove the block and restore the alias's old value (or remove the alias)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    before = _parse(text, path)
    edited = remove_block(text, promotion.block)
    edited = set_alias(edited, promotion.alias, promotion.previous)
    expected = copy.deepcopy(before)
    for section, entries in promotion.tables.items():
        for name in entries:
            expected.get(section, {}).pop(name, None)
    aliases = expected.setdefault("aliases", {})
    if promotion.previous is None:
        aliases.pop(promotion.alias, None)
    else:
        aliases[promotion.alias] = promotion.previous
    _check_and_write(path, edited, expected)


def _check_and_write(path: Path, text: str, expected: dict[str, Any]) -> None:
    try:
        after = _parse(text, path)
    except ConfigError:
        after = None
    if after is None or _normal(after) != _normal(expected):
        raise ConfigError(
            f"{path}: cannot edit [aliases] safely (is it written as an inline or dotted table?); "
            "write the alias by hand as a line under [aliases]"
        )
    try:
        parse_gateway_config(after, path)
    except YoyuError as error:
        raise ConfigError(f"{path}: the edited file would not be valid ({error})") from None
    write_atomic(path, text)


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error}); fix the file first") from None
    return document


def _normal(document: dict[str, Any]) -> dict[str, Any]:
    """Empty tables count as absent (removing the last alias leaves ``[aliases]`` behind)."""
    return {key: value for key, value in document.items() if value != {}}


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return load_toml(path)
    except (OSError, TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error})") from None


# -- text edits (pure) ---------------------------------------------------------


def toml_key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }" if pairs else "{}"
    raise TypeError(f"cannot write {value!r} as TOML")


def set_alias(text: str, alias: str, value: str | None) -> str:
    """``text`` with ``alias = "value"`` in ``[aliases]`` (added or replaced; None removes it)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _ALIASES_HEADER.match(line)), None)
    if start is None:
        if value is None:
            return text
        lines = [*_with_newline(lines), "\n" if lines else "", "[aliases]\n"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    name = re.escape(alias)
    key = re.compile(
        rf"^(\s*(?:{name}|\"{name}\"|'{name}')\s*=\s*)(\"[^\"]*\"|'[^']*')(.*)$", re.DOTALL
    )
    found = next((i for i in range(start + 1, end) if key.match(lines[i])), None)
    if found is None:
        new_line = [] if value is None else [f"{toml_key(alias)} = {json.dumps(value)}\n"]
        lines[start + 1 : start + 1] = new_line
    elif value is None:
        del lines[found]
    else:  # only the value changes: indentation, spacing and a trailing comment stay
        match = key.match(lines[found])
        assert match is not None
        lines[found] = f"{match.group(1)}{json.dumps(value)}{match.group(3)}"
    return "".join(lines)


def append_block(text: str, block: str, body: str) -> str:
    if not body:
        return text
    lines = _with_newline(text.splitlines(keepends=True))
    opening = "\n" if lines and lines[-1].strip() else ""
    return (
        "".join(lines) + f"{opening}# >>> yoyu migrate {block}\n{body}# <<< yoyu migrate {block}\n"
    )


def remove_block(text: str, block: str) -> str:
    pattern = re.compile(
        rf"\n?# >>> yoyu migrate {re.escape(block)}\n.*?# <<< yoyu migrate {re.escape(block)}\n",
        re.DOTALL,
    )
    return pattern.sub("", text, count=1)


def _block_body(tables: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    parts = []
    for section in ("backends", "served", "routes"):
        for name, body in tables.get(section, {}).items():
            rows = "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in body.items())
            parts.append(f"[{section}.{toml_key(name)}]\n{rows}")
    return "\n".join(parts)


def _with_newline(lines: list[str]) -> list[str]:
    if lines and not lines[-1].endswith("\n"):
        return [*lines[:-1], lines[-1] + "\n"]
    return lines
