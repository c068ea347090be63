"""The MODEL argument of ``plan``, ``inspect`` and ``pull``: local or remote.

A local reference (a path, an Ollama or installed or catalog name) is
``resolve_model``'s; ``hf://...`` and ``https://...`` are read over HTTP by
``yoyu.remote``, imported only then (it brings httpx and huggingface_hub, which
a plan of a local file does not need).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoyu.models import ModelSpec, resolve_model
from yoyu.remote.refs import is_remote_ref

if TYPE_CHECKING:
    from yoyu.remote.reader import RemoteModel

MODEL_HELP = (
    "GGUF file, HF folder, Ollama name (qwen3:8b), installed or catalog name, or a remote GGUF: "
    "hf://ORG/REPO/FILE.gguf, hf://ORG/REPO:Q4_K_M or an https:// URL (only its header is read)."
)


def read_model_arg(ref: str) -> tuple[ModelSpec, RemoteModel | None]:
    """The model ``ref`` names, and for a remote one what reading its header cost."""
    if not is_remote_ref(ref):
        return resolve_model(ref), None
    from yoyu.remote.reader import read_remote_model

    remote = read_remote_model(ref)
    return remote.spec, remote
