"""The gateway's Prometheus metrics, written by ``prometheus-client``.

Counters and histograms are updated as requests finish: requests by
endpoint, the model asked for, the model that answered and the status; their
latency; tokens; backend failures; fallbacks; how long requests waited for a
model's slot and how many were refused because its queue was full. Gauges
(memory, loaded models, queue depth, what engines say of their own load)
are read from the service when ``/metrics`` is scraped. Labels never hold
prompts or keys; a model label holds only a name the gateway serves.

The library writes the exposition (label escaping, histogram buckets that
are cumulative, ``+Inf``), and answers in OpenMetrics when the scraper asks
for it in its Accept header (Prometheus does), else in text format 0.0.4.
Each service owns its registry: two gateways in one process (the tests)
never share a count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
QUEUE_WAIT_BUCKETS_S = (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Gauge:
    """One gauge sample, computed at scrape time."""

    name: str
    help: str
    value: float
    labels: Labels = ()


class GatewayMetrics:
    """The gateway's counters and histograms, and its scrape-time gauges. Thread-safe."""

    def __init__(self, gauges: Callable[[], Iterable[Gauge]] = tuple) -> None:
        # The _created series would double every line for a timestamp no dashboard of
        # ours reads; the switch is the library's, process-wide, and only we use it here.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self._requests = Counter(
            "yoyu_requests", "Requests answered.",
            ("endpoint", "model", "route", "status"), registry=registry,
        )  # fmt: skip
        self._latency = Histogram(
            "yoyu_request_seconds", "Request latency.",
            ("endpoint", "route"), buckets=LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self._tokens = Counter("yoyu_tokens", "Tokens in and out.", ("route", "kind"),
                               registry=registry)  # fmt: skip
        self._backend_errors = Counter(
            "yoyu_backend_errors", "Failures.", ("backend", "error"), registry=registry
        )
        self._fallbacks = Counter("yoyu_fallbacks", "Next routes.", ("from", "to"),
                                  registry=registry)  # fmt: skip
        self._queue_wait = Histogram(
            "yoyu_queue_wait_seconds", "Time a request waited for a free slot of its model.",
            ("model",), buckets=QUEUE_WAIT_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self._queue_rejected = Counter(
            "yoyu_queue_rejected", "Requests refused because the model's queue was full.",
            ("model",), registry=registry,
        )  # fmt: skip
        registry.register(_ScrapeGauges(gauges))

    def request(self, endpoint: str, model: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(endpoint, model, route, str(status)).inc()
        self._latency.labels(endpoint, route).observe(seconds)

    def tokens(self, route: str, prompt: int | None, completion: int) -> None:
        if prompt:
            self._tokens.labels(route, "prompt").inc(prompt)
        self._tokens.labels(route, "completion").inc(completion)

    def backend_error(self, backend: str, error: str) -> None:
        self._backend_errors.labels(backend, error).inc()

    def fallback(self, from_model: str, to_model: str) -> None:
        self._fallbacks.labels(from_model, to_model).inc()

    def queue_wait(self, model: str, seconds: float) -> None:
        self._queue_wait.labels(model).observe(seconds)

    def queue_rejected(self, model: str) -> None:
        self._queue_rejected.labels(model).inc()

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its content type, in the format ``accept`` asks for."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


class _ScrapeGauges:
    """A collector that reads the service's gauges at each scrape, one family per name
    (Prometheus wants a family's samples together, under one HELP and TYPE)."""

    def __init__(self, gauges: Callable[[], Iterable[Gauge]]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for gauge in self._gauges():
            family = families.get(gauge.name)
            if family is None:
                keys = [key for key, _ in gauge.labels]
                family = families[gauge.name] = GaugeMetricFamily(
                    gauge.name, gauge.help, labels=keys
                )
            family.add_metric([value for _, value in gauge.labels], gauge.value)
        yield from families.values()
