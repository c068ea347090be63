"""Free TCP ports on the loopback interface, for engines yoyu starts itself.

The kernel picks the port (bind to port 0), so two callers never race on a
guess; between closing the probe socket and the engine's own bind another
process can still take it, which is why the managed backend retries on a
fresh port when an engine reports "address already in use".
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_loopback_port() -> int:
    """A port nobody is listening on at 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_listening(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts connections at ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0
