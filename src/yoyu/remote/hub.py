"""The Hugging Face Hub, through ``huggingface_hub``: which files, where, what they hash to.

Every Hub call goes through the library (it honours ``HF_ENDPOINT``, the token,
proxies and the Hub's error headers): ``HfApi.model_info(files_metadata=True)``
lists a repo's files with their sizes and LFS sha256, ``hf_hub_url`` +
``get_hf_file_metadata`` (one HEAD) say where a file's bytes are (the CDN
location it redirects to), its size, its etag (the sha256 for LFS files) and
the commit. Its errors become one-line ``RemoteModelError``s here.

``HF_ENDPOINT`` is read when the library is imported; yoyu reads it per call
and passes it on, so a test (or a caller) can point one process at another hub.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from yoyu.errors import RemoteModelError
from yoyu.models.discover import SPLIT_GGUF
from yoyu.models.gguf_split import split_part_names, split_stem
from yoyu.remote.refs import HubRef

_QUANT_LABEL = re.compile(r"^(?:UD-)?(?:I?Q\d|TQ\d|F16|F32|BF16|MXFP4)", re.IGNORECASE)


@dataclass(frozen=True)
class HubFile:
    """A file of a Hub repo, pinned to one commit."""

    repo_id: str
    path: str
    revision: str  # what the user asked for ("main" by default): the cache's refs/<revision>
    commit: str
    location: str  # where its bytes are (a CDN URL when the Hub redirects)
    size: int
    etag: str  # the sha256 for LFS files: the blob's name in the HF cache

    @property
    def display(self) -> str:
        return f"hf://{self.repo_id}/{self.path}"


def hub_endpoint(env: Mapping[str, str]) -> str | None:
    """``HF_ENDPOINT`` as set now (None: the library's own default)."""
    return env.get("HF_ENDPOINT", "").rstrip("/") or None


@contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """Turn huggingface_hub's and the network's errors into one-line RemoteModelErrors."""
    import httpx2
    from huggingface_hub import errors

    try:
        yield
    except errors.GatedRepoError:
        raise RemoteModelError(
            f"{what}: the repo is gated; accept its terms on the Hub and log in (hf auth login)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise RemoteModelError(
            f"{what}: no such repo on the Hub (or it is private: log in with hf auth login)"
        ) from None
    except errors.RevisionNotFoundError:
        raise RemoteModelError(f"{what}: no such revision in the repo") from None
    except errors.RemoteEntryNotFoundError:
        raise RemoteModelError(f"{what}: no such file in the repo; check the path") from None
    except errors.HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise RemoteModelError(f"{what}: the Hub answered HTTP {status}; try again") from None
    except (httpx2.HTTPError, errors.FileMetadataError, OSError) as error:
        raise RemoteModelError(
            f"{what}: cannot reach the Hub ({type(error).__name__}); check the network "
            "or HF_ENDPOINT"
        ) from None


def hub_gguf_paths(ref: HubRef, env: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
    """The repo paths of every part of the GGUF ``ref`` names, and the commit when a
    listing pinned it (None: the first file's HEAD will)."""
    if ref.path is not None:
        folder, name = posixpath.split(ref.path)
        names = split_part_names(name, ref.display) or (name,)
        return tuple(posixpath.join(folder, part) for part in names), None
    assert ref.quant is not None
    listing = list_repo_files(ref, env)
    return pick_quant(ref, tuple(listing.sizes)), listing.commit


@dataclass(frozen=True)
class RepoListing:
    """A repo's files at one commit: sizes and the LFS sha256 of each large file."""

    commit: str
    sizes: dict[str, int]
    sha256: dict[str, str]


def list_repo_files(ref: HubRef, env: Mapping[str, str]) -> RepoListing:
    """``/api/models/ORG/REPO[/revision/REV]?blobs=true``: every file with its metadata."""
    from huggingface_hub import HfApi

    with hub_errors(f"hf://{ref.repo_id}"):
        info = HfApi(endpoint=hub_endpoint(env)).model_info(
            ref.repo_id, revision=ref.revision, files_metadata=True
        )
    siblings = info.siblings or []
    return RepoListing(
        commit=info.sha or ref.revision or "main",
        sizes={item.rfilename: item.size or 0 for item in siblings},
        sha256={item.rfilename: item.lfs.sha256 for item in siblings if item.lfs is not None},
    )


def hub_file(
    repo_id: str, path: str, revision: str, commit: str | None, env: Mapping[str, str]
) -> HubFile:
    """One HEAD on the file's resolve URL: where its bytes are, size, etag, commit."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = hub_endpoint(env)
    url = hf_hub_url(repo_id, path, revision=commit or revision, endpoint=endpoint)
    display = f"hf://{repo_id}/{path}"
    with hub_errors(display):
        metadata = get_hf_file_metadata(url, endpoint=endpoint, retry_on_errors=True)
    if metadata.etag is None or metadata.size is None or metadata.commit_hash is None:
        raise RemoteModelError(
            f"{display}: the Hub's answer lacks an etag, size or commit; is HF_ENDPOINT a Hub?"
        )
    return HubFile(
        repo_id=repo_id, path=path, revision=revision, commit=metadata.commit_hash,
        location=metadata.location, size=metadata.size, etag=metadata.etag,
    )  # fmt: skip


def hub_headers(file: HubFile, env: Mapping[str, str]) -> dict[str, str]:
    """The Hub's headers (token included) for reads from the Hub itself; none for a CDN."""
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # lazy export

    endpoint = hub_endpoint(env) or constants.ENDPOINT
    same_host = urlsplit(file.location).netloc == urlsplit(endpoint).netloc
    return dict(build_hf_headers()) if same_host else {}


# --- picking a quant ---------------------------------------------------------------


def pick_quant(ref: HubRef, paths: tuple[str, ...]) -> tuple[str, ...]:
    """All parts of the one GGUF model in ``paths`` whose name ends in the quant tag."""
    assert ref.quant is not None
    models = _gguf_models(paths)
    matching = [first for first in models if _quant_matches(first, ref.quant)]
    if not matching:
        present = sorted({_quant_label(first) for first in models})
        listed = ", ".join(present) if present else "no GGUF files at all"
        raise RemoteModelError(
            f"{ref.display}: no {ref.quant} GGUF in hf://{ref.repo_id}; it has: {listed}; "
            f"pick one of those as hf://{ref.repo_id}:QUANT"
        )
    if len(matching) > 1:
        raise RemoteModelError(
            f"{ref.display}: {len(matching)} GGUF models match {ref.quant} "
            f"({', '.join(matching[:4])}); name one as hf://{ref.repo_id}/FILE.gguf"
        )
    return _parts_present(ref, matching[0], paths)


def _gguf_models(paths: tuple[str, ...]) -> list[str]:
    """The first file of each GGUF model (split parts once), vision projectors left out."""
    firsts = []
    for path in sorted(paths):
        name = posixpath.basename(path)
        if not name.lower().endswith(".gguf") or name.lower().startswith("mmproj"):
            continue
        match = SPLIT_GGUF.match(name)
        if match is None or int(match["index"]) == 1:
            firsts.append(path)
    return firsts


def _quant_label(path: str) -> str:
    """The quant a file name ends with ("...-Q4_K_M.gguf" -> Q4_K_M), else the name."""
    stem = split_stem(posixpath.basename(path))
    last = re.split(r"[-.]", stem)[-1]
    return last.upper() if _QUANT_LABEL.match(last) else posixpath.basename(path)


def _quant_matches(path: str, quant: str) -> bool:
    stem = split_stem(posixpath.basename(path)).upper()
    return stem == quant or stem.endswith((f"-{quant}", f".{quant}"))


def _parts_present(ref: HubRef, first: str, paths: tuple[str, ...]) -> tuple[str, ...]:
    folder, name = posixpath.split(first)
    parts = tuple(posixpath.join(folder, part) for part in split_part_names(name) or (name,))
    missing = [part for part in parts if part not in paths]
    if missing:
        raise RemoteModelError(
            f"{ref.display}: part {missing[0]} of {first} is not in the repo; the upload is "
            "incomplete, name another quant"
        )
    return parts
