"""llama-cpp-python as yoyu runs it: its server, with what its settings cannot say.

    python -m yoyu.backends.llamacpp_python_server [--n_outputs_max N] [llama_cpp.server ARGS...]

Four things the stock server gets wrong, put right here:

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
- An error in a streamed answer is lost: the server has sent its 200 and
  ends the stream silently (a prompt over the context: an empty body). Here
  it becomes an error event with the message and status the same request
  gets unstreamed (``{"error": {..., "status": 400}}``), so a client, and
  yoyu's whole answers (streamed from this engine, to be stoppable), see it.
- A GGUF chat template its Jinja environment cannot compile makes every load
  fail, even with a ``chat_format`` chosen instead (``Llama`` compiles every
  template in the file at load). Such a template is left uncompiled; using
  it is an error naming it. ``template_problem`` lets yoyu find out before
  it starts the engine, with the engine's own renderer, and choose a format.
"""

from __future__ import annotations

import functools
import importlib
import runpy
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

CONTEXT_ONLY = ("n_seq_max", "kv_unified", "n_outputs_max")  # context fields, not Llama kwargs
_OUTPUTS_FLAG = "--n_outputs_max"
_MAX_PROBLEM_CHARS = 200


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


def template_problem(engine_kind: str, template: str | None) -> str | None:
    """Why ``engine_kind`` cannot render ``template`` (one user turn), or None when it can
    (or when it is not llama-cpp-python, whose renderer is the one checked here)."""
    if engine_kind != "llama-cpp-python" or not template:
        return None
    try:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(template=template, eos_token="</s>", bos_token="<s>")
        formatter(messages=[{"role": "user", "content": "hi"}])
    except Exception as error:  # any failure of a user's template is a reason, not a crash
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[
            :_MAX_PROBLEM_CHARS
        ]
    return None


def tolerate_broken_templates() -> None:
    """Compile failures of a file's template are kept for when it is used, not raised at load."""
    from llama_cpp import llama_chat_format

    formatter_class: Any = llama_chat_format.Jinja2ChatFormatter
    compile_template = formatter_class.__init__
    render = formatter_class.__call__

    def init_tolerant(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            compile_template(self, *args, **kwargs)
            self.yoyu_problem = None
        except Exception as error:  # the template is the user's file: any error is its own
            self.yoyu_problem = f"{type(error).__name__}: {error}"

    def render_or_explain(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "yoyu_problem", None):
            raise ValueError(f"the model's chat template cannot be rendered: {self.yoyu_problem}")
        return render(self, *args, **kwargs)

    formatter_class.__init__ = init_tolerant
    formatter_class.__call__ = render_or_explain


def report_stream_errors() -> None:
    """Make the server's stream publisher send an error event for an error in a stream."""
    server_app: Any = importlib.import_module("llama_cpp.server.app")
    errors: Any = importlib.import_module("llama_cpp.server.errors")
    publish = server_app.get_event_publisher

    async def publish_with_errors(**arguments: Any) -> None:  # the server passes keywords
        llama_call, body = arguments["llama_call"], arguments.get("body")

        def call(llama: Any, **call_kwargs: Any) -> Iterator[Any]:
            return _chunks_or_error(lambda: llama_call(llama, **call_kwargs), body)

        await publish(**{**arguments, "llama_call": call})

    server_app.get_event_publisher = publish_with_errors
    _ERROR_PATTERNS.update(errors.RouteErrorHandler.pattern_and_formatters)


_ERROR_PATTERNS: dict[Any, Any] = {}


def _chunks_or_error(open_stream: Callable[[], Iterator[Any]], body: Any) -> Iterator[Any]:
    """The stream's chunks; an exception becomes one last error chunk (OpenAI's shape)."""
    try:
        yield from open_stream()
    except Exception as error:  # the client's request failed: say so, as unstreamed would
        yield {"error": stream_error(error, body)}


def stream_error(error: Exception, body: Any) -> dict[str, Any]:
    """The error object the server answers an unstreamed request with, plus its status."""
    for pattern, formatter in _ERROR_PATTERNS.items():
        match = pattern.search(str(error))
        if match is not None:
            status, response = formatter(body, match)
            return {**dict(response), "status": status}
    return {"message": str(error), "type": "internal_server_error", "status": 500}


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
    tolerate_broken_templates()
    report_stream_errors()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
