"""Well-known models as ``ModelSpec`` estimates, for planning before a download.

The catalog is data: ``catalog_data/<family>.toml``, one file per family of the
Ollama library. Each entry is one model size (one Ollama tag) and holds:

- ``config``: the architecture in ``config.json`` vocabulary, copied from the
  model's own config (parsed by ``hf_config``, the same code that reads a real
  folder);
- ``files``: the download size of each quant as its page publishes it
  (``"4.9GB"``: Ollama writes decimal units, rounded to two or three digits),
  and the quant the untagged name pulls (``default``);
- ``params`` (and ``params_active`` for a MoE): what the model card states;
- where each figure comes from (``hf`` names the config, the family's
  ``files_source`` the sizes) and on what ``basis`` it was written.

The bytes are derived, not copied (``catalog_tables``: the tensors
``convert_hf_to_gguf.py`` writes for the config, typed as llama.cpp's quantizer
types them); the published sizes are kept only to check the derivation
(``tests/models/test_catalog.py``). Once the GGUF is on disk, its tensor table
is the truth.

Names: an entry answers to its tag (``qwen3:30b-a3b``), its aliases (the
untagged name, Hugging Face repo ids), and any Ollama tag of the same size with
a flavour and quant suffix (``llama3.1:8b-instruct-q8_0``).

Reading: the files come through ``catalog_files`` (a parsed copy kept in the user's
cache, checked against the files' content), and an entry is built from its table only
when it is asked for, so ``yoyu plan NAME`` builds one entry (a "smaller model" move,
its family's), while ``catalog_entries`` builds them all.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError
from yoyu.models.catalog_files import catalog_documents
from yoyu.models.catalog_tables import TableKey, compact_table, header_bytes, tensor_table
from yoyu.models.hf_config import HfArchitecture, parse_hf_config
from yoyu.models.hf_model import architecture_spec
from yoyu.models.model_tags import (
    by_tag_prefix,
    family_key,
    normalize,
    split_quant,
    tag_size,
    unknown_quant_at,
)
from yoyu.models.quant_mix import FILE_TYPES
from yoyu.models.spec import ModelSpec, TensorInfo, TensorSummary, summarize_tensors

CATALOG_DIR = Path(__file__).with_name("catalog_data")
DEFAULT_QUANT = "Q4_K_M"
USES = ("chat", "code", "reasoning", "embedding", "vision")
BASES = ("recalled", "copied")  # how a page's figures were written down (catalog_data/README)

_SIZE_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


@dataclass(frozen=True)
class PublishedSize:
    """A download size as a page writes it: ``"4.9GB"`` is 4.9e9 bytes, give or take
    half its last digit (the rounding the page applied); ``"4920739168B"``, a page
    that gives the bytes, is exact."""

    text: str
    bytes: int
    rounding_bytes: int

    @classmethod
    def parse(cls, text: str) -> PublishedSize:
        match = _SIZE_TEXT.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a size like 4.9GB, 398MB or 4920739168B")
        number, unit = match.group(1), _UNITS[match.group(2).upper()]
        decimals = len(number.partition(".")[2])
        return cls(text, round(float(number) * unit), unit // 10**decimals // 2)


@dataclass(frozen=True)
class PublishedFiles:
    """The file sizes one page publishes for a model, and how they were written down:
    ``basis`` "recalled" (from knowledge of the page) or "copied" (from the page itself,
    read through the public copy ``via`` where that differs from ``source``)."""

    source: str
    basis: str
    files: dict[str, PublishedSize]
    via: str = ""

    @property
    def host(self) -> str:
        return self.source.split("/")[2] if "://" in self.source else self.source


@dataclass(frozen=True)
class CatalogEntry:
    """One model size of the catalog; ``published_*`` and ``published`` are the figures its
    sources state, kept to check the derivation against. ``files`` merges the pages' sizes,
    the first page's figure winning where two publish the same quant."""

    name: str
    family: str
    uses: tuple[str, ...]
    aliases: tuple[str, ...]
    default_quant: str
    files: dict[str, PublishedSize]
    published: tuple[PublishedFiles, ...]
    architecture: HfArchitecture
    published_params_total: int
    published_params_active: int | None
    published_active_excludes_token_embd: bool
    vision_params: int  # a vision tower Ollama ships in its blob or an mmproj (F16), else 0
    sources: tuple[str, ...]
    basis: str

    @property
    def quantization(self) -> str:
        return self.default_quant

    @property
    def ollama_size_bytes(self) -> int | None:
        published = self.files.get(self.default_quant)
        return published.bytes if published else None

    @property
    def quants(self) -> tuple[str, ...]:
        """The default quant first, then the other published ones."""
        return (self.default_quant, *(q for q in self.files if q != self.default_quant))


@dataclass(frozen=True)
class CatalogMatch:
    """A name resolved to an entry and the quant it asks for."""

    entry: CatalogEntry
    quant: str


def catalog_entries() -> tuple[CatalogEntry, ...]:
    """Every entry of the bundled catalog, family files in name order."""
    return _catalog(CATALOG_DIR).entries()


def load_catalog(folder: Path) -> tuple[CatalogEntry, ...]:
    """Every entry of the catalog files in ``folder`` (the bundled one: ``catalog_entries``)."""
    return _catalog(folder).entries()


def find_catalog_entry(ref: str) -> CatalogEntry | None:
    """The entry ``ref`` names (tag, alias or tag with a quant suffix), or None."""
    match = match_catalog(ref)
    return None if match is None else match.entry


def match_catalog(ref: str) -> CatalogMatch | None:
    """Resolve ``ref`` to an entry and a quant (case-insensitive, registry prefix ignored)."""
    catalog = _catalog(CATALOG_DIR)
    index = catalog.names
    key, quant = split_quant(normalize(ref))
    if quant is None and unknown_quant_at(key) is not None:
        return None  # a quant the catalog does not size (q3_k_s, iq4_xs): no guess
    name = index.get(key) or index.get(key.rpartition("/")[2]) or by_tag_prefix(key, index)
    if name is None:
        return None
    entry = catalog.entry(name)
    return CatalogMatch(entry, quant or entry.default_quant)


def catalog_names() -> list[str]:
    return [entry.name for entry in catalog_entries()]


def catalog_suggestions(ref: str, limit: int = 3) -> list[str]:
    """Close catalog names for a miss: the family's sizes nearest the one asked for
    (``qwen3:7b`` -> ``qwen3:8b``), else names that are spelled alike."""
    key, _ = split_quant(normalize(ref))
    unsized = unknown_quant_at(key)
    if unsized is not None:  # a quant the catalog does not size: offer the ones it does
        match = match_catalog(key[:unsized])
        if match is not None:
            return [spec_name(match.entry, quant) for quant in match.entry.quants][:limit]
    family, _, tag = key.partition(":")
    sizes = [entry for entry in catalog_entries() if entry.family.lower() == family]
    asked = tag_size(tag)
    if sizes and asked:
        sizes.sort(key=lambda entry: abs(math.log(tag_size(entry.name) or 1.0) - math.log(asked)))
        return [entry.name for entry in sizes[:limit]]
    if sizes:
        return [entry.name for entry in sizes[:limit]]
    names = [name for entry in catalog_entries() for name in (entry.name, *entry.aliases)]
    return difflib.get_close_matches(ref, names, n=limit, cutoff=0.6)


def catalog_model(ref: str) -> ModelSpec | None:
    """The estimated ``ModelSpec`` of a catalog model, or None if ``ref`` is not in it."""
    match = match_catalog(ref)
    return None if match is None else catalog_spec(match.entry, match.quant)


def catalog_spec(
    entry: CatalogEntry, quant: str | None = None, *, compact: bool = False
) -> ModelSpec:
    """The entry as a ``ModelSpec`` in ``quant`` (default: the untagged name's).

    ``compact``: each block's non-expert tensors of one type and row length merged
    into one (``compact_tensors``), for ranking the whole catalog in well under a
    second; the bytes per device stay those of the full table."""
    return _cached_spec(entry.name, quant or entry.default_quant, compact)


def compact_spec(entry: CatalogEntry, quant: str) -> ModelSpec:
    """``catalog_spec(entry, quant, compact=True)``, in the shape ``rank_catalog`` calls."""
    return catalog_spec(entry, quant, compact=True)


def catalog_file_bytes(entry: CatalogEntry, quant: str) -> int:
    """The derived size of the download: tensors, vision tower and GGUF header."""
    return catalog_spec(entry, quant).file_bytes


def spec_name(entry: CatalogEntry, quant: str) -> str:
    return entry.name if quant == entry.default_quant else f"{entry.name}-{quant.lower()}"


def relatives_of(spec: ModelSpec) -> list[ModelSpec]:
    """Smaller catalog models a "smaller model" move may propose for ``spec``: the same
    family when the name says it, else the same architecture (specs built only for them)."""
    family = family_key(spec.name)
    catalog = _catalog(CATALOG_DIR)
    chosen = catalog.entries_of(lambda name: family_key(name) in family)
    if not chosen:
        chosen = [
            entry
            for entry in catalog.entries()
            if entry.architecture.architecture == spec.architecture
        ]
    limit = spec.params_total * 9 // 10
    return [catalog_spec(entry) for entry in chosen if entry.published_params_total < limit]


# --- building a spec -------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _cached_spec(name: str, quant: str, compact: bool) -> ModelSpec:
    entry = _catalog(CATALOG_DIR).entry(name)
    if quant not in FILE_TYPES:
        known = ", ".join(FILE_TYPES)
        raise ConfigError(f"{entry.name}: no quant {quant!r} in the catalog; choose one of {known}")
    arch = entry.architecture
    key = table_key(entry, quant)
    tensors, summary = _table(key, compact)
    return architecture_spec(
        arch,
        tensors,
        dataclasses.replace(summary, type_bytes=dict(summary.type_bytes)),  # each spec its own
        name=spec_name(entry, quant),
        format="catalog",
        paths=(),
        file_bytes=summary.tensor_bytes + header_bytes(key),
        quantization=quant,
    )


@functools.lru_cache(maxsize=1024)
def _table(key: TableKey, compact: bool) -> tuple[tuple[TensorInfo, ...], TensorSummary]:
    """A table and its totals, summed once for the fine-tunes that share it."""
    arch = key.arch
    tensors = compact_table(key) if compact else tensor_table(key)
    return tensors, summarize_tensors(tensors, arch.n_layers, arch.n_experts, arch.n_experts_used)


def catalog_tensors(entry: CatalogEntry, quant: str) -> list[TensorInfo]:
    """The converted file's tensors with the types the quantizer gives them."""
    return list(tensor_table(table_key(entry, quant)))


def table_key(entry: CatalogEntry, quant: str) -> TableKey:
    """What decides the entry's tensor table in ``quant`` (embedding models have no LM head)."""
    return TableKey(entry.architecture, quant, entry.vision_params, "embedding" not in entry.uses)


# --- loading ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _catalog(folder: Path) -> _Catalog:
    return _Catalog(folder)


class _Catalog:
    """The catalog's files, read; each entry is built when it is first asked for, so looking
    one name up (``yoyu plan NAME``) builds that entry, not all of them. Two threads
    asking at once may both build one: equal values, either is kept."""

    def __init__(self, folder: Path) -> None:
        documents = catalog_documents(folder)
        shared = {
            name: config
            for _, document in documents
            for name, config in document.get("architectures", {}).items()
        }
        self._rows: list[tuple[_Family, str, dict[str, Any]]] = []
        for path, document in documents:
            family = _Family.of(document, path, shared)
            self._rows.extend(
                (family, name, body) for name, body in document.get("models", {}).items()
            )
        self._built: dict[int, CatalogEntry] = {}
        self._position: dict[str, int] = {}
        for position, (_, name, _) in enumerate(self._rows):
            self._position.setdefault(name, position)
        self.names = self._name_index()

    def entry(self, name: str) -> CatalogEntry:
        """The entry ``name`` (its tag, as the file spells it)."""
        return self._at(self._position[name])

    def entries(self) -> tuple[CatalogEntry, ...]:
        return tuple(self._at(position) for position in range(len(self._rows)))

    def entries_of(self, family: Callable[[str], bool]) -> list[CatalogEntry]:
        """The entries whose family name ``family`` accepts, in order (only they are built)."""
        return [
            self._at(position)
            for position, (owner, _, body) in enumerate(self._rows)
            if family(owner.family_of(body))
        ]

    def _at(self, position: int) -> CatalogEntry:
        entry = self._built.get(position)
        if entry is None:
            family, name, body = self._rows[position]
            entry = self._built[position] = family.entry(name, body)
        return entry

    def _name_index(self) -> dict[str, str]:
        """Every name an entry answers to, lower-cased, to the entry's own name; a repo id
        also by its bare repo name where only one entry answers to that."""
        index: dict[str, str] = {}
        bare: dict[str, set[str]] = {}
        for _, name, body in self._rows:
            for alias in (name, *body.get("aliases", ())):
                index.setdefault(alias.lower(), name)
                if "/" in alias:
                    bare.setdefault(alias.lower().rpartition("/")[2], set()).add(name)
        for alias, names in bare.items():
            if len(names) == 1:
                index.setdefault(alias, next(iter(names)))
        return index


@dataclass(frozen=True)
class _Family:
    """What a family file says once for all its entries."""

    path: Path
    name: str
    uses: tuple[str, ...]
    files_source: str
    files_basis: str  # how the family's pages were read, where an entry names none
    files_via: str
    basis: str
    architectures: dict[str, dict[str, Any]]

    @classmethod
    def of(
        cls, document: dict[str, Any], path: Path, architectures: dict[str, dict[str, Any]]
    ) -> _Family:
        uses = tuple(document.get("uses", ("chat",)))
        unknown = [use for use in uses if use not in USES]
        if unknown:
            raise ConfigError(f"{path}: unknown use {unknown[0]!r}; choose from {', '.join(USES)}")
        return cls(
            path=path,
            name=str(document.get("family", path.stem)),
            uses=uses,
            files_source=str(document.get("files_source", "")),
            files_basis=str(document.get("files_basis", "")),
            files_via=str(document.get("files_via", "")),
            basis=str(document.get("basis", "")),
            architectures=architectures,
        )

    def entry(self, name: str, body: dict[str, Any]) -> CatalogEntry:
        where = f"{self.path} [{name}]"
        published = self._published(name, body, where)
        files: dict[str, PublishedSize] = {}
        for page in published:  # the first page's figure wins, its order first
            for quant, size in page.files.items():
                files.setdefault(quant, size)
        default = str(
            body.get(
                "default",
                DEFAULT_QUANT if DEFAULT_QUANT in files else next(iter(files), DEFAULT_QUANT),
            )
        )
        if default not in FILE_TYPES:
            raise ConfigError(f"{where}: unknown default quant {default!r}")
        return CatalogEntry(
            name=name,
            family=self.family_of(body),
            uses=tuple(body.get("uses", self.uses)),
            aliases=tuple(body.get("aliases", ())),
            default_quant=default,
            files=files,
            published=published,
            architecture=parse_hf_config(self._config(body, where), where),
            published_params_total=int(body["params"]),
            published_params_active=body.get("params_active"),
            published_active_excludes_token_embd=bool(
                body.get("active_excludes_token_embd", False)
            ),
            vision_params=int(body.get("vision_params", 0)),
            sources=self._sources(body, published),
            basis=str(body.get("basis", self.basis)),
        )

    def family_of(self, body: dict[str, Any]) -> str:
        """An entry's family: its own ``family``, else the file's."""
        return str(body.get("family", self.name))

    def _config(self, body: dict[str, Any], where: str) -> dict[str, Any]:
        """The entry's config: a shared architecture (``arch``), overridden by its own keys."""
        shared_name = body.get("arch")
        if shared_name is None:
            return dict(body.get("config", {}))
        if shared_name not in self.architectures:
            raise ConfigError(f"{where}: no shared architecture {shared_name!r}")
        return {**self.architectures[shared_name], **body.get("config", {})}

    def _published(self, name: str, body: dict[str, Any], where: str) -> tuple[PublishedFiles, ...]:
        """The entry's own ``files`` (from ``files_source``, else the family's page read as
        the family's ``files_basis`` and ``files_via`` say), then each ``[[published]]``
        page's."""
        pages: list[dict[str, Any]] = list(body.get("published", ()))
        if body.get("files"):
            source = body.get("files_source", self.files_source or _ollama_page(name))
            basis, via = body.get("files_basis"), body.get("files_via", "")
            if basis is None and "files_source" not in body and self.files_basis:
                basis, via = self.files_basis, self.files_via  # the family's page, as read
            basis = basis or body.get("basis", self.basis)
            own = {"source": source, "basis": basis, "via": via, "files": body["files"]}
            pages.insert(0, own)
        return tuple(_page(page, where) for page in pages)

    def _sources(
        self, body: dict[str, Any], published: tuple[PublishedFiles, ...]
    ) -> tuple[str, ...]:
        sources = (
            [f"https://huggingface.co/{body['hf']}/blob/main/config.json"] if body.get("hf") else []
        )
        sources.extend(page.source for page in published)
        return (*sources, *body.get("sources", ()))


def _page(page: dict[str, Any], where: str) -> PublishedFiles:
    source, basis = str(page.get("source", "")), str(page.get("basis", ""))
    if not source.startswith("https://"):
        raise ConfigError(f"{where}: each page of sizes needs its https source, not {source!r}")
    if basis not in BASES:
        raise ConfigError(f"{where}: basis {basis!r}; choose from {', '.join(BASES)}")
    return PublishedFiles(
        source, basis, _files(page.get("files", {}), where), str(page.get("via", ""))
    )


def _files(table: dict[str, Any], where: str) -> dict[str, PublishedSize]:
    files: dict[str, PublishedSize] = {}
    for quant, text in table.items():
        if quant not in FILE_TYPES:
            raise ConfigError(f"{where}: unknown quant {quant!r} in files")
        try:
            files[quant] = PublishedSize.parse(str(text))
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None
    return files


def _ollama_page(name: str) -> str:
    return f"https://ollama.com/library/{name.partition(':')[0]}/tags"
