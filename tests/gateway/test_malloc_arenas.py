"""The gateway caps glibc's malloc arenas (see yoyu.gateway.malloc_arenas for the figures).

Counted with glibc's own ``malloc_info``: eight threads that each allocate make
eight arenas by default, and at most two once the gateway's cap is set. Each
case runs in a fresh interpreter, since arenas are never given back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="M_ARENA_MAX is glibc's"
)

COUNT_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from pathlib import Path
    from yoyu.gateway.malloc_arenas import limit_malloc_arenas
    took = limit_malloc_arenas() if sys.argv[1] == "cap" else False
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    together = threading.Barrier(8)
    def allocate():
        together.wait()
        libc.free(libc.malloc(1000))
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "malloc_info.xml"
        stream = libc.fopen(str(path).encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        print(took, path.read_text().count("<heap nr="))
    """
)


def arenas(mode: str, **env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    result = subprocess.run(
        [sys.executable, "-c", COUNT_ARENAS, mode],
        capture_output=True, text=True, check=True, env=environment,
    )  # fmt: skip
    took, count = result.stdout.split()
    return took, int(count)


def test_the_cap_keeps_threads_to_two_arenas() -> None:
    assert arenas("default")[1] > 2  # the threads do spread over arenas without it
    assert arenas("cap") == ("True", 2)


def test_an_arena_limit_the_user_set_is_left_alone() -> None:
    took, count = arenas("cap", MALLOC_ARENA_MAX="4")
    assert took == "False"
    assert count == 4
