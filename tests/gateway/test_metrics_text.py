"""The gateway's Prometheus text: a gauge family with several models is one family."""

from __future__ import annotations

from yoyu.backends.vllm_metrics import metric_samples
from yoyu.gateway.metrics import GatewayMetrics, Gauge


def test_a_family_of_several_models_has_one_help_and_type_and_its_lines_together() -> None:
    gauges = [
        Gauge("yoyu_model_loaded_bytes", "A loaded model.", 10, (("model", "a"),)),
        Gauge("yoyu_engine_kv_used_ratio", "Pool in use.", 0.25, (("model", "a"),)),
        Gauge("yoyu_model_loaded_bytes", "A loaded model.", 20, (("model", 'b"q'),)),
    ]
    text = GatewayMetrics().render(gauges)
    assert text.count("# TYPE yoyu_model_loaded_bytes gauge") == 1
    assert text.count("# HELP yoyu_model_loaded_bytes") == 1
    lines = text.splitlines()
    loaded = [i for i, line in enumerate(lines) if line.startswith("yoyu_model_loaded_bytes")]
    assert loaded == [loaded[0], loaded[0] + 1]  # Prometheus wants a family's lines in a row
    samples = {(name, labels.get("model")): value for name, labels, value in metric_samples(text)}
    assert samples[("yoyu_model_loaded_bytes", 'b"q')] == 20
    assert samples[("yoyu_engine_kv_used_ratio", "a")] == 0.25
