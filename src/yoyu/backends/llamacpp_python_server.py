"""llama-cpp-python as yoyu runs it: its server, with what its settings cannot say.

    python -m yoyu.backends.llamacpp_python_server [--n_outputs_max N] [llama_cpp.server ARGS...]

Two things the stock server gets wrong for memory, put right here:

- ``n_outputs_max``: llama.cpp reserves its compute buffer for a prompt
  whose every token is an output unless the context says fewer
  (``llama_context_params.n_outputs_max``, 0 = ``n_batch``). Neither ``Llama``
  nor its server has a setting for it, so the Gemma 3 270M compute buffer is
  514.50 MiB (512 rows of 262,144 logits) where llama-server, which asks
  for one output per slot, reserves 57.76 MiB for the same model. yoyu
  passes ``--n_outputs_max`` (1 unless ``logits_all`` or embeddings need
  every token) and this module sets it on the context parameters ``Llama``
  starts from.
- A sampler leak: each request builds a new sampler chain
  (``Llama._init_sampler``) and drops the previous one, whose C side holds
  ``n_vocab`` token candidates (12 bytes each: 3 MiB for Gemma 3). The
  Python wrapper sits in a reference cycle (its ``ExitStack`` callback
  refers back to it), so it is freed only when the cyclic garbage collector
  happens to run: a server answering short requests grew by 3 MiB per
  request here (llama-cpp-python 0.3.36, 90 MiB after 30 chat requests to
  a 262,144-token model; flat with the fix). The previous sampler is closed
  when the next one is made.
"""

from __future__ import annotations

import functools
import runpy
import sys
from collections.abc import Callable, Mapping
from typing import Any

CONTEXT_ONLY = ("n_seq_max", "kv_unified", "n_outputs_max")  # context fields, not Llama kwargs
_OUTPUTS_FLAG = "--n_outputs_max"


def set_context_defaults(overrides: Mapping[str, Any]) -> None:
    """Start every ``Llama`` context from llama.cpp's defaults with ``overrides`` set.

    ``Llama`` reads ``llama_cpp.llama_cpp.llama_context_default_params`` (the
    low-level module), not the name the package re-exports, so that is the
    one replaced.
    """
    if not overrides:
        return
    import llama_cpp.llama_cpp as low_level

    original = low_level.llama_context_default_params

    def with_overrides() -> Any:
        params = original()
        for key, value in overrides.items():
            setattr(params, key, value)
        return params

    low_level.llama_context_default_params = with_overrides


def close_previous_sampler(init_sampler: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``Llama._init_sampler`` so the sampler it replaces is freed now, not at GC."""

    @functools.wraps(init_sampler)
    def init_closing_previous(self: Any, *args: Any, **kwargs: Any) -> Any:
        previous = getattr(self, "_sampler", None)
        if previous is not None:
            previous.close()
        return init_sampler(self, *args, **kwargs)

    return init_closing_previous


def close_sampler_leak() -> None:
    import llama_cpp

    if hasattr(llama_cpp.Llama, "_init_sampler"):  # the leak's site; absent: nothing to fix
        fixed = close_previous_sampler(llama_cpp.Llama._init_sampler)
        llama_cpp.Llama._init_sampler = fixed  # type: ignore[method-assign]


def split_outputs_flag(argv: list[str]) -> tuple[list[str], dict[str, int]]:
    """``argv`` without ``--n_outputs_max N`` (the server's parser would refuse it), and N."""
    if _OUTPUTS_FLAG not in argv:
        return argv, {}
    at = argv.index(_OUTPUTS_FLAG)
    if at + 1 >= len(argv) or not argv[at + 1].isdigit():
        raise SystemExit(f"{_OUTPUTS_FLAG} needs a whole number")
    return argv[:at] + argv[at + 2 :], {"n_outputs_max": int(argv[at + 1])}


def main() -> None:
    sys.argv, overrides = split_outputs_flag(sys.argv)
    set_context_defaults(overrides)
    close_sampler_leak()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
