"""Load a model in llama-cpp-python and record what llama.cpp really allocated.

The load runs in a child process (``llamacpp_probe_runner``): its peak RSS is
then the model's alone, the C library's log can be captured from the child's
stderr (llama.cpp writes it there with ``verbose=True``), and a crash or a
refusal cannot take the caller down. The buffer sizes llama.cpp prints are
the engine's own figures; they are what yoyu's estimates are checked against.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.backends.llamacpp_log import ReportedBuffers, parse_buffer_sizes
from yoyu.errors import BackendError

_RUNNER = "yoyu.backends.llamacpp_probe_runner"
_TAIL_LINES = 40
_DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class LoadMeasurement:
    """What one load of a model in llama.cpp allocated, and how fast it ran."""

    buffers: ReportedBuffers
    peak_rss_bytes: int
    rss_after_load_bytes: int
    decode_tps: float | None
    prefill_tps: float | None
    log_tail: str


def measure_load(
    model_path: Path | str,
    llama_kwargs: dict[str, Any],
    *,
    generate_tokens: int = 0,
    timeout: float = _DEFAULT_TIMEOUT_S,
) -> LoadMeasurement:
    """Load ``model_path`` with ``Llama(**llama_kwargs)`` in a child and report.

    With ``generate_tokens`` > 0 the child also prefills a short prompt and
    decodes that many tokens, timing both.
    """
    request = {
        "model_path": str(model_path),
        "llama_kwargs": llama_kwargs,
        "generate_tokens": generate_tokens,
    }
    completed = _run_child(json.dumps(request), timeout, str(model_path))
    log_text = completed.stderr
    if completed.returncode != 0:
        raise BackendError(
            f"llama.cpp could not load {model_path} (exit {completed.returncode}); "
            f"its log ended with: {_last_lines(log_text, 3)}; check the settings and the file"
        )
    result = _parse_result(completed.stdout, log_text, str(model_path))
    return LoadMeasurement(
        buffers=parse_buffer_sizes(log_text),
        peak_rss_bytes=int(result["peak_rss_bytes"]),
        rss_after_load_bytes=int(result["rss_after_load_bytes"]),
        decode_tps=result.get("decode_tps"),
        prefill_tps=result.get("prefill_tps"),
        log_tail=_last_lines(log_text, _TAIL_LINES, separator="\n"),
    )


def _run_child(request: str, timeout: float, model_path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    try:
        return subprocess.run(
            [sys.executable, "-m", _RUNNER],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BackendError(
            f"llama.cpp took over {timeout:.0f} s to load {model_path}; "
            "try a smaller context or raise the timeout"
        ) from error


def _pythonpath() -> str:
    """Make the child find this very yoyu, even when it is not installed."""
    source_root = str(Path(__file__).resolve().parents[2])
    existing = os.environ.get("PYTHONPATH")
    return source_root if not existing else os.pathsep.join((source_root, existing))


def _parse_result(stdout: str, log_text: str, model_path: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise BackendError(
            f"the llama.cpp probe for {model_path} printed no result; "
            f"its log ended with: {_last_lines(log_text, 3)}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _last_lines(text: str, count: int, separator: str = " | ") -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return separator.join(lines[-count:]) if lines else "(no output)"
