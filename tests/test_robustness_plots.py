"""Robustness and calibration chart specs: values as in the summary (in %), gaps for NaN, and
valid plotly figures (plotly's own validator, when installed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.calibration import CalibrationMetrics
from harness.report.robustness_plots import corruption_heatmap, reliability_diagram, severity_curves
from harness.robustness.summary import summarize_robustness


def rec(model, corruption, severity, miou):
    return {"model": model, "corruption": corruption, "severity": severity, "mIoU": miou}


SUMMARY = summarize_robustness([
    rec("cnn", None, None, 0.5), rec("dpt", None, None, 0.6),
    rec("cnn", "fog", 1, 0.4), rec("cnn", "fog", 2, 0.3), rec("dpt", "fog", 1, 0.55), rec("dpt", "fog", 2, 0.5),
    rec("cnn", "snow", 1, 0.2), rec("cnn", "snow", 2, 0.1), rec("dpt", "snow", 1, 0.4), rec("dpt", "snow", 2, None),
], reference="cnn")


def valid_figure(spec: dict) -> None:
    go = pytest.importorskip("plotly.graph_objects", reason="plotly is not installed (pip install 'segbench[report]')")
    go.Figure(json.loads(json.dumps(spec)))  # raises on an unknown property or a bad value


def test_heatmap_values_and_gaps():
    spec = corruption_heatmap(SUMMARY)
    trace = spec["data"][0]
    assert trace["x"] == ["cnn", "dpt"] and trace["y"] == ["fog", "snow"]
    assert trace["z"][0] == pytest.approx([35.0, 52.5]) and trace["z"][1][0] == pytest.approx(15.0)
    assert trace["z"][1][1] is None  # dpt's snow misses severity 2
    valid_figure(spec)
    ce = corruption_heatmap(SUMMARY, "CE")
    assert ce["data"][0]["z"][0] == pytest.approx([1.0, (0.45 + 0.5) / (0.6 + 0.7)])
    assert "reference cnn" in ce["layout"]["title"]["text"]
    valid_figure(ce)
    valid_figure(corruption_heatmap(SUMMARY, "relative"))
    with pytest.raises(ValueError, match="expected one of mean_mIoU, relative, CE"):
        corruption_heatmap(SUMMARY, "mce")
    assert corruption_heatmap({"models": {}, "corruptions": []}) is None


def test_severity_curves_start_at_clean():
    fog = severity_curves(SUMMARY, "fog")
    cnn, dpt = fog["data"]
    assert cnn["x"] == [0, 1, 2] and cnn["y"] == pytest.approx([50.0, 40.0, 30.0])
    assert dpt["y"] == pytest.approx([60.0, 55.0, 50.0])
    valid_figure(fog)
    mean = severity_curves(SUMMARY)
    assert mean["data"][0]["y"] == pytest.approx([50.0, 30.0, 20.0])
    assert mean["data"][1]["y"][2] is None  # the mean needs every corruption
    valid_figure(mean)
    with pytest.raises(ValueError, match="corruption 'rain' is not in the summary"):
        severity_curves(SUMMARY, "rain")


def test_mean_curve_needs_one_severity_set():
    s = summarize_robustness([rec("m", "fog", 1, 0.5), rec("m", "snow", 2, 0.4)])
    assert severity_curves(s) is None and severity_curves(s, "fog") is not None


def test_reliability_diagram_from_calibration_metrics():
    m = CalibrationMetrics(3, n_bins=5)
    g = torch.Generator().manual_seed(0)
    m.update_logits(torch.randn(3, 8, 8, generator=g) * 2, torch.randint(0, 3, (16, 16), generator=g))
    result = m.compute()
    spec = reliability_diagram(result, "dpt")
    bars = spec["data"][0]
    assert bars["x"] == pytest.approx([10, 30, 50, 70, 90])
    acc = [None if np.isnan(a) else 100 * a for a in result["reliability"]["accuracy"]]
    assert bars["y"] == acc and [c[0] for c in bars["customdata"]] == result["reliability"]["count"]
    assert "dpt" in spec["layout"]["title"]["text"] and "ECE" in spec["layout"]["title"]["text"]
    valid_figure(spec)
    assert reliability_diagram(CalibrationMetrics(3).compute()) is None
