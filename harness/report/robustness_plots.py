"""Chart specifications for robustness and calibration, as plain plotly.js data (like
:mod:`harness.report.plots`): a corruption x model heatmap and mIoU-vs-severity curves from
:func:`harness.robustness.summary.summarize_robustness`, and a reliability diagram from
:meth:`harness.calibration.CalibrationMetrics.compute`. Each returns ``{"data", "layout"}`` or None
when there is nothing to show. Units: mIoU and accuracy in %, CE as a ratio (1 = the reference).
"""

from __future__ import annotations

import math

from harness.report.plots import _layout

# summary quantity -> (per-corruption key, title, unit scale, colour bar title, zmin, zmax)
HEATMAP_VALUES = {
    "mean_mIoU": ("mean_mIoU", "mIoU averaged over severities (%)", 100.0, "mIoU (%)", 0, 100),
    "relative": ("relative", "Relative robustness: corrupted / clean mIoU (%)", 100.0, "relative (%)", 0, 100),
    "CE": ("CE", "Corruption error normalised by the reference (1 = reference)", 1.0, "CE", None, None),
}


def _finite(v) -> float | None:
    """``v`` as a float, or None (a gap in the chart) when missing or NaN."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def corruption_heatmap(summary: dict, value: str = "mean_mIoU") -> dict | None:
    """Corruptions (rows) x models (columns) heatmap of ``value``: ``mean_mIoU``, ``relative`` or ``CE``."""
    if value not in HEATMAP_VALUES:
        raise ValueError(f"heatmap value {value!r}: expected one of {', '.join(HEATMAP_VALUES)}")
    key, title, scale, bar, zmin, zmax = HEATMAP_VALUES[value]
    models, corruptions = list(summary.get("models", {})), list(summary.get("corruptions", []))
    if not models or not corruptions:
        return None
    z = []
    for c in corruptions:
        row = [summary["models"][m]["per_corruption"].get(c, {}).get(key) for m in models]
        z.append([None if _finite(v) is None else scale * v for v in row])
    if all(v is None for row in z for v in row):
        return None
    trace = {"type": "heatmap", "z": z, "x": models, "y": corruptions, "colorscale": "Viridis",
             "colorbar": {"title": {"text": bar}}, "hoverongaps": False,
             "hovertemplate": "%{y} · %{x}: %{z:.2f}<extra></extra>"}
    if value == "CE":
        trace.update(colorscale="RdBu", reversescale=True, zmid=1.0)
    else:
        trace.update(zmin=zmin, zmax=zmax)
    if value == "CE" and summary.get("reference"):
        title += f"; reference {summary['reference']}"
    return {"data": [trace], "layout": _layout(title, "model", "", height=max(320, 160 + 26 * len(corruptions)),
                                               margin={"t": 50, "l": 140, "r": 20, "b": 90})}


def _curve(per: dict, names: list[str], severities: list[int]) -> list[float | None]:
    """mIoU (%) at each severity: of one corruption, or the mean over ``names`` (None if any is missing)."""
    out = []
    for i in range(len(severities)):
        vals = [_finite(per[c]["mIoU"][i]) if c in per else None for c in names]
        out.append(None if not vals or any(v is None for v in vals) else 100 * sum(vals) / len(vals))
    return out


def severity_curves(summary: dict, corruption: str | None = None) -> dict | None:
    """mIoU (%) vs severity, one line per model, severity 0 = clean images.

    ``corruption`` None: the mean over every corruption, drawn only when all corruptions were run at
    the same severities (otherwise the mean at a severity would mix different corruption sets).
    """
    sev = summary.get("severities", {})
    names = list(sev) if corruption is None else [corruption]
    if corruption is not None and corruption not in sev:
        raise ValueError(f"corruption {corruption!r} is not in the summary; expected one of {', '.join(sev)}")
    if not names or len({tuple(sev[c]) for c in names}) != 1:
        return None
    severities = sev[names[0]]
    data = []
    for model, m in summary.get("models", {}).items():
        clean = _finite(m.get("clean_mIoU"))
        y = [None if clean is None else 100 * clean] + _curve(m["per_corruption"], names, severities)
        if any(v is not None for v in y):
            data.append({"type": "scatter", "mode": "lines+markers", "name": model, "x": [0, *severities], "y": y})
    if not data:
        return None
    what = corruption or "mean over corruptions"
    return {"data": data, "layout": _layout(f"mIoU vs severity ({what})", "severity (0 = clean)", "mIoU (%)",
                                            xaxis={"title": {"text": "severity (0 = clean)"}, "dtick": 1})}


def reliability_diagram(calibration: dict, name: str = "") -> dict | None:
    """Accuracy (%) per confidence bin as bars, the mean confidence per bin and the diagonal of a
    perfectly calibrated model; pixel counts in the hover text. ``calibration``: the ``compute()``
    result of a :class:`harness.calibration.CalibrationMetrics`."""
    rel = calibration.get("reliability") or {}
    edges, counts = rel.get("edges") or [], rel.get("count") or []
    if len(edges) < 2 or not any(counts):
        return None
    centres = [100 * (a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    acc = [None if _finite(v) is None else 100 * v for v in rel["accuracy"]]
    conf = [None if _finite(v) is None else 100 * v for v in rel["confidence"]]
    total = sum(counts)
    data = [
        {"type": "bar", "name": "accuracy", "x": centres, "y": acc, "width": 100 * (edges[1] - edges[0]),
         "customdata": [[c, 100 * c / total] for c in counts],
         "hovertemplate": "confidence %{x:.1f}%: accuracy %{y:.1f}%<br>%{customdata[0]} pixels "
                          "(%{customdata[1]:.1f}%)<extra></extra>"},
        {"type": "scatter", "mode": "markers", "name": "mean confidence", "x": centres, "y": conf},
        {"type": "scatter", "mode": "lines", "name": "perfect calibration", "x": [0, 100], "y": [0, 100],
         "line": {"dash": "dot", "color": "#888"}},
    ]
    ece = _finite(calibration.get("ECE"))
    title = "Reliability diagram" + (f" · {name}" if name else "") + (f" (ECE {100 * ece:.2f}%)" if ece is not None else "")
    return {"data": data, "layout": _layout(title, "confidence (%)", "accuracy (%)",
                                            xaxis={"title": {"text": "confidence (%)"}, "range": [0, 100]},
                                            yaxis={"title": {"text": "accuracy (%)"}, "range": [0, 100]})}
