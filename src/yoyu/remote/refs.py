"""What a remote MODEL argument names: a file on the Hugging Face Hub, a quant of a Hub
repo, or a GGUF at a URL.

- ``hf://ORG/REPO/PATH.gguf`` (``@REV`` after the repo pins a revision): one file, or
  any part of a split model (the other parts are found by name);
- ``hf://ORG/REPO:Q4_K_M``: the repo's files are listed and the GGUF of that quant
  is picked (llama.cpp's ``-hf ORG/REPO:QUANT`` spelling);
- ``https://huggingface.co/ORG/REPO/resolve/main/PATH.gguf`` (or ``/blob/``): the
  same file as its ``hf://`` form, so it gets the Hub's checksums and ``pull``;
- any other ``https://`` (or ``http://``) URL: read with Range requests as is.

Parsing is pure: nothing here touches the network. ``hf://`` grammar and Hub web
URLs are huggingface_hub's own (``parse_hf_uri``), so yoyu accepts what ``hf``
accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from yoyu.errors import RemoteModelError

REMOTE_PREFIXES = ("hf://", "https://", "http://")
_QUANT_SUFFIX = re.compile(r"^(?P<uri>hf://[^:]+):(?P<quant>[A-Za-z0-9_.\-]+)$")


@dataclass(frozen=True)
class HubRef:
    """A model repo on the Hub and which GGUF in it: a path, or a quant to pick by."""

    repo_id: str
    revision: str | None
    path: str | None  # a .gguf path in the repo (any part of a split model)
    quant: str | None  # "Q4_K_M": pick the repo's GGUF of that quant

    @property
    def display(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        where = f"/{self.path}" if self.path else f":{self.quant}"
        return f"hf://{self.repo_id}{revision}{where}"


@dataclass(frozen=True)
class UrlRef:
    """A GGUF file at a URL that is not the Hub's."""

    url: str


def is_remote_ref(text: str) -> bool:
    """True for what only a network read can answer (yoyu never guesses: a local path
    that starts like a URL is not a thing)."""
    return text.lower().startswith(REMOTE_PREFIXES)


def parse_remote_ref(text: str, endpoint: str | None = None) -> HubRef | UrlRef:
    """The reference ``text`` names; ``endpoint`` is the Hub's (``HF_ENDPOINT``), whose
    web URLs are read as Hub files too."""
    quant_match = _QUANT_SUFFIX.match(text)
    if quant_match is not None:
        ref = _parse_hub(quant_match["uri"], text, endpoint)
        if ref.path:
            raise RemoteModelError(
                f"{text}: give a file path or a :QUANT tag, not both "
                "(hf://ORG/REPO/FILE.gguf or hf://ORG/REPO:Q4_K_M)"
            )
        return HubRef(ref.repo_id, ref.revision, None, quant_match["quant"].upper())
    if text.lower().startswith("hf://"):
        return _require_gguf(_parse_hub(text, text, endpoint), text)
    hub = _hub_url(text, endpoint)
    return UrlRef(text) if hub is None else _require_gguf(hub, text)


def _parse_hub(uri: str, text: str, endpoint: str | None) -> HubRef:
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        parsed = parse_hf_uri(uri, endpoint)
    except HfUriError as error:
        raise RemoteModelError(
            f"{text}: not a Hub reference ({error.msg}); write hf://ORG/REPO/FILE.gguf "
            "or hf://ORG/REPO:Q4_K_M"
        ) from None
    if parsed.type != "model":
        raise RemoteModelError(f"{text}: a {parsed.type} repo, not a model; give a model repo")
    return HubRef(parsed.id, parsed.revision, parsed.path_in_repo or None, None)


def _hub_url(url: str, endpoint: str | None) -> HubRef | None:
    """The Hub file a web URL shows (``/resolve/`` or ``/blob/``), or None for other hosts
    (huggingface_hub matches an endpoint by host name alone; yoyu wants its port too)."""
    from huggingface_hub import constants, parse_hf_uri
    from huggingface_hub.errors import HfUriError

    netloc = urlsplit(url).netloc.lower()
    hub_netlocs = {*constants.HF_URL_HOSTS, urlsplit(endpoint or "").netloc.lower()}
    if netloc not in hub_netlocs:
        return None
    try:
        parsed = parse_hf_uri(url, endpoint)
    except HfUriError:
        return None
    if parsed.type != "model" or not parsed.path_in_repo:
        return None
    return HubRef(parsed.id, parsed.revision, parsed.path_in_repo, None)


def _require_gguf(ref: HubRef, text: str) -> HubRef:
    if ref.path is None:
        raise RemoteModelError(
            f"{text}: name a file or a quant: hf://{ref.repo_id}/FILE.gguf or "
            f"hf://{ref.repo_id}:Q4_K_M"
        )
    if not ref.path.lower().endswith(".gguf"):
        raise RemoteModelError(
            f"{text}: yoyu plans GGUF files from the Hub; give a .gguf path, or a :QUANT tag"
        )
    return ref
