"""Chart specifications for plotly.js, built as plain data (no plotly Python needed to build them).

Each function takes display rows (``harness.report.rows``) and returns ``{"data", "layout"}`` or
None when the chart has nothing to show. Units: latency ms, accuracy %, memory MiB, images/s.
"""

from __future__ import annotations

from collections import defaultdict

from harness.report.rows import family_label


def _layout(title: str, xtitle: str, ytitle: str, **extra) -> dict:
    d = {"title": {"text": title}, "xaxis": {"title": {"text": xtitle}, "automargin": True},
         "yaxis": {"title": {"text": ytitle}, "automargin": True},
         "margin": {"t": 50, "l": 70, "r": 20, "b": 90}, "height": 420, "legend": {"orientation": "h", "y": -0.3}}
    d.update(extra)
    return d


def _ok(rows: list[dict], *keys: str) -> list[dict]:
    return [r for r in rows if r["status"] == "ok" and all(r.get(k) is not None for k in keys)]


def _model_name(r: dict, rows: list[dict]) -> str:
    """The model, with the dataset when several datasets are shown."""
    if len({x["dataset"] for x in rows}) > 1:
        return f"{r['model']} · {r['dataset']}"
    return str(r["model"])


def _bars(rows: list[dict], key: str, series_of) -> list[dict]:
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for r in _ok(rows, key):
        groups[series_of(r)][_model_name(r, rows)] = r[key]
    return [{"type": "bar", "name": k, "x": list(v), "y": list(v.values())} for k, v in groups.items()]


def latency_by_model(rows: list[dict]) -> dict | None:
    """Grouped bars: latency p50 (ms) per model, one series per precision · device · batch."""
    data = _bars(rows, "latency_p50", lambda r: f"{r['precision']} · {r['device']} · b{int(r['batch_size'] or 0)}")
    if not data:
        return None
    return {"data": data, "layout": _layout("Latency p50 by model and precision", "model", "latency p50 (ms)",
                                            barmode="group")}


def memory_by_model(rows: list[dict]) -> dict | None:
    """Grouped bars: GPU peak allocated (MiB) per model and precision, or host peak RSS off CUDA."""
    key, label = "gpu_peak", "GPU peak allocated (MiB)"
    if not _ok(rows, key):
        key, label = "host_rss", "host peak RSS (MiB)"
    data = _bars(rows, key, lambda r: f"{r['precision']} · {r['device']} · b{int(r['batch_size'] or 0)}")
    if not data:
        return None
    return {"data": data, "layout": _layout("Memory by model and precision", "model", label, barmode="group")}


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (latency, accuracy) not dominated by another with lower-or-equal latency and
    higher-or-equal accuracy, ordered by latency."""
    front: list[tuple[float, float]] = []
    best = -float("inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def accuracy_vs_latency(rows: list[dict]) -> list[dict]:
    """Per task, a scatter of its headline accuracy (%) against latency p50 (ms) with the Pareto
    front; only cells with accuracy. Titled "Accuracy vs latency" (plus the task when several)."""
    from harness.quantities import by_key
    from harness.tasks import TASKS

    tasks = [t for t in TASKS.values() if any(r.get("task") == t.name for r in rows)]
    specs = []
    for task in tasks:
        q = by_key()[task.headline]
        pts = _ok([r for r in rows if r.get("task") == task.name], q.key, "latency_p50")
        if not pts:
            continue
        scale = 100.0 if q.display == "pct" else 1.0
        by_family: dict[str, list[dict]] = defaultdict(list)
        for r in pts:
            by_family[family_label(r["family"])].append(r)
        labelled = len(pts) <= 8  # beyond that, names only on hover: printed labels would overlap
        data = [{"type": "scatter", "mode": "markers+text" if labelled else "markers", "name": fam,
                 "x": [r["latency_p50"] for r in rs], "y": [scale * r[q.key] for r in rs],
                 "text": [f"{r['model']} {r['precision']} b{int(r['batch_size'] or 0)}" for r in rs],
                 "textposition": "top center", "marker": {"size": 10}} for fam, rs in by_family.items()]
        lower_better = q.better == "min"
        front = pareto_front([(r["latency_p50"], (-1 if lower_better else 1) * scale * r[q.key]) for r in pts])
        data.append({"type": "scatter", "mode": "lines", "name": "Pareto front", "x": [p[0] for p in front],
                     "y": [(-1 if lower_better else 1) * p[1] for p in front],
                     "line": {"dash": "dot", "color": "#444"}})
        title = "Accuracy vs latency" + (f" ({task.name})" if len(tasks) > 1 else "")
        specs.append({"data": data, "layout": _layout(title, "latency p50 (ms)", q.header)})
    return specs


def throughput_vs_batch(rows: list[dict]) -> dict | None:
    """Lines of throughput (images/s) against batch size, per model · precision · device with >1 batch size."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in _ok(rows, "throughput", "batch_size"):
        series[f"{_model_name(r, rows)} · {r['precision']} · {r['device']}"].append((r["batch_size"], r["throughput"]))
    series = {k: sorted(v) for k, v in series.items() if len({b for b, _ in v}) > 1}
    if not series:
        return None
    data = [{"type": "scatter", "mode": "lines+markers", "name": k, "x": [b for b, _ in v], "y": [t for _, t in v]}
            for k, v in series.items()]
    return {"data": data, "layout": _layout("Throughput vs batch size", "batch size", "throughput (images/s)",
                                            xaxis={"title": {"text": "batch size"}, "type": "log"})}


def speedup_over_fp32(rows: list[dict]) -> dict | None:
    """Bars of fp32 latency p50 / reduced-precision latency p50 for the same model, dataset, device, batch, run."""
    def key(r: dict) -> tuple:
        return (r["model"], r["dataset"], r["device"], r["batch_size"], r["runtime"], r["run"])

    base = {key(r): r["latency_p50"] for r in _ok(rows, "latency_p50") if r["precision_raw"] == "fp32"}
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for r in _ok(rows, "latency_p50"):
        if r["precision_raw"] != "fp32" and key(r) in base and r["latency_p50"] > 0:
            name = f"{_model_name(r, rows)} · {r['device']} · b{int(r['batch_size'] or 0)}"
            groups[r["precision"]][name] = base[key(r)] / r["latency_p50"]
    if not groups:
        return None
    data = [{"type": "bar", "name": k, "x": list(v), "y": list(v.values())} for k, v in groups.items()]
    layout = _layout("Speed-up over fp32 (fp32 latency p50 / latency p50)", "model", "speed-up (×)",
                     barmode="group", shapes=[{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                                               "line": {"dash": "dot", "color": "#888"}}])
    return {"data": data, "layout": layout}


def iou_heatmaps(rows_cells: list[tuple[dict, object]]) -> list[dict]:
    """One models x classes heatmap of per-class IoU (%) per dataset, from ok cells that carry IoU."""
    by_dataset: dict[str, list[tuple[dict, list, list | None]]] = defaultdict(list)
    for row, cell in rows_cells:
        iou = (cell.accuracy.metrics or {}).get("IoU")
        if row["status"] == "ok" and isinstance(iou, list) and iou:
            by_dataset[str(row["dataset"])].append((row, iou, cell.provenance.class_names))
    several_runs = len({row["run"] for row, _ in rows_cells}) > 1
    specs = []
    for dataset, cells in by_dataset.items():
        n = len(cells[0][1])
        names = cells[0][2]
        names = [str(x) for x in names] if isinstance(names, list) and len(names) == n else [str(i) for i in range(n)]
        cells = [c for c in cells if len(c[1]) == n]
        z = [[None if not isinstance(v, (int, float)) else 100 * v for v in iou] for _, iou, _ in cells]
        y = [f"{r['model']} · {r['precision']}" + (f" · {r['run']}" if several_runs else "") for r, _, _ in cells]
        specs.append({"data": [{"type": "heatmap", "z": z, "x": names, "y": y, "colorscale": "Viridis",
                                "zmin": 0, "zmax": 100, "colorbar": {"title": {"text": "IoU (%)"}},
                                "hoverongaps": False}],
                      "layout": _layout(f"Per-class IoU on {dataset} (%)", "class", "",
                                        height=max(300, 180 + 28 * len(y)),
                                        margin={"t": 50, "l": 20, "r": 20, "b": 140})})
    return specs
