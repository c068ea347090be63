"""Read the buffer sizes llama.cpp reports while it loads a model.

llama.cpp logs every allocation it makes, one line per buffer and device::

    load_tensors:   CPU_Mapped model buffer size =  4685.30 MiB
    load_tensors:   CPU_REPACK model buffer size =  3204.00 MiB
    llama_context:        CPU  output buffer size =     0.49 MiB
    llama_kv_cache:        CPU KV buffer size =  1024.00 MiB
    sched_reserve:        CPU compute buffer size =   560.01 MiB

llama-server prefixes each line with its clock and level
(``0.00.484.385 I load_tensors: ...``) and prints them at ``-lv 4`` or
above; an RPC device is named with its endpoint (``RPC0[127.0.0.1:50052]``).
These are the engine's own figures, so they are what yoyu's estimates are
checked against (and what a managed run reports as "measured"). Values are
printed with two decimals of MiB, hence the ±0.005 MiB resolution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from yoyu.units import MIB

_LOG_PREFIX = r"(?:\d+\.\d+\.\d+\.\d+ [A-Z] )?"  # llama-server's "0.00.484.385 I " time and level
_BUFFER_LINE = re.compile(
    rf"^{_LOG_PREFIX}\s*~?(?P<source>[\w:]+):\s+(?P<device>[\w\-]+(?:\[[\w.:\-]+\])?)\s+"
    r"(?P<kind>model|KV|compute|output|RS) buffer size\s*=\s*(?P<mib>\d+(?:\.\d+)?) MiB",
)
_KIND_NAMES = {"model": "model", "KV": "kv", "compute": "compute", "output": "output", "RS": "rs"}
# One "expectation" line is printed when the context is destroyed; it repeats the compute size.
_IGNORED_SUFFIX = "matches expectation"


@dataclass(frozen=True)
class ReportedBuffers:
    """Bytes per buffer kind and device, as llama.cpp printed them."""

    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, kind: str) -> int:
        """All devices' bytes of one kind (``model``, ``kv``, ``compute``, ``output``, ``rs``)."""
        return sum(self.by_kind.get(kind, {}).values())

    def device(self, kind: str, device: str) -> int:
        return self.by_kind.get(kind, {}).get(device, 0)


def parse_buffer_sizes(log_text: str) -> ReportedBuffers:
    """Sum every ``... buffer size = X MiB`` line by kind and device.

    A model loads several caches (e.g. a full-attention and a sliding-window
    KV cache) that each print a line, so the same (kind, device) is summed.
    """
    by_kind: dict[str, dict[str, int]] = {}
    for line in log_text.splitlines():
        if _IGNORED_SUFFIX in line:
            continue
        match = _BUFFER_LINE.match(line)
        if match is None:
            continue
        kind = _KIND_NAMES[match["kind"]]
        per_device = by_kind.setdefault(kind, {})
        per_device[match["device"]] = per_device.get(match["device"], 0) + round(
            float(match["mib"]) * MIB
        )
    return ReportedBuffers(by_kind)
