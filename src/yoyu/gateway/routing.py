"""Which served models may answer a request, in which order: pure, plus a cooldown clock.

A request names a served model, a route or an alias of either. ``resolve``
turns that name into an ordered chain; privacy then removes every remote
member *before* any fallback can reach it (deny by default, not a filter on
the way out), and ``order_by_cooldown`` moves members whose backend failed
recently to the end, so a dead backend is not the first thing every request
waits on, yet is still tried when nothing else is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from yoyu.errors import PrivacyError, UnknownModelError
from yoyu.gateway.config import Route, ServedModel


@dataclass(frozen=True)
class Resolution:
    """A request's name, the chain it stands for, and whether it must stay local."""

    requested: str
    chain: tuple[str, ...]
    private: bool


def resolve(
    name: str,
    *,
    served: Mapping[str, ServedModel],
    routes: Mapping[str, Route],
    aliases: Mapping[str, str],
    private_requested: bool = False,
) -> Resolution:
    """The chain for ``name``; raises UnknownModelError naming what exists.

    Private when the request asks for it, the route is private, or the model
    first asked for (a direct id, or a route's first member) is tagged private.
    """
    target = aliases.get(name, name)
    if target in routes:
        route = routes[target]
        first = served[route.chain[0]]
        return Resolution(name, route.chain, private_requested or route.private or first.private)
    if target in served:
        return Resolution(name, (target,), private_requested or served[target].private)
    known = sorted({*served, *routes, *aliases})
    raise UnknownModelError(
        f"model {name!r} is not served here; ask for one of: {', '.join(known) or '(none)'}"
    )


def local_members(resolution: Resolution, is_remote: Callable[[str], bool]) -> tuple[str, ...]:
    """The chain a request may use: everything, or only local members when private.

    Raises PrivacyError when a private request has no local member at all.
    """
    if not resolution.private:
        return resolution.chain
    local = tuple(member for member in resolution.chain if not is_remote(member))
    if not local:
        raise PrivacyError(
            f"{resolution.requested!r} must stay on this machine but every route for it is "
            "remote; add a local model to its route or drop the privacy requirement"
        )
    return local


def order_by_cooldown(chain: Sequence[str], cooling: Callable[[str], bool]) -> tuple[str, ...]:
    """Members whose backend is cooling down go last, in their original order."""
    fresh = [member for member in chain if not cooling(member)]
    return (*fresh, *(member for member in chain if cooling(member)))


class Cooldowns:
    """When each backend last failed; a failure keeps it at the back for ``cooldown_s``."""

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def failed(self, backend: str) -> None:
        with self._lock:
            self._failed_at[backend] = self._clock()

    def succeeded(self, backend: str) -> None:
        with self._lock:
            self._failed_at.pop(backend, None)

    def cooling(self, backend: str) -> bool:
        with self._lock:
            failed_at = self._failed_at.get(backend)
        return failed_at is not None and self._clock() - failed_at < self.cooldown_s
