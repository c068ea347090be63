"""``yoyu pull``'s download: a Hub GGUF into the Hugging Face cache, resumable, checked.

Each part goes to ``<HF cache>/models--ORG--REPO/blobs/<etag>.incomplete``
(the name huggingface_hub used for resumable downloads before 2.x), is
resumed from its length by ``download``, and must hash to the sha256 the Hub
lists for it before it becomes the blob ``blobs/<etag>``. Then
``hf_hub_download`` itself, finding the blob in place, writes
``refs/<revision>`` and the ``snapshots/<commit>/<path>`` link: the layout is
the library's own, so llama.cpp's ``-hf``, LM Studio, ``hf`` and ``yoyu models``
find the file.

A part whose hash is wrong is deleted, not kept: its bad bytes could be
anywhere in it, so resuming from it would only end in the same mismatch;
the next ``yoyu pull`` downloads it afresh. An interrupted part is kept, so
the next pull resumes it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from yoyu.errors import RemoteModelError
from yoyu.models.discover import hf_cache_dir
from yoyu.remote.download import Download, Source, download
from yoyu.remote.hub import HubFile, hub_endpoint, hub_errors, list_repo_files
from yoyu.remote.reader import TIMEOUT, RemoteGGUF, RemoteModel
from yoyu.remote.refs import HubRef
from yoyu.units import MIB

PartProgress = Callable[[RemoteGGUF, int], None]  # (part, bytes it holds so far)


@dataclass(frozen=True)
class PulledFile:
    """One part in the HF cache: where, how big, and what this pull did for it."""

    name: str
    path: str  # the snapshot path: what llama.cpp and other tools open
    size_bytes: int
    sha256: str | None  # the Hub's sha256 the file was checked against (None: none listed)
    downloaded_bytes: int  # received by this pull
    resumed_from_bytes: int  # already in the partial file when this pull began
    already_present: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pull_model(
    model: RemoteModel,
    *,
    env: Mapping[str, str] | None = None,
    progress: PartProgress | None = None,
) -> tuple[PulledFile, ...]:
    """Download every part of ``model`` (read from the Hub) into the HF cache."""
    environ = os.environ if env is None else env
    hub_files = [_hub_file(remote) for remote in model.files]
    first = hub_files[0]
    listing = list_repo_files(HubRef(first.repo_id, first.commit, None, None), environ)
    with httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client:
        return tuple(
            _pull_part(client, remote, listing.sha256.get(hub.path), environ, progress)
            for remote, hub in zip(model.files, hub_files, strict=True)
        )


def _hub_file(remote: RemoteGGUF) -> HubFile:
    if remote.hub is None:
        raise RemoteModelError(
            f"{remote.name}: yoyu pull downloads from the Hugging Face Hub (hf://ORG/REPO/FILE or "
            "hf://ORG/REPO:QUANT) into its cache; download other URLs with curl -C - -O URL"
        )
    return remote.hub


def _pull_part(
    client: httpx.Client,
    remote: RemoteGGUF,
    sha256: str | None,
    env: Mapping[str, str],
    progress: PartProgress | None,
) -> PulledFile:
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import WeakFileLock  # type: ignore[attr-defined]  # lazy export

    hub = _hub_file(remote)
    cache = hf_cache_dir(env)
    folder = repo_folder_name(repo_id=hub.repo_id, repo_type="model")
    blob = cache / folder / "blobs" / hub.etag
    done = Download(0, 0, restarted=False)
    present = blob.exists()
    if not present:
        blob.parent.mkdir(parents=True, exist_ok=True)
        lock = cache / ".locks" / folder / f"{hub.etag}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with WeakFileLock(str(lock)):
            done = _download_blob(client, remote, blob, sha256, progress)
    pointer = _link_snapshot(hub, cache, env, blob)
    return PulledFile(
        name=remote.name, path=str(pointer), size_bytes=hub.size, sha256=sha256,
        downloaded_bytes=done.received, resumed_from_bytes=done.resumed_from,
        already_present=present,
    )  # fmt: skip


def _download_blob(
    client: httpx.Client,
    remote: RemoteGGUF,
    blob: Path,
    sha256: str | None,
    progress: PartProgress | None,
) -> Download:
    """Download (or resume) into ``<blob>.incomplete``, check the hash, move into place."""
    if blob.exists():  # another pull finished it while this one waited for the lock
        return Download(0, 0, restarted=False)
    partial = blob.with_name(f"{blob.name}.incomplete")
    source = Source(remote.url, remote.size, remote.name, remote.headers)
    report = None if progress is None else (lambda held: progress(remote, held))
    done = download(client, source, partial, progress=report)
    _check_sha256(remote, partial, sha256)
    partial.replace(blob)
    return done


def _check_sha256(remote: RemoteGGUF, partial: Path, expected: str | None) -> None:
    if expected is None:
        return
    actual = file_sha256(partial)
    if actual != expected:
        partial.unlink()
        raise RemoteModelError(
            f"{remote.name}: the download's sha256 is {actual}, the Hub lists {expected}; "
            "the file was corrupted on the way and was deleted; run yoyu pull again"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


def _link_snapshot(hub: HubFile, cache: Path, env: Mapping[str, str], blob: Path) -> Path:
    """``hf_hub_download`` finds the blob and writes refs/ and the snapshot link itself."""
    from huggingface_hub import hf_hub_download

    with hub_errors(hub.display):
        linked = hf_hub_download(
            hub.repo_id, hub.path, revision=hub.revision, cache_dir=cache,
            endpoint=hub_endpoint(env),
        )  # fmt: skip
    pointer = Path(linked)
    if pointer.resolve() != blob.resolve():
        raise RemoteModelError(
            f"{hub.display}: the Hub now serves another version of the file than the one "
            "yoyu downloaded (the repo changed during the pull); run yoyu pull again"
        )
    return pointer
