"""Fewer C allocator arenas for the gateway process, so its own memory stops creeping.

glibc gives a thread that finds malloc's lock taken an arena of its own (up
to 8 per core) and never gives an arena back. The gateway's worker threads
spread short-lived allocations (request bodies, JSON, engine output, engine
logs read on a crash) over all of them, and each arena keeps its fragments.
Measured with ``benchmarks/chaos.py`` on a 2-core machine (the same seeded
chaos run twice): the gateway's anonymous memory grew 7.41 MiB/min over the
second half of the run with glibc's default and 1.70 MiB/min with 2 arenas
(RSS 98 -> 145 MiB against 96 -> 111 MiB). Python's own small objects live
in pymalloc's arenas under the GIL, so malloc's lock is not what limits the
gateway's throughput; servers in Ruby and Python set ``MALLOC_ARENA_MAX=2``
for the same reason.

Only glibc has ``mallopt(M_ARENA_MAX)``; on macOS and elsewhere nothing
changes. A ``MALLOC_ARENA_MAX`` the user set in the environment wins. Engines
are other processes and keep their own allocator settings.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # glibc's malloc.h
GATEWAY_ARENAS = 2


def limit_malloc_arenas(count: int = GATEWAY_ARENAS) -> bool:
    """Cap this process's malloc arenas at ``count``; True when glibc took the setting."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no M_ARENA_MAX either)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))
