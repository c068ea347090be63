"""The gateway's Prometheus exposition, written by prometheus-client."""

from __future__ import annotations

from yoyu.backends.vllm_metrics import metric_samples
from yoyu.gateway.metrics import GatewayMetrics, Gauge


def test_a_family_of_several_models_has_one_help_and_type_and_its_lines_together() -> None:
    gauges = [
        Gauge("yoyu_model_loaded_bytes", "A loaded model.", 10, (("model", "a"),)),
        Gauge("yoyu_engine_kv_used_ratio", "Pool in use.", 0.25, (("model", "a"),)),
        Gauge("yoyu_model_loaded_bytes", "A loaded model.", 20, (("model", 'b"q'),)),
    ]
    body, content_type = GatewayMetrics(lambda: gauges).render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert text.count("# TYPE yoyu_model_loaded_bytes gauge") == 1
    assert text.count("# HELP yoyu_model_loaded_bytes") == 1
    lines = text.splitlines()
    loaded = [i for i, line in enumerate(lines) if line.startswith("yoyu_model_loaded_bytes")]
    assert loaded == [loaded[0], loaded[0] + 1]  # Prometheus wants a family's lines in a row
    samples = {(name, labels.get("model")): value for name, labels, value in metric_samples(text)}
    assert samples[("yoyu_model_loaded_bytes", 'b"q')] == 20
    assert samples[("yoyu_engine_kv_used_ratio", "a")] == 0.25


def test_counters_and_histograms_read_back_as_prometheus_parses_them() -> None:
    metrics = GatewayMetrics()
    for seconds in (0.003, 0.2, 0.2):
        metrics.request("/v1/chat/completions", "m", "m", 200, seconds)
    metrics.queue_wait("m", 0.0)
    metrics.queue_wait("m", 2.0)
    metrics.queue_rejected("m")
    text = metrics.render()[0].decode()
    samples = {
        (name, labels.get("le"), labels.get("model")): value
        for name, labels, value in metric_samples(text)
    }
    assert samples[("yoyu_requests_total", None, "m")] == 3
    assert samples[("yoyu_request_seconds_bucket", "0.005", None)] == 1  # cumulative buckets
    assert samples[("yoyu_request_seconds_bucket", "0.25", None)] == 3
    assert samples[("yoyu_request_seconds_bucket", "+Inf", None)] == 3
    assert samples[("yoyu_queue_wait_seconds_count", None, "m")] == 2
    assert samples[("yoyu_queue_wait_seconds_bucket", "1.0", "m")] == 1
    assert samples[("yoyu_queue_rejected_total", None, "m")] == 1
    assert "_created" not in text  # one line per sample, no timestamps series


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    metrics = GatewayMetrics()
    metrics.request("/v1/models", "-", "-", 200, 0.001)
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")
