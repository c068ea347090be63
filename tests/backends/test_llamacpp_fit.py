"""llama.cpp's own estimator and fit (llama-fit-params) as yoyu's peer: its output read
back, yoyu's settings passed to it, and its figures on the real Gemma beside yoyu's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from yoyu.backends.llamacpp_fit import (
    estimate_with_llama_cpp,
    fit_flags,
    fit_with_llama_cpp,
    parse_fit_print,
    parse_fitted_arguments,
)
from yoyu.errors import BackendError
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import RunSettings
from yoyu.machine.probe import probe_machine
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.plan.emit.llama_cpp import engine_load_settings
from yoyu.units import MIB

FIT_PRINT = """\
0.00.002.012 I llama_fit_params: printing estimated memory in MiB to stdout ...
RPC0 35 13 41
RPC1 199 14 543
Host 170 0 26
"""


def test_the_breakdown_is_read_per_device_with_rpc_servers_named_by_endpoint() -> None:
    devices = parse_fit_print(FIT_PRINT, ["10.0.0.2:50052", "10.0.0.3:50052"])
    assert [device.device for device in devices] == [
        "RPC[10.0.0.2:50052]",
        "RPC[10.0.0.3:50052]",
        "CPU",
    ]
    assert devices[1].model_bytes == 199 * MIB and devices[1].compute_bytes == 543 * MIB
    assert devices[2].total_bytes == (170 + 0 + 26) * MIB


def test_an_rpc_device_beyond_the_endpoints_keeps_llama_cpps_name() -> None:
    assert [device.device for device in parse_fit_print(FIT_PRINT, ["a:1"])][:2] == [
        "RPC[a:1]",
        "RPC1",
    ]


@pytest.mark.parametrize(
    ("line", "ngl", "split", "overrides"),
    [
        ("-c 4096 -ngl -1", -1, (), ()),
        ("-c 8192 -ngl 30 -ts 12,18", 30, (12, 18), ()),
        (
            '-c 32768 -ngl 49 -ot "blk\\.0\\.ffn_(up|down)_exps=CPU,blk\\.1\\.ffn_up_exps=CPU"',
            49,
            (),
            ("blk\\.0\\.ffn_(up|down)_exps=CPU", "blk\\.1\\.ffn_up_exps=CPU"),
        ),
    ],
)
def test_the_fitted_line_is_read(
    line: str, ngl: int, split: tuple[int, ...], overrides: tuple[str, ...]
) -> None:
    fitted = parse_fitted_arguments(f"some log line\n{line}\n")
    assert fitted is not None and fitted.fits
    assert fitted.n_gpu_layers == ngl and fitted.tensor_split == split
    assert fitted.overrides == overrides and fitted.printed == line


def test_no_fitted_line_reads_as_none() -> None:
    assert parse_fitted_arguments("error: invalid argument: -kvu\n") is None


def test_yoyus_settings_become_the_flags_llama_fit_params_takes() -> None:
    load = engine_load_settings(
        RunSettings(n_ctx=4096, n_gpu_layers=10, engine="llama-server", n_parallel=4,
                    kv_unified=True, use_mmap=False, flash_attn=True, type_k="q8_0")
    ) | {"rpc": ["127.0.0.1:50052"], "chat_format": "gemma"}  # fmt: skip
    flags = fit_flags(load)
    argv = list(flags.argv)
    assert argv[argv.index("-c") + 1] == "4096" and argv[argv.index("-np") + 1] == "4"
    assert argv[argv.index("-ngl") + 1] == "10" and argv[argv.index("-ctk") + 1] == "q8_0"
    assert argv[argv.index("--rpc") + 1] == "127.0.0.1:50052"
    assert not {"--fit", "-lv", "--chat-template", "--no-jinja"} & set(argv)
    # what it has no flag for is named, so a reader knows why its figures differ
    assert set(flags.unexpressed) == {"--kv-unified", "--no-mmap"}
    for_a_fit = fit_flags(load, placement=False).argv
    assert "-ngl" not in for_a_fit and "-c" in for_a_fit
    experts = fit_flags(load | {"n_cpu_moe": 4})
    assert experts.argv[experts.argv.index("--n-cpu-moe") + 1] == "4"
    # a fit places experts itself (it refuses overrides the user set)
    assert "--n-cpu-moe" not in fit_flags(load | {"n_cpu_moe": 4}, placement=False).argv


# -- the real program on the real model ------------------------------------------------


def test_llama_cpps_estimate_of_the_real_gemma_agrees_with_yoyus_where_both_count_alike(
    built_fit_params: Path, real_gemma: Path
) -> None:
    settings = RunSettings(n_ctx=4096, engine="llama-server")
    peer = estimate_with_llama_cpp(
        str(built_fit_params), real_gemma, engine_load_settings(settings)
    )
    host = peer.device("CPU")
    assert host is not None and len(peer.devices) == 1
    spec = read_gguf_model(real_gemma)
    machine = probe_machine()
    cpu = estimate_memory(spec, machine, settings).device("CPU")
    # the KV cache: the same bytes (llama.cpp prints whole MiB, rounded down)
    assert 0 <= cpu.kv_bytes - host.context_bytes < MIB
    # weights: llama.cpp counts the mapped file less the tensors it repacks, and not the
    # CPU_REPACK copy that llama-server then allocates; yoyu counts both
    assert 0 <= cpu.weights_bytes - cpu.repack_bytes - host.model_bytes < MIB
    # compute: the peer reserves logits for every token of a ubatch (it cannot be told
    # llama-server's one output row per slot): 512 x 262,144 x 4 bytes, where llama-server's
    # whole compute buffer is a tenth of that. yoyu asked for every token's row (embeddings)
    # sizes it within its ceiling for where ggml-alloc puts the logits among the last
    # layer's tensors (up to 1.5 % above).
    ubatch_logits = settings.n_ubatch * spec.vocab_size * 4
    assert host.compute_bytes >= ubatch_logits > 5 * cpu.compute_bytes
    every_row = dataclasses.replace(settings, embeddings=True)
    all_logits = estimate_memory(spec, machine, every_row).device("CPU").compute_bytes
    assert host.compute_bytes <= all_logits <= 1.015 * (host.compute_bytes + MIB)


def test_llama_cpps_fit_answers_for_the_real_gemma(
    built_fit_params: Path, real_gemma: Path
) -> None:
    load = engine_load_settings(RunSettings(n_ctx=4096, engine="llama-server"))
    fitted = fit_with_llama_cpp(str(built_fit_params), real_gemma, load)
    assert fitted.fits and fitted.n_ctx == 4096 and fitted.n_gpu_layers is not None
    assert fitted.printed.startswith("-c 4096 -ngl")


def test_a_broken_model_is_one_line_naming_the_program(
    built_fit_params: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 40)
    with pytest.raises(BackendError) as caught:
        estimate_with_llama_cpp(str(built_fit_params), broken, {"n_ctx": 512})
    assert "llama-fit-params" in str(caught.value) and "\n" not in str(caught.value)
