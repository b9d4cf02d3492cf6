"""Chart specifications (plotly.js JSON, built as plain data: no plotly Python needed to build them)."""

from __future__ import annotations

from collections import defaultdict


def _layout(title: str, xtitle: str, ytitle: str, **extra) -> dict:
    d = {"title": {"text": title}, "xaxis": {"title": {"text": xtitle}}, "yaxis": {"title": {"text": ytitle}},
         "margin": {"t": 50, "l": 70, "r": 20, "b": 90}, "height": 420, "legend": {"orientation": "h"}}
    d.update(extra)
    return d


def latency_by_model(rows: list[dict]) -> dict | None:
    groups = defaultdict(dict)
    for r in rows:
        if r["status"] == "ok" and r["latency_p50"] is not None:
            groups[f"{r['precision']} · {r['device']} · b{r['batch_size']}"][r["model"]] = r["latency_p50"]
    if not groups:
        return None
    data = [{"type": "bar", "name": k, "x": list(v), "y": list(v.values())} for k, v in groups.items()]
    return {"data": data, "layout": _layout("Latency p50 by model", "model", "latency p50 (ms)", barmode="group")}


def memory_by_model(rows: list[dict]) -> dict | None:
    key, label = ("gpu_peak", "GPU peak allocated (MiB)")
    if not any(r["gpu_peak"] is not None for r in rows):
        key, label = ("host_rss", "host peak RSS (MiB)")
    groups = defaultdict(dict)
    for r in rows:
        if r["status"] == "ok" and r[key] is not None:
            groups[f"{r['precision']} · {r['device']}"][r["model"]] = r[key]
    if not groups:
        return None
    data = [{"type": "bar", "name": k, "x": list(v), "y": list(v.values())} for k, v in groups.items()]
    return {"data": data, "layout": _layout("Memory by model and precision", "model", label, barmode="group")}


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with lower-or-equal latency and higher-or-equal accuracy (x = latency)."""
    front, best = [], -float("inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def accuracy_vs_latency(rows: list[dict]) -> dict | None:
    pts = [r for r in rows if r["status"] == "ok" and r["mIoU"] is not None and r["latency_p50"] is not None]
    if not pts:
        return None
    data = [{"type": "scatter", "mode": "markers+text", "name": "cells", "x": [r["latency_p50"] for r in pts],
             "y": [100 * r["mIoU"] for r in pts], "text": [f"{r['model']} {r['precision']}" for r in pts],
             "textposition": "top center"}]
    front = pareto_front([(r["latency_p50"], 100 * r["mIoU"]) for r in pts])
    data.append({"type": "scatter", "mode": "lines", "name": "Pareto front", "x": [p[0] for p in front],
                 "y": [p[1] for p in front], "line": {"dash": "dot"}})
    return {"data": data, "layout": _layout("Accuracy vs latency", "latency p50 (ms)", "mIoU (%)")}


def throughput_vs_batch(rows: list[dict]) -> dict | None:
    series = defaultdict(list)
    for r in rows:
        if r["status"] == "ok" and r["throughput"] is not None:
            series[f"{r['model']} · {r['precision']} · {r['device']}"].append((r["batch_size"], r["throughput"]))
    if not any(len({b for b, _ in v}) > 1 for v in series.values()):
        return None
    data = [{"type": "scatter", "mode": "lines+markers", "name": k, "x": [b for b, _ in sorted(v)],
             "y": [t for _, t in sorted(v)]} for k, v in series.items()]
    return {"data": data, "layout": _layout("Throughput vs batch size", "batch size", "images/s",
                                            xaxis={"title": {"text": "batch size"}, "type": "log"})}


def speedup_over_fp32(rows: list[dict]) -> dict | None:
    base = {(r["model"], r["device"], r["batch_size"]): r["latency_p50"] for r in rows
            if r["status"] == "ok" and r["precision"] == "fp32" and r["latency_p50"]}
    groups = defaultdict(dict)
    for r in rows:
        key = (r["model"], r["device"], r["batch_size"])
        if r["status"] == "ok" and r["precision"] != "fp32" and r["latency_p50"] and key in base:
            groups[r["precision"]][f"{r['model']} · {r['device']} · b{r['batch_size']}"] = base[key] / r["latency_p50"]
    if not groups:
        return None
    data = [{"type": "bar", "name": k, "x": list(v), "y": list(v.values())} for k, v in groups.items()]
    return {"data": data, "layout": _layout("Speed-up over fp32 (latency p50 ratio)", "model", "x fp32 speed",
                                            barmode="group")}


def iou_heatmaps(runs_cells: list[tuple[dict, dict]]) -> list[dict]:
    """One models x classes heatmap of per-class IoU (%) per dataset, from cells that carry IoU."""
    by_dataset: dict[str, list] = defaultdict(list)
    for row, cell in runs_cells:
        if row["status"] == "ok" and (cell.get("metrics") or {}).get("IoU"):
            by_dataset[str(row["dataset"])].append((row, cell))
    specs = []
    for dataset, cells in by_dataset.items():
        n = len(cells[0][1]["metrics"]["IoU"])
        names = cells[0][1].get("class_names") or [str(i) for i in range(n)]
        cells = [(r, c) for r, c in cells if len(c["metrics"]["IoU"]) == len(names)]
        z = [[None if v is None else 100 * v for v in c["metrics"]["IoU"]] for _, c in cells]
        y = [f"{r['model']} · {r['precision']}" for r, _ in cells]
        specs.append({"data": [{"type": "heatmap", "z": z, "x": names, "y": y, "colorscale": "Viridis",
                                "colorbar": {"title": {"text": "IoU (%)"}}, "hoverongaps": False}],
                      "layout": _layout(f"Per-class IoU on {dataset}", "class", "", height=max(300, 160 + 28 * len(y)),
                                        margin={"t": 50, "l": 260, "r": 20, "b": 140})})
    return specs
