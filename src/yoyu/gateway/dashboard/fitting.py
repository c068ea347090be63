"""The Plan page's "What fits here": every catalog model and quant ranked on this machine
or a preset.

The ranking is ``rank_catalog`` with ``fit_request``'s settings, as ``yoyu fit`` and
the MCP ``fit_models`` tool call it; the query's fields are ``yoyu fit``'s flags
(``family``, ``use``, ``min_ctx``, ``max_size``, ``default_quant``, ``machine``,
``free``, ``gpu_free``) and the answer is what ``yoyu fit --json`` prints for them.
A field that cannot be read is the asker's mistake (400, one line), as a bad flag is
the CLI user's; so is a field the page does not know, so that a misspelt filter is
never silently ignored. Another machine is only ever a preset: the dashboard reads
no machine file a request names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from yoyu.errors import BadRequestError
from yoyu.machine.machine_file import parse_size
from yoyu.machine.presets import list_presets, load_machine
from yoyu.machine.types import Machine
from yoyu.models.catalog import USES, catalog_entries
from yoyu.plan.ranking import FitFilters, fit_request, rank_catalog

FIELDS = ("machine", "family", "use", "min_ctx", "max_size", "default_quant", "free", "gpu_free")
_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class FitQuery:
    """What to rank and where: ``yoyu fit``'s flags, read."""

    machine: str | None  # a preset; None: this machine
    filters: FitFilters
    ram_free_bytes: int | None
    gpu_free_bytes: int | None


def fit_report(query: FitQuery, here: Callable[[], Machine]) -> dict[str, Any]:
    """``yoyu fit --json``'s answer for the query (``here``: this machine, probed)."""
    machine = preset(query.machine) if query.machine else here()
    request = fit_request(query.ram_free_bytes, query.gpu_free_bytes)
    return rank_catalog(catalog_entries(), machine, request, query.filters).to_dict()


def preset(name: str) -> Machine:
    """A machine preset by name; anything else (a path too) is refused."""
    if name not in {ref.name for ref in list_presets()}:
        raise BadRequestError(
            f"machine {name!r} is no preset; leave it empty for this machine "
            "or name one of `yoyu machine --list-presets`",
            param="machine",
        )
    return load_machine(name)


def parse_fit_query(items: Iterable[tuple[str, str]]) -> FitQuery:
    """The query string's fields (each at most once; empty is not given)."""
    given: dict[str, str] = {}
    for name, value in items:
        if name not in FIELDS:
            known = ", ".join(FIELDS)
            raise BadRequestError(f"unknown field {name!r}; the fields are {known}", param=name)
        if name in given:
            raise BadRequestError(f"give {name} once, not twice", param=name)
        given[name] = value.strip()
    use = given.get("use") or None
    if use is not None and use not in USES:
        raise BadRequestError(f"unknown use {use!r}; choose one of {', '.join(USES)}", param="use")
    filters = FitFilters(
        family=given.get("family") or None, use=use,
        min_ctx=_tokens("min_ctx", given.get("min_ctx", "")),
        max_size_bytes=size_field("max_size", given.get("max_size")),
        all_quants=not _yes("default_quant", given.get("default_quant", "")),
    )  # fmt: skip
    return FitQuery(
        machine=given.get("machine") or None,
        filters=filters,
        ram_free_bytes=size_field("free", given.get("free")),
        gpu_free_bytes=size_field("gpu_free", given.get("gpu_free")),
    )


def size_field(name: str, value: object) -> int | None:
    """Bytes from a size as people write it (``11GiB``, ``16GB``) or a byte count, as
    ``yoyu fit``'s size flags read it; None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().startswith("-"):
        raise BadRequestError(
            f"{name} must not be negative, got {value!r}; write e.g. 11GiB", param=name
        )
    try:
        size: int = parse_size(value)
    except ValueError:
        raise BadRequestError(
            f"{name} {value!r} is not a size; write e.g. 11GiB or 512MiB", param=name
        ) from None
    return size


def _tokens(name: str, text: str) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise BadRequestError(f"{name} is a number of tokens, 0 or more, not {text!r}", param=name)
    return int(text)


def _yes(name: str, text: str) -> bool:
    if text.lower() in _YES:
        return True
    if not text or text.lower() in _NO:
        return False
    raise BadRequestError(f"{name} is true or false, not {text!r}", param=name)
