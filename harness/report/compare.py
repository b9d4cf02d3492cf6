"""Regression check between a baseline run and a current run.

Cells are paired by identity (model, weights source, dataset, device, precision, amp,
batch size, runtime, variant, protocol). A pair regresses when:
- accuracy: mIoU or aAcc drops by more than an absolute threshold (fractions: 0.005 = 0.5 points);
- speed: the median latency grows by more than a relative threshold AND the growth is beyond
  noise: a one-sided Mann-Whitney U test on the raw latency samples gives p < alpha;
- memory: GPU peak allocated (or host peak RSS off CUDA) grows by more than a relative threshold.
Exit codes: 0 no regression, 1 regression, 2 could not compare.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from harness.results import Run

DEFAULT_THRESHOLDS = {"max_miou_drop": 0.005, "max_aacc_drop": 0.005, "max_slowdown": 0.10,
                      "max_memory_growth": 0.10, "alpha": 0.01}


def identity(cell: dict) -> str:
    ident = {k: cell.get(k) for k in ("model", "dataset", "device", "precision", "amp", "batch_size", "runtime",
                                      "variant")}
    ident["weights"] = (cell.get("weights") or {}).get("source")
    proto = cell.get("protocol") or {}
    ident["protocol"] = [proto.get("mode"), proto.get("upsample")]
    return json.dumps(ident, sort_keys=True)


def mann_whitney_greater(a, b) -> float:
    """One-sided p-value that samples ``b`` tend to be larger than ``a`` (normal approximation with
    tie correction and continuity correction). NaN when either side has fewer than 2 samples."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n1, n2 = a.size, b.size
    if n1 < 2 or n2 < 2:
        return math.nan
    allv = np.concatenate([a, b])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    i = 0
    while i < allv.size:  # average ranks over ties
        j = i
        while j + 1 < allv.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u2 = ranks[n1:].sum() - n2 * (n2 + 1) / 2.0
    mu = n1 * n2 / 2.0
    _, counts = np.unique(allv, return_counts=True)
    n = n1 + n2
    sigma2 = n1 * n2 / 12.0 * ((n + 1) - np.sum(counts**3 - counts) / (n * (n - 1)))
    if sigma2 <= 0:
        return 1.0
    z = (u2 - mu - 0.5) / math.sqrt(sigma2)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass
class Finding:
    cell: str
    metric: str
    baseline: float | None
    current: float | None
    change: float | None
    threshold: float
    regression: bool
    note: str = ""


@dataclass
class Comparison:
    pairs: int = 0
    findings: list[Finding] = field(default_factory=list)
    only_baseline: list[str] = field(default_factory=list)
    only_current: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regression]

    @property
    def exit_code(self) -> int:
        if self.problems or self.pairs == 0:
            return 2
        return 1 if self.regressions else 0

    def to_json(self) -> dict:
        return {"exit_code": self.exit_code, "pairs": self.pairs, "regressions": len(self.regressions),
                "findings": [asdict(f) for f in self.findings], "only_baseline": self.only_baseline,
                "only_current": self.only_current, "problems": self.problems}


def _label(cell: dict) -> str:
    return f"{cell.get('model')} · {cell.get('dataset')} · {cell.get('device')} · {cell.get('precision')} · b{cell.get('batch_size')}"


def compare_runs(baseline: Run, current: Run, thresholds: dict | None = None) -> Comparison:
    t = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    base = {identity(c): c for c in baseline.cells.values()}
    cur = {identity(c): c for c in current.cells.values()}
    cmp = Comparison()
    cmp.only_baseline = [_label(base[k]) for k in base.keys() - cur.keys()]
    cmp.only_current = [_label(cur[k]) for k in cur.keys() - base.keys()]
    for key in sorted(base.keys() & cur.keys()):
        b, c = base[key], cur[key]
        label = _label(c)
        if b.get("status") != "ok" or c.get("status") != "ok":
            if b.get("status") == "ok" and c.get("status") != "ok":
                cmp.findings.append(Finding(label, "status", None, None, None, 0, True,
                                            f"baseline ok, current {c.get('status')}: {str(c.get('error'))[:200]}"))
            continue
        cmp.pairs += 1
        bm, cm = b.get("metrics") or {}, c.get("metrics") or {}
        for metric, thr in (("mIoU", t["max_miou_drop"]), ("aAcc", t["max_aacc_drop"])):
            if bm.get(metric) is not None and cm.get(metric) is not None:
                drop = bm[metric] - cm[metric]
                cmp.findings.append(Finding(label, metric, bm[metric], cm[metric], -drop, thr, drop > thr))
        bl, cl = b.get("latency_ms") or {}, c.get("latency_ms") or {}
        if bl.get("p50") and cl.get("p50"):
            slow = cl["p50"] / bl["p50"] - 1.0
            p = mann_whitney_greater(bl.get("samples") or [], cl.get("samples") or [])
            noisy = math.isnan(p) or p >= t["alpha"]
            note = f"Mann-Whitney p={p:.3g}" if not math.isnan(p) else "too few samples for a test"
            cmp.findings.append(Finding(label, "latency_p50_ms", bl["p50"], cl["p50"], slow, t["max_slowdown"],
                                        slow > t["max_slowdown"] and not noisy, note))
        bmem, cmem = b.get("memory_mib") or {}, c.get("memory_mib") or {}
        mkey = "gpu_peak_allocated" if bmem.get("gpu_peak_allocated") else "host_peak_rss"
        if bmem.get(mkey) and cmem.get(mkey):
            growth = cmem[mkey] / bmem[mkey] - 1.0
            cmp.findings.append(Finding(label, f"{mkey}_mib", bmem[mkey], cmem[mkey], growth, t["max_memory_growth"],
                                        growth > t["max_memory_growth"]))
    if cmp.pairs == 0:
        cmp.problems.append("no cell of the current run matches a finished cell of the baseline")
    return cmp


def markdown_summary(cmp: Comparison, baseline_name: str, current_name: str) -> str:
    verdict = {0: "✅ no regression", 1: "❌ regression", 2: "⚠️ could not compare"}[cmp.exit_code]
    lines = [f"## segbench compare: {verdict}", "",
             f"baseline `{baseline_name}` vs current `{current_name}`: {cmp.pairs} paired cell(s), "
             f"{len(cmp.regressions)} regression(s).", ""]
    if cmp.findings:
        lines += ["| cell | metric | baseline | current | change | threshold | verdict |", "|---|---|---:|---:|---:|---:|---|"]
        for f in cmp.findings:
            def num(v):
                return "–" if v is None else f"{v:.4g}"

            change = "–" if f.change is None else (f"{100 * f.change:+.1f}%" if "mib" in f.metric or "ms" in f.metric
                                                    else f"{100 * f.change:+.2f} pts")
            verdict_cell = "**regression**" if f.regression else "ok"
            lines.append(f"| {f.cell} | {f.metric} | {num(f.baseline)} | {num(f.current)} | {change} | "
                         f"{f.threshold:g} | {verdict_cell} {f.note} |")
    for title, items in (("only in baseline", cmp.only_baseline), ("only in current", cmp.only_current),
                         ("problems", cmp.problems)):
        if items:
            lines += ["", f"**{title}**: " + "; ".join(items)]
    return "\n".join(lines) + "\n"
