"""The managed llama.cpp backend with the real engine: llama-cpp-python's server
as a child process on 127.0.0.1, serving a tiny GGUF model written by the test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest

import yoyu
from yoyu.backends.engine_process import EngineProcess
from yoyu.backends.llamacpp_flags import (
    PYTHON_SERVER_MODULE,
    LlamaCppEngine,
    engine_environment,
    llama_server_flags,
    python_engine,
    python_server_flags,
)
from yoyu.backends.llamacpp_log import engine_complaint, parse_request_timings
from yoyu.backends.llamacpp_server import LlamaCppServerBackend
from yoyu.backends.openai_http import HttpTimeouts, OpenAIHttpClient
from yoyu.backends.ports import free_loopback_port
from yoyu.backends.protocol import (
    Backend,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LoadedModel,
    ModelRef,
    summarize_stream,
)
from yoyu.errors import (
    BackendCrashedError,
    BackendRequestError,
    BackendStartError,
    BackendUnavailableError,
    SettingsError,
)
from yoyu.estimate.types import RunSettings
from yoyu.testing.tiny_models import TinyModel, write_tiny_model
from yoyu.testing.vocab import EOS_ID, byte_spm_vocab
from yoyu.testing.waiting import wait_until
from yoyu.units import MIB

SETTINGS = {"n_ctx": 256, "n_batch": 64, "n_ubatch": 64, "seed": 1}
Served = tuple[LlamaCppServerBackend, LoadedModel]
TEST_TIMEOUTS = HttpTimeouts(connect_s=2, read_s=20)
GREETING = (ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello to the tests."))


def ascii_only_bias() -> dict[str, int]:
    """Ban end-of-sequence and the byte tokens above 0x7F.

    The tiny model's random weights favour raw bytes that do not form UTF-8;
    llama-cpp-python holds such text back until it is complete, which can
    delay a whole answer to its end. ASCII answers stream token by token.
    """
    tokens = byte_spm_vocab().tokens
    high_bytes = [i for i, t in enumerate(tokens) if t.startswith("<0x") and int(t[3:5], 16) > 0x7F]
    return {str(token_id): -100 for token_id in [*high_bytes, EOS_ID]}


def make_backend(log_dir: Path, **options: Any) -> LlamaCppServerBackend:
    return LlamaCppServerBackend(
        engine=python_engine(),
        log_dir=log_dir,
        start_timeout_s=60,
        stop_grace_s=5,
        timeouts=TEST_TIMEOUTS,
        **options,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="module")
def served(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    backend = make_backend(tmp_path_factory.mktemp("logs"))
    loaded = backend.load(ModelRef("tiny", tiny.path), SETTINGS)
    yield backend, loaded
    backend.close()


# -- a loaded model ------------------------------------------------------


@pytest.mark.slow
def test_load_reports_the_engine_process_and_its_buffers(served: Served, tiny: TinyModel) -> None:
    backend, loaded = served
    checked: Backend = backend  # the class keeps the protocol (mypy checks this line)
    assert isinstance(checked, Backend)
    assert psutil.Process(loaded.pid).is_running()
    assert loaded.pid in backend.pids()
    assert loaded.load_s is not None and loaded.load_s > 0
    assert loaded.base_url.startswith("http://127.0.0.1:")
    assert loaded.buffers is not None
    # llama.cpp's model buffer holds the tensors the file was written with (two decimals of MiB).
    assert abs(loaded.buffers.total("model") - tiny.tensor_bytes) <= 0.01 * MIB
    assert loaded.buffers.total("kv") > 0
    assert [m.id for m in backend.list_models()] == ["tiny"]
    assert backend.health().ok


def test_engine_output_goes_to_its_log_not_ours(
    served: Served, capfd: pytest.CaptureFixture[str]
) -> None:
    backend, loaded = served
    backend.chat(ChatRequest("tiny", GREETING, max_tokens=2))
    captured = capfd.readouterr()
    assert "llama_perf_context_print" not in captured.out + captured.err
    assert loaded.log_path is not None
    assert "llama_perf_context_print" in loaded.log_path.read_text(encoding="utf-8")


def test_chat_counts_tokens_and_reads_the_engines_timings(served: Served) -> None:
    backend, _ = served
    response = backend.chat(ChatRequest("tiny", GREETING, max_tokens=5, temperature=0.0))
    assert response.usage.completion_tokens <= 5
    assert response.usage.prompt_tokens is not None and response.usage.prompt_tokens > 5
    assert response.finish_reason in ("length", "stop")
    assert response.engine_timings is not None
    evaluated = response.engine_timings.prompt_tokens + response.engine_timings.cached_tokens
    assert evaluated == response.usage.prompt_tokens


def test_stream_arrives_in_token_chunks_with_usage_and_timing(served: Served) -> None:
    backend, _ = served
    request = ChatRequest("tiny", GREETING, max_tokens=8, temperature=0.0, seed=3)
    reference = backend.chat(request)

    chunks = list(backend.stream_chat(request))

    summary = summarize_stream(chunks)
    assert summary.usage is not None
    # One chunk per generated token; llama-cpp-python may run past max_tokens to finish
    # a multi-byte character, in both modes alike.
    assert summary.token_chunks == summary.usage.completion_tokens
    assert summary.usage.completion_tokens == reference.usage.completion_tokens
    assert summary.text == reference.text  # greedy: the same answer either way
    # The stream's prompt count comes from the engine's log; the reference from its JSON.
    assert summary.usage.prompt_tokens == reference.usage.prompt_tokens
    assert summary.first_token_s is not None and 0 < summary.first_token_s < chunks[-1].t_s
    arrival_times = [chunk.t_s for chunk in chunks]
    assert arrival_times == sorted(arrival_times)
    assert chunks[-1].content is None and chunks[-1].usage is not None


def test_tokens_reach_the_caller_while_the_engine_is_still_generating(
    served: Served, tiny: TinyModel
) -> None:
    backend, _ = served
    # 1,900 tokens: long enough (~0.1 s and more) that a pause of the test process between
    # the first token and the look at the log cannot outlast the generation (200 tokens
    # took 9 ms, and a busy CI machine once paused the test longer than that).
    loaded = backend.load(ModelRef("tiny-long", tiny.path), {**SETTINGS, "n_ctx": 2048})
    try:
        assert loaded.log_path is not None
        log_start = loaded.log_path.stat().st_size
        bias = {"logit_bias": ascii_only_bias()}
        request = ChatRequest("tiny-long", GREETING, max_tokens=1900, extra=bias)
        stream = backend.stream_chat(request)
        first = next(chunk for chunk in stream if chunk.content is not None)
        # llama.cpp prints its timing lines when a generation ends: not yet.
        log_so_far = loaded.log_path.read_text(encoding="utf-8")[log_start:]
        assert "eval time" not in log_so_far
        rest = list(stream)
        assert summarize_stream([first, *rest]).token_chunks == 1900
        assert first.t_s < rest[-1].t_s
    finally:
        backend.unload("tiny-long")


def test_plain_completions_stream_and_not(served: Served) -> None:
    backend, _ = served
    request = CompletionRequest("tiny", "Once upon a time", max_tokens=4, temperature=0.0)
    whole = backend.complete(request)
    streamed = summarize_stream(list(backend.stream_complete(request)))
    assert whole.usage.completion_tokens > 0
    assert streamed.text == whole.text
    assert streamed.usage is not None
    assert streamed.usage.completion_tokens == whole.usage.completion_tokens


def test_the_openai_client_talks_to_the_managed_engine(served: Served) -> None:
    _, loaded = served
    client = openai.OpenAI(base_url=loaded.base_url, api_key="unused", max_retries=0)
    try:
        answer = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        assert answer.choices[0].finish_reason in ("length", "stop")
        assert [model.id for model in client.models.list()] == ["tiny"]
    finally:
        client.close()


def test_engine_refusal_keeps_its_status_and_message(served: Served) -> None:
    backend, _ = served
    too_long = CompletionRequest("tiny", "tick " * 400, max_tokens=4)
    with pytest.raises(BackendRequestError, match="context length") as raised:
        backend.complete(too_long)
    assert raised.value.status_code == 400
    assert backend.health().ok  # the refusal did not take the engine down


def test_a_model_that_is_not_loaded_is_unavailable(served: Served) -> None:
    backend, _ = served
    with pytest.raises(BackendUnavailableError, match=r"'absent' is not loaded .*loaded: tiny"):
        backend.chat(ChatRequest("absent", GREETING))


def test_loading_the_same_model_again_returns_it(served: Served, tiny: TinyModel) -> None:
    backend, loaded = served
    assert backend.load(ModelRef("tiny", tiny.path), dict(SETTINGS)) is loaded


# -- start failures ----------------------------------------------------------


@pytest.mark.slow
def test_a_garbage_model_file_is_a_one_line_start_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"this is not a GGUF file at all" * 64)
    backend = make_backend(tmp_path / "logs")
    with pytest.raises(BackendStartError) as raised:
        backend.load(ModelRef("garbage", garbage), SETTINGS)
    message = str(raised.value)
    assert "\n" not in message
    assert str(garbage) in message
    assert "exited (code 1) before it was ready" in message
    assert "invalid magic characters" in message  # llama.cpp's own complaint
    assert "Traceback" in raised.value.log_tail  # the whole story stays on the exception
    assert backend.loaded_models() == []


def test_a_missing_model_file_fails_before_starting_anything(tmp_path: Path) -> None:
    backend = make_backend(tmp_path / "logs")
    with pytest.raises(BackendStartError, match="does not exist"):
        backend.load(ModelRef("gone", tmp_path / "gone.gguf"), SETTINGS)
    assert not (tmp_path / "logs").exists()


def test_an_engine_that_is_not_ready_in_time_is_stopped(tmp_path: Path, tiny: TinyModel) -> None:
    backend = make_backend(tmp_path / "logs")
    backend.start_timeout_s = 0.05  # far less than the interpreter needs to import llama_cpp
    with pytest.raises(BackendStartError, match=r"not ready after 0\.05 s") as raised:
        backend.load(ModelRef("tiny", tiny.path), SETTINGS)
    assert raised.value.log_path is not None
    log_path = str(raised.value.log_path)
    engines = [  # the engine started here, found by its log path (the module's server stays)
        child
        for child in psutil.Process().children(recursive=True)
        if PYTHON_SERVER_MODULE in child.cmdline() and _log_file_of(child) == log_path
    ]
    assert engines == []  # stopped and reaped, not left loading
    assert backend.pids() == []


def _log_file_of(process: psutil.Process) -> str | None:
    with contextlib.suppress(psutil.Error):
        for opened in process.open_files():
            if opened.path.endswith(".log"):
                return opened.path
    return None


@pytest.fixture
def stranger_port() -> Iterator[int]:
    """Someone else's OpenAI-style server, already listening on a loopback port."""
    body = json.dumps({"object": "list", "data": [{"id": "someone-else"}]}).encode()

    class Stranger(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stranger)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_a_fixed_port_that_is_taken_is_a_start_error(
    tmp_path: Path, tiny: TinyModel, stranger_port: int
) -> None:
    backend = make_backend(tmp_path / "logs", port_picker=lambda: stranger_port, port_attempts=1)
    with pytest.raises(BackendStartError, match="address already in use") as raised:
        backend.load(ModelRef("tiny", tiny.path), SETTINGS)
    assert f"127.0.0.1:{stranger_port}" in str(raised.value)


@pytest.mark.slow
def test_a_taken_port_is_retried_elsewhere_and_unload_reaps_the_child(
    tmp_path: Path, tiny: TinyModel, stranger_port: int
) -> None:
    ports = iter([stranger_port, free_loopback_port()])
    backend = make_backend(tmp_path / "logs", port_picker=lambda: next(ports))
    loaded = backend.load(ModelRef("tiny", tiny.path), SETTINGS)
    try:
        assert not loaded.base_url.endswith(f":{stranger_port}/v1")
        assert backend.chat(ChatRequest("tiny", GREETING, max_tokens=2)).usage.completion_tokens
    finally:
        backend.unload("tiny")
    assert loaded.pid is not None and not psutil.pid_exists(loaded.pid)
    assert backend.loaded_models() == [] and backend.pids() == []
    backend.unload("tiny")  # a second unload is a no-op


def test_settings_yoyu_owns_are_refused(tmp_path: Path, tiny: TinyModel) -> None:
    backend = make_backend(tmp_path / "logs")
    with pytest.raises(SettingsError, match="port"):
        backend.load(ModelRef("tiny", tiny.path), {"port": 8080})
    with pytest.raises(SettingsError, match="swa_full"):
        backend.load(ModelRef("tiny", tiny.path), {"swa_full": False})


# -- a crash in the middle of an answer ---------------------------------------


@pytest.mark.slow
def test_an_engine_killed_mid_stream_raises_instead_of_hanging(
    tmp_path: Path, tiny: TinyModel
) -> None:
    backend = make_backend(tmp_path / "logs")
    loaded = backend.load(ModelRef("tiny", tiny.path), {"n_ctx": 1024})
    assert loaded.pid is not None
    request = ChatRequest("tiny", GREETING, max_tokens=800, extra={"logit_bias": ascii_only_bias()})
    stream = backend.stream_chat(request)
    started = time.monotonic()
    with pytest.raises(BackendCrashedError) as raised:
        for chunk in stream:
            if chunk.content is not None and psutil.pid_exists(loaded.pid):
                os.kill(loaded.pid, signal.SIGKILL)
    assert time.monotonic() - started < TEST_TIMEOUTS.read_s
    assert "died while answering with signal SIGKILL" in str(raised.value)
    assert not psutil.pid_exists(loaded.pid)  # reaped, not a zombie
    assert backend.loaded_models() == []
    assert backend.health().detail == "no model loaded"


# -- stopping ---------------------------------------------------------------

# A stand-in engine for the one case the real one cannot show: ignoring SIGTERM.
STUBBORN_ENGINE = (
    "import signal, sys\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "signal.pause()\n"
)


def start_script(tmp_path: Path, source: str) -> EngineProcess:
    process = EngineProcess(
        [sys.executable, "-c", source], log_path=tmp_path / "engine.log", env=engine_environment()
    )
    process.wait_until_ready(lambda: "ready" in process.log_text(), timeout_s=20)
    return process


@pytest.mark.slow
def test_an_engine_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    process = start_script(tmp_path, STUBBORN_ENGINE)
    started = time.monotonic()
    returncode = process.stop(grace_s=0.3)
    assert time.monotonic() - started >= 0.3
    assert returncode == -signal.SIGKILL
    assert not psutil.pid_exists(process.pid)


def test_a_polite_engine_stops_on_sigterm_with_its_children(tmp_path: Path) -> None:
    polite_with_child = (
        "import subprocess, sys, signal\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('ready', child.pid, flush=True)\n"
        "signal.pause()\n"
    )
    process = start_script(tmp_path, polite_with_child)
    grandchild = int(process.log_text().split()[1])
    assert process.stop(grace_s=5) == -signal.SIGTERM
    assert not psutil.pid_exists(process.pid)
    # The group signal reached the grandchild too (at most a zombie awaiting init).
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie"


# -- pure parts ---------------------------------------------------------------


def test_settings_become_each_engines_flags() -> None:
    settings = {"n_ctx": 4096, "n_gpu_layers": -1, "type_k": 8, "flash_attn": True}
    python_flags = python_server_flags({**settings, "swa_full": True})
    assert python_flags[python_flags.index("--n_ctx") + 1] == "4096"
    assert python_flags[python_flags.index("--flash_attn") + 1] == "true"
    assert python_flags[python_flags.index("--interrupt_requests") + 1] == "false"
    assert "--swa_full" not in python_flags  # the library's own value: nothing to pass
    # the server's own default is logits_all on (an n_ctx x n_vocab array): off unless asked
    assert python_flags[python_flags.index("--logits_all") + 1] == "false"
    assert python_flags[python_flags.index("--n_outputs_max") + 1] == "1"
    every_token = python_server_flags({**settings, "logits_all": True, "n_batch": 256})
    assert every_token[every_token.index("--n_outputs_max") + 1] == "256"
    assert llama_server_flags({**settings, "use_mmap": False, "n_outputs_max": 1}) == [
        "--fit", "off", "-lv", "4",  # run what was planned; print the buffer sizes
        "--ctx-checkpoints", "2", "--cache-ram", "0", "-np", "1",  # bounded engine memory
        "-c", "4096", "-ngl", "all", "-ctk", "q8_0", "-fa", "on", "--no-mmap",
    ]  # fmt: skip
    assert "--ctx-checkpoints" in llama_server_flags({"ctx_checkpoints": 8})
    # A built-in name, rendered without Jinja (with Jinja the name would be the template).
    template_flags = ["--no-jinja", "--chat-template", "llama2"]
    assert llama_server_flags({"chat_format": "llama-2"})[-3:] == template_flags
    with pytest.raises(SettingsError, match="no flag for setting 'rope_wobble'"):
        llama_server_flags({"rope_wobble": 1})
    with pytest.raises(SettingsError, match="logits_all"):
        llama_server_flags({"logits_all": True})


def test_moe_experts_on_the_cpu_are_a_llama_server_flag_only() -> None:
    assert llama_server_flags({"n_cpu_moe": 3})[-2:] == ["--n-cpu-moe", "3"]
    with pytest.raises(SettingsError, match="cannot set n_cpu_moe=3"):
        python_server_flags({"n_cpu_moe": 3})
    assert "--n_cpu_moe" not in python_server_flags({"n_cpu_moe": 0})
    assert llama_server_flags({"repack": False})[-1] == "--no-repack"
    with pytest.raises(SettingsError, match="cannot set repack=False"):
        python_server_flags({"repack": False})


def test_backend_defaults_match_the_estimates() -> None:
    """The backend cannot import the estimate (layering), so its copies are checked here."""
    defaults = RunSettings()
    flags = llama_server_flags({})
    assert flags[flags.index("--ctx-checkpoints") + 1] == str(defaults.ctx_checkpoints)
    assert flags[flags.index("--cache-ram") + 1] == str(defaults.prompt_cache_mib)
    assert (
        python_server_flags({})[python_server_flags({}).index("--logits_all") + 1]
        == str(defaults.logits_all).lower()
    )


def test_the_engine_does_not_inherit_variables_it_would_read_as_settings() -> None:
    environ = {
        "PATH": "/bin",
        "MODEL": "/x.gguf",
        "PORT": "1",
        "n_ctx": "9",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    assert engine_environment(environ) == {
        "PATH": "/bin",
        "CUDA_VISIBLE_DEVICES": "0",
        "PYTHONPATH": str(Path(yoyu.__file__).resolve().parents[1]),  # run from the source
        "PYTHONUNBUFFERED": "1",
    }


@pytest.mark.slow
def test_the_engine_watcher_imports_the_parents_own_yoyu() -> None:
    """A child started with the engine's environment finds this very yoyu: the one a
    checkout runs with ``PYTHONPATH=src`` even where no yoyu is installed."""
    done = subprocess.run(
        [sys.executable, "-c", "import yoyu; print(yoyu.__file__)"],
        env=engine_environment({"PATH": os.environ.get("PATH", "")}),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert Path(done.stdout.strip()).resolve() == Path(yoyu.__file__).resolve()


def test_engine_complaint_prefers_the_cause_and_skips_traceback_frames() -> None:
    log = (
        "llama_model_loader: loaded meta data\n"
        "gguf_init_from_reader: invalid magic characters: '\x89PNG', expected 'GGUF'\n"
        "Traceback (most recent call last):\n"
        '  File "app.py", line 1, in <module>\n'
        "ValueError: Failed to load model from file: m.gguf\n"
        'INFO:     127.0.0.1:1 - "GET /v1/models HTTP/1.1" 200 OK\n'
    )
    assert engine_complaint(log) == (
        "gguf_init_from_reader: invalid magic characters: '?PNG', expected 'GGUF' ... "
        "ValueError: Failed to load model from file: m.gguf"
    )
    assert engine_complaint("") == "(the engine's log is empty)"


def test_engine_complaint_is_llama_cpps_abort_not_its_backtrace() -> None:
    log = (  # llama-server (0c1e570) when an rpc-server went away mid-answer, shortened
        "0.00.630.751 I load_tensors: offloaded 19/19 layers to GPU\n"
        "/build/vendor/llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp:569: Remote RPC server "
        "crashed or returned malformed response\n"
        "[New LWP 924]\n"
        "#2  0x0000556a7f34973c in rpc_dispatcher::send(rpc_cmd) ()\n"
        "58\t../sysdeps/nptl/libc_start_call_main.h: No such file or directory.\n"
        "[Inferior 1 (process 921) detached]\n"
    )
    expected = "ggml-rpc.cpp:569: Remote RPC server crashed or returned malformed response"
    assert engine_complaint(log) == expected


# Lines as llama-cpp-python 0.3.36's server logged them for two requests in a row.
TWO_REQUESTS = """\
llama_perf_context_print: prompt eval time =       0.04 ms /    26 tokens (    0.00 ms per token)
llama_perf_context_print:        eval time =       1.02 ms /    12 runs   (    0.09 ms per token)
Llama.generate: 16 prefix-match hit, remaining 10 prompt tokens to eval
llama_perf_context_print: prompt eval time =       2.16 ms /    10 tokens (    0.22 ms per token)
llama_perf_context_print:        eval time =       0.65 ms /     7 runs   (    0.09 ms per token)
"""


def test_request_timings_are_read_only_when_one_request_is_in_the_log() -> None:
    second = TWO_REQUESTS.split("\n", 2)[2]
    timings = parse_request_timings(second)
    assert timings is not None
    assert (timings.prompt_tokens, timings.cached_tokens, timings.decode_tokens) == (10, 16, 7)
    assert timings.prompt_ms == pytest.approx(2.16)
    assert parse_request_timings(TWO_REQUESTS) is None


def test_a_log_dir_given_as_text_from_yoyu_toml_is_a_path(tmp_path: Path) -> None:
    backend = LlamaCppServerBackend(engine=python_engine(), log_dir=str(tmp_path / "from-toml"))
    assert backend.log_dir == tmp_path / "from-toml"


def test_an_engine_still_loading_is_in_pids_so_a_guard_can_stop_it(tmp_path: Path) -> None:
    never_ready = tmp_path / "never-ready-server"
    never_ready.write_text("#!/bin/sh\nexec sleep 60\n")
    never_ready.chmod(0o755)
    backend = LlamaCppServerBackend(
        engine=LlamaCppEngine("llama-server", str(never_ready)),
        log_dir=tmp_path / "logs",
        start_timeout_s=30,
    )
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF")  # never read: the engine never gets that far
    failures: list[BaseException] = []

    def load() -> None:
        try:
            backend.load(ModelRef("slow", model_file), SETTINGS)
        except BackendStartError as exc:
            failures.append(exc)

    loader = threading.Thread(target=load)
    loader.start()
    loading_pids = wait_until(backend.pids, 10, "a loading engine to be visible before it is ready")
    os.kill(loading_pids[0], signal.SIGKILL)  # what a guard's last step does
    loader.join(timeout=10)
    assert not loader.is_alive()
    assert len(failures) == 1 and "before it was ready" in str(failures[0])
    assert backend.pids() == []


PARENT_SOURCE = """
import sys
from pathlib import Path
from yoyu.backends.llamacpp_server import LlamaCppServerBackend, python_engine
from yoyu.backends.protocol import ModelRef
backend = LlamaCppServerBackend(engine=python_engine(), log_dir=Path(sys.argv[2]))
loaded = backend.load(ModelRef("tiny", Path(sys.argv[1])), {"n_ctx": 256, "swa_full": True})
print(loaded.pid, flush=True)
sys.stdin.read()  # hold until killed
"""


@pytest.mark.slow
def test_an_engine_ends_when_the_yoyu_that_started_it_is_killed(
    tmp_path: Path, tiny: TinyModel
) -> None:
    command = [sys.executable, "-c", PARENT_SOURCE, str(tiny.path), str(tmp_path / "logs")]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        engine = psutil.Process(int(parent.stdout.readline()))
        assert engine.is_running() and PYTHON_SERVER_MODULE in engine.cmdline()
        parent.kill()  # SIGKILL: no atexit, no close(); only the engine's own watch is left
    _gone, alive = psutil.wait_procs([engine], timeout=30)
    assert alive == [], "the engine outlived the process that started it"


@pytest.mark.slow
def test_an_engine_unloaded_while_its_health_probe_is_out_is_no_problem(
    tiny: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = make_backend(tmp_path)
    try:
        backend.load(ModelRef("tiny", tiny.path), SETTINGS)
        probe = OpenAIHttpClient.list_model_ids

        def unloaded_first(client: OpenAIHttpClient, timeout_s: float | None = None) -> Any:
            backend.unload("tiny")  # a request or the guard, on another thread, meanwhile
            return probe(client, timeout_s=timeout_s)

        monkeypatch.setattr(OpenAIHttpClient, "list_model_ids", unloaded_first)
        health = backend.health()
        assert health.ok, health.detail
        assert backend.loaded_models() == []
    finally:
        backend.close()
