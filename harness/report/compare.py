"""Regression check between a baseline run and a current run.

Cells are paired by identity: model, weights source, dataset, device, precision, amp, batch
size, runtime, variant and protocol (mode + upsampling). For each pair:

- status: the baseline finished (``ok``) and the current did not -> regression;
- accuracy: mIoU or aAcc dropped by more than an absolute threshold (fractions: 0.005 = 0.5 points);
- speed: latency p50 grew by more than a relative threshold AND the growth is beyond noise:
  a one-sided Mann-Whitney U test on the raw latency samples (``latency_ms.samples``) gives
  p < alpha. Without enough samples the slowdown is reported as inconclusive, not failed;
- memory: GPU peak allocated (host peak RSS when no GPU figure exists on both sides) grew by
  more than a relative threshold.

Exit codes: 0 no regression, 1 regression, 2 could not compare (unreadable run, nothing paired).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import ConfigError
from harness.report.escape import markdown_escape
from harness.report.rows import num, protocol_label
from harness.results import Run

DEFAULT_THRESHOLDS = {"max_miou_drop": 0.005, "max_aacc_drop": 0.005, "max_slowdown": 0.10,
                      "max_memory_growth": 0.10, "alpha": 0.01}
THRESHOLD_HELP = {
    "max_miou_drop": "absolute mIoU drop that fails (fraction: 0.005 = 0.5 points)",
    "max_aacc_drop": "absolute aAcc drop that fails (fraction)",
    "max_slowdown": "relative latency p50 growth that fails when beyond noise (0.10 = 10%)",
    "max_memory_growth": "relative peak memory growth that fails (0.10 = 10%)",
    "alpha": "significance level of the one-sided Mann-Whitney test on latency samples",
}
IDENTITY_KEYS = ("model", "weights", "dataset", "device", "precision", "amp", "batch_size", "runtime", "variant",
                 "protocol")
EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_COMPARE = 0, 1, 2


def identity(cell: dict, with_weights: bool = True) -> str:
    """The pairing key of a cell as a stable JSON string (weights = the provenance ``source``)."""
    weights = cell.get("weights") if isinstance(cell.get("weights"), dict) else {}
    ident = {k: cell.get(k) for k in IDENTITY_KEYS if k not in ("weights", "protocol")}
    ident["protocol"] = protocol_label(cell)
    if with_weights:
        ident["weights"] = weights.get("source") or ("random" if weights.get("requested") == "random" else None)
    return json.dumps(ident, sort_keys=True, default=str)


def mann_whitney_greater(a, b) -> float:
    """One-sided p-value that samples ``b`` tend to be larger than samples ``a``.

    Mann-Whitney U with the normal approximation, tie correction of the variance and a
    continuity correction (as scipy's ``mannwhitneyu(b, a, alternative="greater",
    method="asymptotic")``). NaN when either side has fewer than 2 samples; 1.0 when every
    value is tied.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n1, n2 = a.size, b.size
    if n1 < 2 or n2 < 2:
        return math.nan
    allv = np.concatenate([a, b])
    sorted_v = np.sort(allv, kind="mergesort")
    # average rank of each value = mean of its first and last 1-based position among the sorted values
    lo = np.searchsorted(sorted_v, allv, side="left")
    hi = np.searchsorted(sorted_v, allv, side="right")
    ranks = (lo + hi + 1) / 2.0
    u2 = ranks[n1:].sum() - n2 * (n2 + 1) / 2.0
    mu = n1 * n2 / 2.0
    _, counts = np.unique(allv, return_counts=True)
    n = n1 + n2
    sigma2 = n1 * n2 / 12.0 * ((n + 1) - np.sum(counts.astype(np.float64) ** 3 - counts) / (n * (n - 1)))
    if sigma2 <= 0:
        return 1.0
    z = (u2 - mu - 0.5) / math.sqrt(sigma2)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def bootstrap_median_ratio(a, b, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% bootstrap interval of median(b) / median(a), resampling each side independently."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, a.size, (n_boot, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, (n_boot, b.size))], axis=1)
    ratio = mb / np.where(ma > 0, ma, np.nan)
    return float(np.nanpercentile(ratio, 2.5)), float(np.nanpercentile(ratio, 97.5))


@dataclass
class Finding:
    """One check of one paired cell. ``change``: absolute for accuracy (fraction), relative otherwise."""

    cell: str
    metric: str
    baseline: float | None
    current: float | None
    change: float | None
    threshold: float | None
    regression: bool
    note: str = ""
    p_value: float | None = None


@dataclass
class Comparison:
    """The outcome of ``compare_runs``: findings per paired cell, unmatched cells and problems."""

    thresholds: dict = field(default_factory=dict)
    matched: int = 0
    compared: int = 0
    findings: list[Finding] = field(default_factory=list)
    only_baseline: list[str] = field(default_factory=list)
    only_current: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regression]

    @property
    def exit_code(self) -> int:
        if self.problems or self.compared == 0:
            return EXIT_CANNOT_COMPARE
        return EXIT_REGRESSION if self.regressions else EXIT_OK

    @property
    def verdict(self) -> str:
        return {EXIT_OK: "no regression", EXIT_REGRESSION: "regression",
                EXIT_CANNOT_COMPARE: "could not compare"}[self.exit_code]

    def to_json(self) -> dict:
        """Plain data for ``--format json`` (NaN written as null)."""
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {"verdict": self.verdict, "exit_code": self.exit_code, "thresholds": self.thresholds,
                "matched": self.matched, "compared": self.compared, "regressions": len(self.regressions),
                "findings": [{k: clean(v) for k, v in asdict(f).items()} for f in self.findings],
                "only_baseline": self.only_baseline, "only_current": self.only_current,
                "problems": self.problems, "notes": self.notes}


def check_thresholds(thresholds: dict, source: str = "thresholds") -> dict:
    """Defaults updated with ``thresholds``; ``ConfigError`` naming the source for unknown keys or bad values."""
    out = dict(DEFAULT_THRESHOLDS)
    for key, value in thresholds.items():
        k = str(key).replace("-", "_")
        if k not in DEFAULT_THRESHOLDS:
            raise ConfigError(f"{source}: unknown threshold {key!r}; expected keys: {', '.join(DEFAULT_THRESHOLDS)}")
        v = num(value)
        if v is None or v < 0 or (k == "alpha" and not 0 < v < 1):
            want = "a number in (0, 1)" if k == "alpha" else "a number >= 0"
            raise ConfigError(f"{source}: threshold {key!r} = {value!r}; expected {want}")
        out[k] = v
    return out


def load_thresholds(path: str | Path) -> dict:
    """Thresholds from a YAML or JSON mapping file (keys as in ``DEFAULT_THRESHOLDS``, dashes allowed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the thresholds file ({e.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml and json raise different types; both mean the same to the user
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of thresholds ({', '.join(DEFAULT_THRESHOLDS)}), "
                          f"found {type(data).__name__}")
    return check_thresholds(data, str(path))


def cell_label(cell: dict) -> str:
    """A short human name of a cell: model · dataset · device · precision[ amp] · bN [· runtime] [· variant]."""
    parts = [str(cell.get("model")), str(cell.get("dataset")), str(cell.get("device")),
             str(cell.get("precision")) + (" cast" if cell.get("amp") == "cast" else ""), f"b{cell.get('batch_size')}"]
    if cell.get("runtime") not in (None, "pytorch"):
        parts.append(str(cell.get("runtime")))
    if cell.get("variant"):
        parts.append(json.dumps(cell.get("variant"), sort_keys=True))
    return " · ".join(parts)


def _pair(baseline: Run, current: Run, cmp: Comparison) -> list[tuple[dict, dict]]:
    """Pairs by full identity; then cells whose weights source is unknown (a failed load) pair on the rest."""
    def index(run: Run) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for c in run.cells.values():
            key = identity(c)
            if key in out:
                cmp.notes.append(f"{run.meta.get('run_id')}: several cells have the settings of {cell_label(c)}; "
                                 "the first is used")
                continue
            out[key] = c
        return out

    base, cur = index(baseline), index(current)
    pairs = [(base.pop(k), cur.pop(k)) for k in sorted(base.keys() & cur.keys())]
    for side, other in ((base, cur), (cur, base)):
        for key in list(side):
            cell = side[key]
            if json.loads(key)["weights"] is not None:
                continue
            loose = identity(cell, with_weights=False)
            match = [k for k in other if identity(other[k], with_weights=False) == loose
                     and json.loads(k)["weights"] != "random"]
            if len(match) == 1:
                b, c = (side.pop(key), other.pop(match[0])) if side is base else (other.pop(match[0]), side.pop(key))
                pairs.append((b, c))
    pairs.sort(key=lambda p: cell_label(p[1]))
    cmp.only_baseline = sorted(cell_label(c) for c in base.values())
    cmp.only_current = sorted(cell_label(c) for c in cur.values())
    return pairs


def _latency(label: str, b: dict, c: dict, t: dict) -> Finding | None:
    bl = b.get("latency_ms") if isinstance(b.get("latency_ms"), dict) else {}
    cl = c.get("latency_ms") if isinstance(c.get("latency_ms"), dict) else {}
    bp, cp = num(bl.get("p50")), num(cl.get("p50"))
    if not bp or cp is None:
        return None
    slow = cp / bp - 1.0
    bs = [v for v in (bl.get("samples") or []) if num(v) is not None]
    cs = [v for v in (cl.get("samples") or []) if num(v) is not None]
    p = mann_whitney_greater(bs, cs)
    if math.isnan(p):
        note = f"inconclusive: {len(bs)} and {len(cs)} raw samples, a noise test needs at least 2 on each side"
        return Finding(label, "latency_p50_ms", bp, cp, slow, t["max_slowdown"], False, note, None)
    lo, hi = bootstrap_median_ratio(bs, cs)
    beyond = p < t["alpha"]
    note = f"Mann-Whitney p={p:.2g} ({'beyond' if beyond else 'within'} noise); median ratio 95% CI [{lo:.3f}, {hi:.3f}]"
    return Finding(label, "latency_p50_ms", bp, cp, slow, t["max_slowdown"], slow > t["max_slowdown"] and beyond,
                   note, p)


def _memory(label: str, b: dict, c: dict, t: dict) -> Finding | None:
    bm = b.get("memory_mib") if isinstance(b.get("memory_mib"), dict) else {}
    cm = c.get("memory_mib") if isinstance(c.get("memory_mib"), dict) else {}
    for key in ("gpu_peak_allocated", "host_peak_rss"):
        bv, cv = num(bm.get(key)), num(cm.get(key))
        if bv and cv is not None:
            growth = cv / bv - 1.0
            return Finding(label, f"{key}_mib", bv, cv, growth, t["max_memory_growth"], growth > t["max_memory_growth"])
    return None


def compare_runs(baseline: Run, current: Run, thresholds: dict | None = None) -> Comparison:
    """Pair the cells of two runs and check each pair against ``thresholds`` (defaults: ``DEFAULT_THRESHOLDS``)."""
    t = check_thresholds(thresholds or {})
    cmp = Comparison(thresholds=t)
    pairs = _pair(baseline, current, cmp)
    cmp.matched = len(pairs)
    for b, c in pairs:
        label = cell_label(c)
        bst, cst = b.get("status"), c.get("status")
        if bst != "ok" or cst != "ok":
            if bst == "ok":
                err = str(c.get("error") or "")[:300]
                cmp.findings.append(Finding(label, "status", None, None, None, None, True,
                                            f"baseline ok, current {cst}" + (f": {err}" if err else "")))
                cmp.compared += 1
            elif cst == "ok":
                cmp.notes.append(f"{label}: baseline {bst}, current ok (not compared)")
            else:
                cmp.notes.append(f"{label}: baseline {bst}, current {cst} (not compared)")
            continue
        cmp.compared += 1
        bm = b.get("metrics") if isinstance(b.get("metrics"), dict) else {}
        cm = c.get("metrics") if isinstance(c.get("metrics"), dict) else {}
        for metric, thr in (("mIoU", t["max_miou_drop"]), ("aAcc", t["max_aacc_drop"])):
            bv, cv = num(bm.get(metric)), num(cm.get(metric))
            if bv is not None and cv is not None:
                cmp.findings.append(Finding(label, metric, bv, cv, cv - bv, thr, bv - cv > thr + 1e-12))
            elif bv is not None:
                cmp.findings.append(Finding(label, metric, bv, None, None, thr, True,
                                            "the baseline has this metric, the current run does not"))
        for check in (_latency, _memory):
            finding = check(label, b, c, t)
            if finding:
                cmp.findings.append(finding)
    if cmp.compared == 0:
        cmp.problems.append("no cell of the current run pairs with a cell of the baseline that both finished"
                            if cmp.matched else "no cell of the current run has the settings of a baseline cell")
    return cmp


def _fmt_value(metric: str, v: float | None) -> str:
    if v is None:
        return "–"
    if metric in ("mIoU", "aAcc"):
        return f"{100 * v:.2f}%"
    return f"{v:.4g}"


def _fmt_change(f: Finding) -> str:
    if f.change is None:
        return "–"
    if f.metric in ("mIoU", "aAcc"):
        return f"{100 * f.change:+.2f} pts"
    return f"{100 * f.change:+.1f}%"


def _fmt_threshold(f: Finding) -> str:
    if f.threshold is None:
        return "–"
    if f.metric in ("mIoU", "aAcc"):
        return f"−{100 * f.threshold:.2f} pts"
    return f"+{100 * f.threshold:.0f}%"


def markdown_summary(cmp: Comparison, baseline_name: str | None, current_name: str | None) -> str:
    """A Markdown summary for a CI job page: verdict, regressions, every check, unmatched cells."""
    icon = {EXIT_OK: "✅", EXIT_REGRESSION: "❌", EXIT_CANNOT_COMPARE: "⚠️"}[cmp.exit_code]
    lines = [f"## segbench compare: {icon} {cmp.verdict}", "",
             f"Baseline `{markdown_escape(baseline_name)}` vs current `{markdown_escape(current_name)}`: "
             f"{cmp.matched} paired cell(s), {cmp.compared} compared, {len(cmp.regressions)} regression(s). "
             f"Thresholds: mIoU/aAcc drop > {100 * cmp.thresholds['max_miou_drop']:.2f}/"
             f"{100 * cmp.thresholds['max_aacc_drop']:.2f} pts, slowdown > {100 * cmp.thresholds['max_slowdown']:.0f}% "
             f"with Mann-Whitney p < {cmp.thresholds['alpha']:g}, memory growth > "
             f"{100 * cmp.thresholds['max_memory_growth']:.0f}%.", ""]

    def table(findings: list[Finding]) -> list[str]:
        out = ["| cell | metric | baseline | current | change | fails beyond | verdict |",
               "|:---|:---|---:|---:|---:|---:|:---|"]
        for f in findings:
            verdict = "**regression**" if f.regression else "ok"
            if f.note:
                verdict += f" ({markdown_escape(f.note)})"
            out.append(f"| {markdown_escape(f.cell)} | {f.metric} | {_fmt_value(f.metric, f.baseline)} | "
                       f"{_fmt_value(f.metric, f.current)} | {_fmt_change(f)} | {_fmt_threshold(f)} | {verdict} |")
        return out

    if cmp.regressions:
        lines += ["### Regressions", ""] + table(cmp.regressions) + [""]
    if cmp.findings:
        lines += ["<details><summary>All checks</summary>", ""] + table(cmp.findings) + ["", "</details>", ""]
    for title, items in (("Problems", cmp.problems), ("Only in the baseline", cmp.only_baseline),
                         ("Only in the current run", cmp.only_current), ("Notes", cmp.notes)):
        if items:
            lines += [f"**{title}** ({len(items)}):", ""] + [f"- {markdown_escape(x)}" for x in items[:100]] + [""]
    return "\n".join(lines).rstrip() + "\n"
