"""Child-process side of ``llamacpp_measure``: load one model, report, exit.

Run as ``python -m yoyu.backends.llamacpp_probe_runner`` with a JSON request
on stdin. The model is loaded in its own process so that its peak RSS
(``VmHWM``) is the model's alone and a crash in the C library cannot take the
caller with it. llama.cpp's log goes to stderr (``verbose=True``); the result
is one JSON line on stdout.

``n_seq_max``, ``kv_unified`` and ``n_outputs_max`` are not ``Llama``
arguments in llama-cpp-python, so they are set on the default context
parameters the constructor starts from (``set_context_defaults``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from yoyu.backends.llamacpp_python_server import CONTEXT_ONLY, set_context_defaults


def main() -> None:
    request = json.loads(sys.stdin.read())
    result = run_probe(request["model_path"], request["llama_kwargs"], request["generate_tokens"])
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def run_probe(
    model_path: str, llama_kwargs: dict[str, Any], generate_tokens: int
) -> dict[str, Any]:
    import llama_cpp

    kwargs = dict(llama_kwargs)
    set_context_defaults({key: kwargs.pop(key) for key in CONTEXT_ONLY if key in kwargs})
    llm = llama_cpp.Llama(model_path=model_path, verbose=True, **kwargs)
    sys.stderr.flush()
    result: dict[str, Any] = {"rss_after_load_bytes": _status_kib("VmRSS") * 1024}
    if generate_tokens > 0:
        result.update(_time_generation(llm, generate_tokens))
    result["peak_rss_bytes"] = (_status_kib("VmHWM") or _maxrss_kib()) * 1024
    return result


def _time_generation(llm: Any, generate_tokens: int) -> dict[str, float]:
    """Prefill the context up to ``generate_tokens`` short of full, then decode.

    Filling the context makes the last prompt batch attend to every cell, so
    the compute buffer is touched as far as llama.cpp reserved it and the
    peak RSS shows the whole of it.
    """
    n_ctx = min(llm.n_ctx(), llm.context_params.n_ctx)  # eval's arrays hold the requested size
    steps = max(min(generate_tokens, n_ctx // 2), 1)
    prompt = [1 + (i * 7) % 200 for i in range(n_ctx - steps - 1)]
    started = time.perf_counter()
    llm.eval(prompt)
    prefill_s = time.perf_counter() - started
    started = time.perf_counter()
    for step in range(steps):
        llm.eval([1 + step % 200])
    decode_s = time.perf_counter() - started
    return {"prefill_tps": len(prompt) / prefill_s, "decode_tps": steps / decode_s}


def _status_kib(field: str) -> int:
    status = Path("/proc/self/status")
    if not status.exists():
        return 0
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _maxrss_kib() -> int:
    """Fallback where /proc is absent; on Linux ru_maxrss survives exec and can
    hold the forking parent's peak, which is why VmHWM comes first."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


if __name__ == "__main__":
    main()
