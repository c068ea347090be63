"""Byte counts stay ``int`` inside yoyu; this module formats them at the edge.

The format follows llama.cpp's own logs (``4685.30 MiB``) so a user can put
yoyu's figures beside the engine's and compare them digit for digit.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4


def format_bytes(n_bytes: int | None) -> str:
    """Return ``n_bytes`` as B/KiB/MiB/GiB/TiB with two decimals, or '-' for None."""
    if n_bytes is None:
        return "-"
    sign = "-" if n_bytes < 0 else ""
    magnitude = abs(n_bytes)
    for unit_bytes, unit in ((TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if magnitude >= unit_bytes:
            return f"{sign}{magnitude / unit_bytes:.2f} {unit}"
    return f"{sign}{magnitude} B"


def format_mib(n_bytes: int) -> str:
    """Return ``n_bytes`` in MiB with two decimals, as llama.cpp logs buffer sizes."""
    return f"{n_bytes / MIB:.2f} MiB"


def format_count(count: int) -> str:
    """Return a parameter count the way model cards write it: 8.03B, 671B, 1.03T."""
    for scale, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if abs(count) >= scale:
            value = count / scale
            return f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return str(count)
