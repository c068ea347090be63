"""Prometheus text exposition for the gateway, without a client library.

Counters and one latency histogram, labelled by endpoint, the model asked for,
the model that answered and the status; gauges (memory, loaded models) are
read when ``/metrics`` is scraped. Labels never hold prompts or keys.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Gauge:
    """One gauge line, computed at scrape time."""

    name: str
    help: str
    value: float
    labels: Labels = ()


class GatewayMetrics:
    """Thread-safe counters; ``render`` writes the text format (version 0.0.4)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[Labels, int] = defaultdict(int)
        self._tokens: dict[Labels, int] = defaultdict(int)
        self._backend_errors: dict[Labels, int] = defaultdict(int)
        self._fallbacks: dict[Labels, int] = defaultdict(int)
        self._latency_counts: dict[Labels, list[int]] = {}
        self._latency_sums: dict[Labels, float] = defaultdict(float)

    def request(self, endpoint: str, model: str, route: str, status: int, seconds: float) -> None:
        labels: Labels = (("endpoint", endpoint), ("model", model), ("route", route))
        labels += (("status", str(status)),)
        latency_labels = (("endpoint", endpoint), ("route", route))
        with self._lock:
            self._requests[labels] += 1
            empty = [0] * (len(LATENCY_BUCKETS_S) + 1)
            counts = self._latency_counts.setdefault(latency_labels, empty)
            counts[_bucket(seconds)] += 1
            self._latency_sums[latency_labels] += seconds

    def tokens(self, route: str, prompt: int | None, completion: int) -> None:
        with self._lock:
            if prompt:
                self._tokens[(("route", route), ("kind", "prompt"))] += prompt
            self._tokens[(("route", route), ("kind", "completion"))] += completion

    def backend_error(self, backend: str, error: str) -> None:
        with self._lock:
            self._backend_errors[(("backend", backend), ("error", error))] += 1

    def fallback(self, from_model: str, to_model: str) -> None:
        with self._lock:
            self._fallbacks[(("from", from_model), ("to", to_model))] += 1

    def render(self, gauges: Iterable[Gauge] = ()) -> str:
        with self._lock:
            lines = [
                *_family("yoyu_requests_total", "counter", "Requests answered.", self._requests),
                *_family("yoyu_tokens_total", "counter", "Tokens in and out.", self._tokens),
                *_family("yoyu_backend_errors_total", "counter", "Failures.", self._backend_errors),
                *_family("yoyu_fallbacks_total", "counter", "Next routes.", self._fallbacks),
                *self._histogram(),
            ]
        described: set[str] = set()
        for gauge in sorted(gauges, key=lambda gauge: gauge.name):  # a family's lines together
            if gauge.name not in described:  # one HELP and TYPE per family, as the format asks
                described.add(gauge.name)
                lines += [f"# HELP {gauge.name} {gauge.help}", f"# TYPE {gauge.name} gauge"]
            lines.append(f"{gauge.name}{_labels(gauge.labels)} {gauge.value:g}")
        return "\n".join(lines) + "\n"

    def _histogram(self) -> list[str]:
        name = "yoyu_request_seconds"
        lines = [f"# HELP {name} Request latency.", f"# TYPE {name} histogram"]
        for labels, counts in self._latency_counts.items():
            running = 0
            for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f"{name}_bucket{_labels((*labels, ('le', le)))} {running}")
            lines.append(f"{name}_sum{_labels(labels)} {self._latency_sums[labels]:.6f}")
            lines.append(f"{name}_count{_labels(labels)} {running}")
        return lines


def _bucket(seconds: float) -> int:
    above = (i for i, bound in enumerate(LATENCY_BUCKETS_S) if seconds <= bound)
    return next(above, len(LATENCY_BUCKETS_S))


def _family(name: str, kind: str, help_text: str, values: Mapping[Labels, int]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    return lines + [f"{name}{_labels(labels)} {value}" for labels, value in values.items()]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
