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

The bytes are derived, not copied: ``gguf_layout`` lists the tensors
``convert_hf_to_gguf.py`` writes for the config, ``quant_mix`` gives each the
type llama.cpp's quantizer would, and the published sizes are kept only to
check the derivation (``tests/models/test_catalog.py``). Once the GGUF is on
disk, its tensor table is the truth.

Names: an entry answers to its tag (``qwen3:30b-a3b``), its aliases (the
untagged name, Hugging Face repo ids), and any Ollama tag of the same size with
a flavour and quant suffix (``llama3.1:8b-instruct-q8_0``).
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError
from yoyu.models.gguf_layout import LayoutTensor, gguf_layout
from yoyu.models.hf_config import HfArchitecture, parse_hf_config
from yoyu.models.hf_model import architecture_spec
from yoyu.models.quant_mix import FILE_TYPES, QuantContext, assign_types, tensor_bytes
from yoyu.models.spec import ModelSpec, TensorInfo, summarize_tensors
from yoyu.toml import TOMLDecodeError, load_toml

CATALOG_DIR = Path(__file__).with_name("catalog_data")
DEFAULT_QUANT = "Q4_K_M"
USES = ("chat", "code", "reasoning", "embedding", "vision")
GGUF_ALIGNMENT = 32  # general.alignment: every tensor's data starts on this boundary
# Tokenizer metadata per vocabulary entry: a SentencePiece vocabulary stores token, score and
# type (the real Gemma 3 270M Q4_K_M: 6.5 MB of header for 262,144 tokens, 25 bytes each); a
# byte-level BPE one stores token and type plus about as many merges (40 bytes a token).
SPM_BYTES_PER_TOKEN = 25
BPE_BYTES_PER_TOKEN = 40
HEADER_BYTES_PER_TENSOR = 96  # a tensor-info record: name, dims, type, offset
VISION_TYPE = "F16"  # Ollama keeps a bundled vision tower unquantized

# Ollama's tag suffixes -> llama.cpp file types.
QUANT_SUFFIXES: dict[str, str] = {
    "q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M", "q8_0": "Q8_0", "q4_0": "Q4_0",
    "fp16": "F16", "f16": "F16", "bf16": "BF16", "mxfp4": "MXFP4",
}  # fmt: skip
_TAG_SIZE = re.compile(r"(?:^|-)(?:(\d+)x)?(\d+(?:\.\d+)?)([mbt])(?:-|$)")
_UNKNOWN_QUANT = re.compile(r"[-:](i?q\d\w*|fp\d+|f32|bf16)$")
_SIZE_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB)\s*$", re.IGNORECASE)
_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


@dataclass(frozen=True)
class PublishedSize:
    """A download size as a page writes it: ``"4.9GB"`` is 4.9e9 bytes, give or take
    half its last digit (the rounding the page applied)."""

    text: str
    bytes: int
    rounding_bytes: int

    @classmethod
    def parse(cls, text: str) -> PublishedSize:
        match = _SIZE_TEXT.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a size like 4.9GB or 398MB")
        number, unit = match.group(1), _UNITS[match.group(2).upper()]
        decimals = len(number.partition(".")[2])
        return cls(text, round(float(number) * unit), unit // 10**decimals // 2)


@dataclass(frozen=True)
class CatalogEntry:
    """One model size of the catalog; ``published_*`` and ``files`` are the figures its
    sources state, kept to check the derivation against."""

    name: str
    family: str
    uses: tuple[str, ...]
    aliases: tuple[str, ...]
    default_quant: str
    files: dict[str, PublishedSize]
    architecture: HfArchitecture
    published_params_total: int
    published_params_active: int | None
    published_active_excludes_token_embd: bool
    vision_params: int  # a vision tower Ollama ships in the same blob (F16), else 0
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
    return _load_catalog(CATALOG_DIR)


def find_catalog_entry(ref: str) -> CatalogEntry | None:
    """The entry ``ref`` names (tag, alias or tag with a quant suffix), or None."""
    match = match_catalog(ref)
    return None if match is None else match.entry


def match_catalog(ref: str) -> CatalogMatch | None:
    """Resolve ``ref`` to an entry and a quant (case-insensitive, registry prefix ignored)."""
    index = _name_index(CATALOG_DIR)
    key, quant = _split_quant(_normalize(ref))
    if quant is None and _UNKNOWN_QUANT.search(key):
        return None  # a quant the catalog does not size (q3_k_s, iq4_xs): no guess
    entry = index.get(key) or index.get(key.rpartition("/")[2]) or _by_tag_prefix(key, index)
    if entry is None:
        return None
    return CatalogMatch(entry, quant or entry.default_quant)


def catalog_names() -> list[str]:
    return [entry.name for entry in catalog_entries()]


def catalog_suggestions(ref: str, limit: int = 3) -> list[str]:
    """Close catalog names for a miss: the family's sizes nearest the one asked for
    (``qwen3:7b`` -> ``qwen3:8b``), else names that are spelled alike."""
    key, _ = _split_quant(_normalize(ref))
    unsized = _UNKNOWN_QUANT.search(key)
    if unsized is not None:  # a quant the catalog does not size: offer the ones it does
        match = match_catalog(key[: unsized.start()])
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


def tag_size(name: str) -> float | None:
    """Parameters a tag states: ``8b`` 8e9, ``270m`` 2.7e8, ``8x7b`` 5.6e10, ``30b-a3b`` 3e10."""
    match = _TAG_SIZE.search(name.partition(":")[2] or name)
    if match is None:
        return None
    experts = float(match.group(1)) if match.group(1) else 1.0
    scale = {"m": 1e6, "b": 1e9, "t": 1e12}[match.group(3)]
    return experts * float(match.group(2)) * scale


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
    family = _family_key(spec.name)
    entries = catalog_entries()
    chosen = [entry for entry in entries if _family_key(entry.family) in family]
    if not chosen:
        chosen = [
            entry for entry in entries if entry.architecture.architecture == spec.architecture
        ]
    limit = spec.params_total * 9 // 10
    return [catalog_spec(entry) for entry in chosen if entry.published_params_total < limit]


# --- building a spec -------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _cached_spec(name: str, quant: str, compact: bool) -> ModelSpec:
    entry = next(entry for entry in catalog_entries() if entry.name == name)
    if quant not in FILE_TYPES:
        known = ", ".join(FILE_TYPES)
        raise ConfigError(f"{entry.name}: no quant {quant!r} in the catalog; choose one of {known}")
    arch = entry.architecture
    key = _TableKey(arch, quant, entry.vision_params, "embedding" not in entry.uses)
    tensors = list(_compact_table(key) if compact else _table(key))
    n_tensors = len(_typed_layout(key)[0])
    summary = summarize_tensors(tensors, arch.n_layers, arch.n_experts, arch.n_experts_used)
    return architecture_spec(
        arch,
        tensors,
        summary,
        name=spec_name(entry, quant),
        format="catalog",
        paths=(),
        file_bytes=summary.tensor_bytes + _header_bytes(arch, n_tensors),
        quantization=quant,
    )


def catalog_tensors(entry: CatalogEntry, quant: str) -> list[TensorInfo]:
    """The converted file's tensors with the types the quantizer gives them."""
    key = _TableKey(entry.architecture, quant, entry.vision_params, "embedding" not in entry.uses)
    return list(_table(key))


@dataclass(frozen=True)
class _TableKey:
    """What decides a tensor table: fine-tunes of one base share theirs."""

    arch: HfArchitecture
    quant: str
    vision_params: int
    output_head: bool


@functools.lru_cache(maxsize=512)
def _typed_layout(key: _TableKey) -> tuple[tuple[LayoutTensor, ...], tuple[str, ...]]:
    """The converted file's tensors and the ggml type the quantizer gives each."""
    arch = key.arch
    layout = gguf_layout(arch, output_head=key.output_head)
    if key.vision_params:
        layout.append(LayoutTensor("v.vision_tower.weight", (key.vision_params,), None))
    context = QuantContext(arch.n_layers, arch.n_experts, _is_70b(arch))
    types = assign_types(layout, key.quant, context)
    if key.vision_params:
        types[-1] = VISION_TYPE  # Ollama keeps the vision tower as converted
    return tuple(layout), tuple(types)


@functools.lru_cache(maxsize=512)
def _table(key: _TableKey) -> tuple[TensorInfo, ...]:
    layout, types = _typed_layout(key)
    pairs = zip(layout, types, strict=True)
    return tuple(_tensor(tensor, type_name) for tensor, type_name in pairs)


@functools.lru_cache(maxsize=512)
def _compact_table(key: _TableKey) -> tuple[TensorInfo, ...]:
    """Each block's tensors of one type and row length merged into one (``attn_q``,
    ``attn_k``, ``ffn_gate``... all Q4_K on ``n_embd``-long rows), keeping what placement
    and speed read: the block, the type, the row length, the bytes; expert stacks
    (``_exps``, which ``--n-cpu-moe`` moves) and non-repeating tensors stay as they are.
    A block then has a few tensors instead of a dozen, and the estimator and the speed
    model iterate over tensors."""
    layout, types = _typed_layout(key)
    kept: list[TensorInfo] = []
    groups: dict[tuple[int, str, int], list[int]] = {}
    for tensor, type_name in zip(layout, types, strict=True):
        if tensor.layer is None or "_exps." in tensor.name:
            kept.append(_tensor(tensor, type_name))
            continue
        row = tensor.shape[0] if len(tensor.shape) > 1 else 0
        sums = groups.setdefault((tensor.layer, type_name, row), [0, 0])
        n_params = tensor.n_params
        sums[0] += n_params
        sums[1] += _padded(tensor_bytes(type_name, n_params))
    return tuple(kept + [_merged(*key, *sums) for key, sums in groups.items()])


def _merged(layer: int, type_name: str, row: int, n_params: int, n_bytes: int) -> TensorInfo:
    if row == 0:  # norms and biases: 1-D, never quantized or repacked
        name = f"blk.{layer}.norms.{type_name.lower()}"
        return TensorInfo(name, type_name, (n_params,), n_params, n_bytes, layer)
    name = f"blk.{layer}.merged_{type_name.lower()}_{row}.weight"
    return TensorInfo(name, type_name, (row, n_params // row), n_params, n_bytes, layer)


def _tensor(tensor: LayoutTensor, type_name: str) -> TensorInfo:
    n_bytes = _padded(tensor_bytes(type_name, tensor.n_params))
    return TensorInfo(tensor.name, type_name, tensor.shape, tensor.n_params, n_bytes, tensor.layer)


def _padded(n_bytes: int) -> int:
    return (n_bytes + GGUF_ALIGNMENT - 1) // GGUF_ALIGNMENT * GGUF_ALIGNMENT


def _header_bytes(arch: HfArchitecture, n_tensors: int) -> int:
    """GGUF metadata before the tensor data: the tokenizer dominates it."""
    per_token = SPM_BYTES_PER_TOKEN if _sentencepiece(arch) else BPE_BYTES_PER_TOKEN
    return arch.vocab_size * per_token + n_tensors * HEADER_BYTES_PER_TENSOR


def _sentencepiece(arch: HfArchitecture) -> bool:
    """Gemma's, and the 32k vocabularies of Llama 2, Mistral and Phi-3, are SentencePiece."""
    small_llama = arch.model_type in ("llama", "mistral", "mixtral", "phi3")
    return arch.model_type.startswith("gemma") or (small_llama and arch.vocab_size <= 32_768)


def _is_70b(arch: HfArchitecture) -> bool:
    """llama.cpp's LLM_TYPE_70B: an 80-block Llama or Qwen2 with grouped-query attention."""
    grouped = arch.n_head_kv < arch.n_head
    return arch.architecture in ("llama", "qwen2") and arch.n_layers == 80 and grouped


# --- names ------------------------------------------------------------------------------


def _normalize(ref: str) -> str:
    key = ref.strip().lower()
    for prefix in ("registry.ollama.ai/", "library/", "hf.co/", "huggingface.co/"):
        key = key.removeprefix(prefix)
    return key.removesuffix(":latest")


def _split_quant(key: str) -> tuple[str, str | None]:
    """``llama3.1:8b-instruct-q8_0`` -> (``llama3.1:8b-instruct``, ``Q8_0``);
    ``org/repo-gguf:q4_k_m`` -> (``org/repo``, ``Q4_K_M``)."""
    base, _, tag = key.partition(":")
    if "/" in base:  # a Hugging Face repo: the tag is the quant
        repo = base.removesuffix("-gguf")
        return repo, QUANT_SUFFIXES.get(tag)
    for suffix, quant in QUANT_SUFFIXES.items():
        if tag == suffix:
            return base, quant
        if tag.endswith("-" + suffix):
            return f"{base}:{tag.removesuffix('-' + suffix)}", quant
    return key, None


def _by_tag_prefix(key: str, index: dict[str, CatalogEntry]) -> CatalogEntry | None:
    """A flavoured tag (``8b-instruct``, ``7b-qwen-distill``) answers to its size's entry."""
    base, colon, tag = key.partition(":")
    parts = tag.split("-")
    for end in range(len(parts) - 1, 0, -1):
        entry = index.get(f"{base}{colon}{'-'.join(parts[:end])}")
        if entry is not None:
            return entry
    return None


def _family_key(name: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", name.split(":")[0].lower())


@functools.lru_cache(maxsize=4)
def _name_index(folder: Path) -> dict[str, CatalogEntry]:
    """Every name an entry answers to, lower-cased; a repo id also by its bare repo name."""
    index: dict[str, CatalogEntry] = {}
    bare: dict[str, list[CatalogEntry]] = {}
    for entry in _load_catalog(folder):
        for name in (entry.name, *entry.aliases):
            index.setdefault(name.lower(), entry)
            if "/" in name:
                bare.setdefault(name.lower().rpartition("/")[2], []).append(entry)
    for name, entries in bare.items():
        if len({entry.name for entry in entries}) == 1:
            index.setdefault(name, entries[0])
    return index


# --- loading ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _load_catalog(folder: Path) -> tuple[CatalogEntry, ...]:
    documents = [(path, _read(path)) for path in sorted(folder.glob("*.toml"))]
    shared = {
        name: config
        for _, document in documents
        for name, config in document.get("architectures", {}).items()
    }
    entries: list[CatalogEntry] = []
    for path, document in documents:
        family = _Family.of(document, path, shared)
        entries.extend(
            family.entry(name, body) for name, body in document.get("models", {}).items()
        )
    return tuple(entries)


def _read(path: Path) -> dict[str, Any]:
    try:
        return load_toml(path)
    except (OSError, TOMLDecodeError) as error:
        raise ConfigError(f"{path}: the model catalog cannot be read ({error})") from None


@dataclass(frozen=True)
class _Family:
    """What a family file says once for all its entries."""

    path: Path
    name: str
    uses: tuple[str, ...]
    files_source: str
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
            basis=str(document.get("basis", "")),
            architectures=architectures,
        )

    def entry(self, name: str, body: dict[str, Any]) -> CatalogEntry:
        where = f"{self.path} [{name}]"
        files = self._files(body, where)
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
            family=str(body.get("family", self.name)),
            uses=tuple(body.get("uses", self.uses)),
            aliases=tuple(body.get("aliases", ())),
            default_quant=default,
            files=files,
            architecture=parse_hf_config(self._config(body, where), where),
            published_params_total=int(body["params"]),
            published_params_active=body.get("params_active"),
            published_active_excludes_token_embd=bool(
                body.get("active_excludes_token_embd", False)
            ),
            vision_params=int(body.get("vision_params", 0)),
            sources=self._sources(name, body),
            basis=str(body.get("basis", self.basis)),
        )

    def _config(self, body: dict[str, Any], where: str) -> dict[str, Any]:
        """The entry's config: a shared architecture (``arch``), overridden by its own keys."""
        shared_name = body.get("arch")
        if shared_name is None:
            return dict(body.get("config", {}))
        if shared_name not in self.architectures:
            raise ConfigError(f"{where}: no shared architecture {shared_name!r}")
        return {**self.architectures[shared_name], **body.get("config", {})}

    def _files(self, body: dict[str, Any], where: str) -> dict[str, PublishedSize]:
        files: dict[str, PublishedSize] = {}
        for quant, text in body.get("files", {}).items():
            if quant not in FILE_TYPES:
                raise ConfigError(f"{where}: unknown quant {quant!r} in files")
            try:
                files[quant] = PublishedSize.parse(str(text))
            except ValueError as error:
                raise ConfigError(f"{where}: {error}") from None
        return files

    def _sources(self, name: str, body: dict[str, Any]) -> tuple[str, ...]:
        sources = (
            [f"https://huggingface.co/{body['hf']}/blob/main/config.json"] if body.get("hf") else []
        )
        if body.get("files"):
            sources.append(str(body.get("files_source", self.files_source or _ollama_page(name))))
        return (*sources, *body.get("sources", ()))


def _ollama_page(name: str) -> str:
    return f"https://ollama.com/library/{name.partition(':')[0]}/tags"
