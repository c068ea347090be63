"""Read what a llama.cpp engine writes to its log: buffer sizes, timings, complaints.

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

import dataclasses
import re
from dataclasses import dataclass, field

from yoyu.backends.protocol import ChatChunk, ChatResponse, EngineTimings, Usage
from yoyu.units import MIB

_LOG_PREFIX = r"(?:\d+\.\d+\.\d+\.\d+ [A-Z] )?"  # llama-server's "0.00.484.385 I " time and level
_BUFFER_LINE = re.compile(
    rf"^{_LOG_PREFIX}\s*~?(?P<source>[\w:]+):\s+(?P<device>[\w\-]+(?:\[[\w.:\-]+\])?)\s+"
    r"(?P<kind>model|KV|compute|output|RS) buffer size\s*=\s*(?P<mib>\d+(?:\.\d+)?) MiB",
)
# llama.cpp prints every RPC server's buffers as "RPC0[host:port]" whatever its number;
# the endpoint names the device (as in yoyu.estimate.weights.rpc_device_name).
_RPC_NUMBER = re.compile(r"^RPC\d*\[")
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
        device = _RPC_NUMBER.sub("RPC[", match["device"])
        per_device[device] = per_device.get(device, 0) + round(float(match["mib"]) * MIB)
    return ReportedBuffers(by_kind)


# -- complaints and timings ---------------------------------------------------

_TRACEBACK_NOISE = re.compile(r"^(\s|Traceback |\^|~|During handling|The above exception)")
_ACCESS_LOG = re.compile(r"^INFO:\s")
_USAGE_LINE = re.compile(r"^usage: |^\s+\[--")
# llama.cpp's abort (GGML_ABORT / GGML_ASSERT): "path/ggml-rpc.cpp:569: Remote RPC server
# crashed...", followed by a gdb backtrace of the aborting process.
_GGML_ABORT = re.compile(r"^\S+\.(?:c|cpp|cu|m):\d+: \S")
_GDB_NOISE = re.compile(
    r"^(\[New LWP|\[Thread debugging|\[Inferior|Using host libthread_db|#\d+\s|\d+\s|"
    r"\w+ \(\) at |No stack)"
)
_COMPLAINT_WORDS = re.compile(r"error|invalid|failed|cannot|can't|unable|no such", re.IGNORECASE)
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_COMPLAINT_WINDOW = 8
_MAX_COMPLAINT_CHARS = 300


def engine_complaint(log_text: str) -> str:
    """The engine's own words for what went wrong, on one line.

    The last meaningful line (not a traceback frame, access log or usage
    text), preceded by the first line of the final stretch that names an
    error when that is a different line: llama.cpp's cause ("invalid magic
    characters") comes a few lines before the Python exception it leads to.
    """
    lines = [line.strip() for line in log_text.splitlines() if _is_meaningful(line)]
    if not lines:
        return "(the engine's log is empty)"
    aborts = [line for line in lines if _GGML_ABORT.match(line)]
    if aborts:  # what llama.cpp said as it aborted; what follows is its backtrace
        return _PRINTABLE.sub("?", _short_path(aborts[-1]))[:_MAX_COMPLAINT_CHARS]
    window = lines[-_COMPLAINT_WINDOW:]
    cause = next((line for line in window if _COMPLAINT_WORDS.search(line)), window[-1])
    said = window[-1] if cause == window[-1] else f"{cause} ... {window[-1]}"
    return _PRINTABLE.sub("?", said)[:_MAX_COMPLAINT_CHARS]


def _short_path(line: str) -> str:
    """``/long/build/path/ggml-rpc.cpp:569: msg`` -> ``ggml-rpc.cpp:569: msg``."""
    location, _, message = line.partition(": ")
    return f"{location.rsplit('/', 1)[-1]}: {message}"


def _is_meaningful(line: str) -> bool:
    if not line.strip():
        return False
    noise = (_TRACEBACK_NOISE, _ACCESS_LOG, _USAGE_LINE, _GDB_NOISE)
    return not any(pattern.match(line) for pattern in noise)


_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_DECODE_EVAL = re.compile(r"(?<!prompt) eval time =\s*([\d.]+) ms /\s*(\d+) runs")
_PREFIX_HIT = re.compile(r"(\d+) prefix-match hit")


def parse_request_timings(log_text: str) -> EngineTimings | None:
    """llama.cpp's timing lines for one request (``llama_perf_context_print``).

    ``None`` unless the text holds exactly one request's lines: with two
    requests interleaved there is no telling whose figures are whose.
    """
    prompt = _PROMPT_EVAL.findall(log_text)
    decode = _DECODE_EVAL.findall(log_text)
    if len(prompt) != 1 or len(decode) != 1:
        return None
    cached = _PREFIX_HIT.findall(log_text)
    return EngineTimings(
        prompt_tokens=int(prompt[0][1]),
        prompt_ms=float(prompt[0][0]),
        decode_tokens=int(decode[0][1]),
        decode_ms=float(decode[0][0]),
        cached_tokens=int(cached[0]) if len(cached) == 1 else 0,
    )


def with_log_timings(response: ChatResponse, log_text: str) -> ChatResponse:
    if response.engine_timings is not None:
        return response
    return dataclasses.replace(response, engine_timings=parse_request_timings(log_text))


def with_log_usage(chunk: ChatChunk, log_text: str) -> ChatChunk:
    timings = chunk.engine_timings or parse_request_timings(log_text)
    if timings is None or chunk.usage is None:
        return chunk
    prompt_tokens = timings.prompt_tokens + timings.cached_tokens
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=chunk.usage.completion_tokens)
    return dataclasses.replace(chunk, usage=usage, engine_timings=timings)
