"""What a running vLLM says about its KV cache on ``/metrics``.

vLLM prints no buffer lines as llama.cpp does; it exposes its pool on its
Prometheus endpoint instead::

    vllm:cache_config_info{block_size="128",kv_cache_memory_bytes="268435456",
        kv_cache_size_tokens="131072",kv_cache_max_concurrency="64.0",...} 1.0
    vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.0
    vllm:num_requests_running{engine="0",model_name="tiny"} 0.0
    vllm:num_requests_waiting{engine="0",model_name="tiny"} 0.0

The first is read once when the model is ready: the pool in bytes becomes the
engine's KV buffer (``ReportedBuffers``, the figure a run compares with its
plan). The others are a gauge the sampler reads while a run goes on: how full
the pool is (a share, 0..1, of its blocks) and how many requests run and wait.
The endpoint answers in ~7 ms with ~48 KB here, so it is read at 1 Hz, not at
the sampler's 10 Hz.

Where vLLM sizes the pool itself (a GPU with no ``--kv-cache-memory-bytes``)
the label says ``None``; the Worker's "Available KV cache memory: X GiB" log
line (two decimals of GiB) is used then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from yoyu.backends.llamacpp_log import ReportedBuffers
from yoyu.monitor.types import EngineSample
from yoyu.units import GIB

METRICS_TIMEOUT_S = 1.0
_SAMPLE_LINE = re.compile(r"^(?P<name>[\w:]+)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_AVAILABLE_KV = re.compile(r"Available KV cache memory: (\d+(?:\.\d+)?) GiB")
_POOL_DEVICE = re.compile(r"(\w+) KV cache size: [\d,]+ tokens")


@dataclass(frozen=True)
class VllmCacheConfig:
    """The pool vLLM took: bytes (None when it did not say), tokens, block and concurrency."""

    kv_bytes: int | None
    kv_tokens: int | None
    block_tokens: int | None
    max_concurrency: float | None


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample line of a Prometheus text exposition: name, labels, value."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_LINE.match(line)
        if match is None:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        labels = {key: _unescape(raw) for key, raw in _LABEL.findall(match["labels"] or "")}
        samples.append((match["name"], labels, value))
    return samples


def cache_config(text: str) -> VllmCacheConfig | None:
    """``vllm:cache_config_info``'s labels, or None where the endpoint has none."""
    for name, labels, _ in metric_samples(text):
        if name == "vllm:cache_config_info":
            return VllmCacheConfig(
                kv_bytes=_int_or_none(labels.get("kv_cache_memory_bytes")),
                kv_tokens=_int_or_none(labels.get("kv_cache_size_tokens")),
                block_tokens=_int_or_none(labels.get("block_size")),
                max_concurrency=_float_or_none(labels.get("kv_cache_max_concurrency")),
            )
    return None


def engine_sample(text: str) -> EngineSample | None:
    """The pool's fill and the request counts (summed over vLLM's engines), or None."""
    kv_used: float | None = None
    running = waiting = 0
    for name, _, value in metric_samples(text):
        if name == "vllm:kv_cache_usage_perc":  # a share 0..1, despite "perc"
            kv_used = max(kv_used or 0.0, value)
        elif name == "vllm:num_requests_running":
            running += int(value)
        elif name == "vllm:num_requests_waiting":
            waiting += int(value)
    if kv_used is None:
        return None
    return EngineSample(kv_used_fraction=kv_used, requests_running=running,
                        requests_waiting=waiting)  # fmt: skip


def vllm_buffers(config: VllmCacheConfig | None, log_text: str) -> ReportedBuffers:
    """The pool as the engine's KV buffer, on the device vLLM says it put it."""
    kv_bytes = config.kv_bytes if config is not None else None
    if kv_bytes is None:
        logged = _AVAILABLE_KV.findall(log_text)
        kv_bytes = round(float(logged[-1]) * GIB) if logged else None
    if kv_bytes is None:
        return ReportedBuffers()
    logged_device = _POOL_DEVICE.findall(log_text)
    device = "CPU" if not logged_device or logged_device[-1] == "CPU" else "CUDA0"
    return ReportedBuffers({"kv": {device: kv_bytes}})


class VllmMetricsReader:
    """Reads one vLLM's ``/metrics``; a failed read is None (the engine may be going away)."""

    def __init__(self, url: str, timeout_s: float = METRICS_TIMEOUT_S) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout_s)

    def text(self) -> str | None:
        try:
            response = self._client.get(self.url)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    def engine_sample(self) -> EngineSample | None:
        text = self.text()
        return engine_sample(text) if text is not None else None

    def close(self) -> None:
        self._client.close()


def read_metrics_text(url: str, timeout_s: float = METRICS_TIMEOUT_S) -> str | None:
    """The endpoint's text once, for a caller that asks rarely (a load, a scrape)."""
    reader = VllmMetricsReader(url, timeout_s)
    try:
        return reader.text()
    finally:
        reader.close()


def read_engine_sample(url: str, timeout_s: float = METRICS_TIMEOUT_S) -> EngineSample | None:
    text = read_metrics_text(url, timeout_s)
    return engine_sample(text) if text is not None else None


def _unescape(raw: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda match: _UNESCAPE[match.group(0)], raw)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
