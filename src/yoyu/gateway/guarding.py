"""The guard over the gateway: every engine it started, unloaded before memory runs out.

Admission keeps a *load* above the floor; the guard covers what happens after:
a KV cache that grows with long prompts, another application that starts, a
leak. Its graceful step evicts every resident model through ``Residency`` (so
the gateway's bookkeeping stays true and the next request loads afresh, through
admission); if memory still falls it signals the engines' process trees.
Engines of daemons yoyu does not own (Ollama) and remote APIs have no pids
here and are never signalled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from yoyu.backends.protocol import Backend
from yoyu.gateway.residency import Residency


class GatewayTarget:
    """What the gateway's guard watches (``pids``) and how it gives memory back (``unload``)."""

    def __init__(self, backends: Mapping[str, Backend], residency: Residency) -> None:
        self._backends = backends
        self._residency = residency

    def pids(self) -> Sequence[int]:
        return [pid for backend in self._backends.values() for pid in backend.pids()]

    def unload(self) -> None:
        self._residency.evict_all()

    def __str__(self) -> str:
        return "the gateway's engines"
