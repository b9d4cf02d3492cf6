"""Regression check between a baseline run and a current run.

Cells are paired by identity: model, weights source, dataset, device, precision, amp, batch
size, runtime, variant and protocol (mode + upsampling). For each pair the status is checked (the
baseline finished ``ok`` and the current did not -> regression), then every declared quantity
with a :class:`harness.quantities.Check`, in declaration order:

- ``drop`` (accuracy, e.g. mIoU, aAcc): an absolute fall beyond the threshold (fractions: 0.005 =
  0.5 points); a value the baseline has and the current lacks is a regression;
- ``growth_beyond_noise`` (latency p50): a relative rise beyond the threshold AND beyond noise: a
  one-sided Mann-Whitney U test on the raw samples gives p < alpha. Without enough samples the
  slowdown is reported as inconclusive, not failed;
- ``growth`` (memory): a relative rise beyond the threshold; of a group (GPU peak allocated, host
  peak RSS) the first quantity present on both sides is checked.

Measurement quality: when either side of a pair carries a quality flag (``environment.quality``:
busy host, CPU steal, unstable samples, throttling, oversubscribed threads; see
:mod:`harness.measure.quality`), its timings are not judged: the pair is listed as unjudged with the
flags as the reason, and the verdict is "could not compare" unless something else regressed. The
``allow_flagged`` threshold (1) opts in to judging them anyway. Two runs measured on different
hardware (CPU model or count, GPU model or count in their environment fingerprints) have no
timings judged at all, for the same reason, under the same opt-in.

Exit codes: 0 no regression, 1 regression, 2 could not compare (unreadable run, nothing paired, or
timings not judged because a side was flagged).
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness.cell_result import CellResult
from harness.errors import ConfigError
from harness.measure.quality import refusal
from harness.quantities import ALPHA, ALPHA_HELP, Quantity, all_quantities, checks
from harness.report.escape import markdown_escape
from harness.report.rows import identity_key, num
from harness.results import Run

DEFAULT_THRESHOLDS = {**{k: c.default for k, c in checks().items()}, "alpha": ALPHA, "allow_flagged": 0}
THRESHOLD_HELP = {**{k: c.help for k, c in checks().items()}, "alpha": ALPHA_HELP,
                  "allow_flagged": "1 = compare timings even when a side's measurement was flagged (busy host, "
                                   "unstable, throttled, oversubscribed) or the runs ran on different hardware; "
                                   "default 0: such timings are not compared"}
EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_COMPARE = 0, 1, 2


def identity(cell: CellResult, with_weights: bool = True) -> str:
    """The pairing key of a cell as a stable JSON string (weights = the provenance ``source``)."""
    return identity_key(cell, with_weights)


def _scipy_stats():
    """``scipy.stats``, imported when a comparison needs it (the measuring path never does)."""
    try:
        from scipy import stats
    except ImportError as e:
        raise ConfigError("compare's latency noise test needs scipy (pip install 'segbench[report]')") from e
    return stats


def mann_whitney_greater(a, b) -> float:
    """One-sided p-value that samples ``b`` tend to be larger than samples ``a``.

    ``scipy.stats.mannwhitneyu(b, a, alternative="greater", method="asymptotic")``: the normal
    approximation with tie correction of the variance and a continuity correction. NaN when either
    side has fewer than 2 samples; 1.0 when every value is tied (no variance, no evidence).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return math.nan
    if np.unique(np.concatenate([a, b])).size == 1:
        return 1.0
    stats = _scipy_stats()
    return float(stats.mannwhitneyu(b, a, alternative="greater", method="asymptotic", use_continuity=True).pvalue)


def bootstrap_median_ratio(a, b, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% bootstrap interval of median(b) / median(a), each side resampled independently
    (``scipy.stats.bootstrap`` with ``paired=False``, ``method="percentile"``). NaN for fewer than 2
    samples on a side."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return math.nan, math.nan
    stats = _scipy_stats()

    def ratio(x, y, axis=-1):
        mx = np.median(x, axis=axis)
        return np.median(y, axis=axis) / np.where(mx > 0, mx, np.nan)

    seeded = {"rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state":
              np.random.default_rng(seed)}  # scipy >= 1.15 names it rng
    with warnings.catch_warnings():  # identical resamples (all values equal) warn; the interval is still right
        warnings.simplefilter("ignore")
        res = stats.bootstrap((a, b), ratio, n_resamples=n_boot, paired=False, vectorized=True,
                              confidence_level=0.95, method="percentile", **seeded)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


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
    unjudged: list[str] = field(default_factory=list)  # pairs whose timings were not compared: flagged measurement

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regression]

    @property
    def exit_code(self) -> int:
        """2 when nothing could be compared, 1 on a regression, 2 when a pair's timings could not be
        judged (a side's measurement was flagged), else 0."""
        if self.problems or self.compared == 0:
            return EXIT_CANNOT_COMPARE
        if self.regressions:
            return EXIT_REGRESSION
        return EXIT_CANNOT_COMPARE if self.unjudged else EXIT_OK

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
                "problems": self.problems, "unjudged": self.unjudged, "notes": self.notes}


def check_thresholds(thresholds: dict, source: str = "thresholds") -> dict:
    """Defaults updated with ``thresholds``; ``ConfigError`` naming the source for unknown keys or bad values."""
    out = dict(DEFAULT_THRESHOLDS)
    for key, value in thresholds.items():
        k = str(key).replace("-", "_")
        if k not in DEFAULT_THRESHOLDS:
            raise ConfigError(f"{source}: unknown threshold {key!r}; expected keys: {', '.join(DEFAULT_THRESHOLDS)}")
        if value is None and k != "alpha":  # switches a check off
            out[k] = None
            continue
        v = num(value)
        if v is None or v < 0 or (k == "alpha" and not 0 < v < 1) or (k == "allow_flagged" and v not in (0, 1)):
            want = "a number in (0, 1)" if k == "alpha" else "0 or 1" if k == "allow_flagged" else "a number >= 0"
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


def cell_label(cell: CellResult) -> str:
    """A short human name of a cell: model · dataset · device · precision[ amp] · bN [· runtime] [· variant]."""
    ident = cell.identity
    parts = [str(ident.model), str(ident.dataset), str(ident.device),
             str(ident.precision) + (" cast" if ident.amp == "cast" else ""), f"b{ident.batch_size}"]
    if ident.runtime not in (None, "pytorch"):
        parts.append(str(ident.runtime))
    if ident.variant:
        parts.append(json.dumps(ident.variant, sort_keys=True))
    return " · ".join(parts)


def _pair(baseline: Run, current: Run, cmp: Comparison) -> list[tuple[CellResult, CellResult]]:
    """Pairs by full identity; then cells whose weights source is unknown (a failed load) pair on the rest."""
    def index(run: Run) -> dict[str, CellResult]:
        out: dict[str, CellResult] = {}
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


def _samples(q: Quantity, cell: CellResult) -> list[float]:
    raw = cell.get(q.samples) if q.samples else None
    return [v for v in (raw or []) if num(v) is not None] if isinstance(raw, list) else []


def _check(q: Quantity, label: str, b: CellResult, c: CellResult, t: dict) -> Finding | None:
    """The finding of quantity ``q`` for a pair of ok cells, or None when it is not comparable."""
    thr = t.get(q.check.option)
    bv, cv = num(q.raw(b)), num(q.raw(c))
    if thr is None or bv is None:
        return None
    if q.check.kind == "drop":
        if cv is None:
            return Finding(label, q.column, bv, None, None, thr, True, "the baseline has this metric, the current run does not")
        return Finding(label, q.column, bv, cv, cv - bv, thr, bv - cv > thr + 1e-12)
    if not bv or cv is None:
        return None
    growth = cv / bv - 1.0
    if q.check.kind == "growth":
        return Finding(label, q.column, bv, cv, growth, thr, growth > thr)
    bs, cs = _samples(q, b), _samples(q, c)
    p = mann_whitney_greater(bs, cs)
    if math.isnan(p):
        note = f"inconclusive: {len(bs)} and {len(cs)} raw samples, a noise test needs at least 2 on each side"
        return Finding(label, q.column, bv, cv, growth, thr, False, note, None)
    lo, hi = bootstrap_median_ratio(bs, cs)
    beyond = p < t["alpha"]
    note = f"Mann-Whitney p={p:.2g} ({'beyond' if beyond else 'within'} noise); median ratio 95% CI [{lo:.3f}, {hi:.3f}]"
    return Finding(label, q.column, bv, cv, growth, thr, growth > thr and beyond, note, p)


def _status(label: str, b: CellResult, c: CellResult, cmp: Comparison) -> bool:
    """Record a pair where a side did not finish; True when the pair is done (not compared further)."""
    bst, cst = b.status, c.status
    if bst == "ok" and cst == "ok":
        return False
    if bst == "ok":
        err = str(c.error or "")[:300]
        cmp.findings.append(Finding(label, "status", None, None, None, None, True,
                                    f"baseline ok, current {cst}" + (f": {err}" if err else "")))
        cmp.compared += 1
    elif cst == "ok":
        cmp.notes.append(f"{label}: baseline {bst}, current ok (not compared)")
    else:
        cmp.notes.append(f"{label}: baseline {bst}, current {cst} (not compared)")
    return True


HARDWARE_KEYS = ("cpu", "cpu_count", "gpu", "gpu_count")  # of the runs' environment fingerprints


def machine_difference(baseline: Run, current: Run) -> str | None:
    """Why two runs' timings are not comparable at all: they ran on different hardware (or None)."""
    a = baseline.meta.get("env") if isinstance(baseline.meta.get("env"), dict) else {}
    b = current.meta.get("env") if isinstance(current.meta.get("env"), dict) else {}
    diff = [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in HARDWARE_KEYS if a.get(k) != b.get(k)]
    return ("timings not compared, the runs were measured on different machines (" + "; ".join(diff) + ")"
            if diff else None)


def compare_runs(baseline: Run, current: Run, thresholds: dict | None = None) -> Comparison:
    """Pair the cells of two runs and check each pair against ``thresholds`` (defaults: ``DEFAULT_THRESHOLDS``)."""
    t = check_thresholds(thresholds or {})
    cmp = Comparison(thresholds=t)
    pairs = _pair(baseline, current, cmp)
    cmp.matched = len(pairs)
    other_machine = None if t["allow_flagged"] else machine_difference(baseline, current)
    if other_machine and pairs:
        cmp.unjudged.append(f"every pair: {other_machine}")
    checked = [q for q in all_quantities() if q.check is not None]
    for b, c in pairs:
        label = cell_label(c)
        if _status(label, b, c, cmp):
            continue
        cmp.compared += 1
        done_groups: set[str] = set()
        refused = other_machine or refusal(b, c, allow_flagged=bool(t["allow_flagged"]))
        if refused and not other_machine:
            cmp.unjudged.append(f"{label}: {refused}")
        for q in checked:
            if q.check.group in done_groups or (refused and q.check.kind == "growth_beyond_noise"):
                continue
            finding = _check(q, label, b, c, t)
            if finding:
                cmp.findings.append(finding)
                if q.check.group:
                    done_groups.add(q.check.group)
    if cmp.compared == 0:
        cmp.problems.append("no cell of the current run pairs with a cell of the baseline that both finished"
                            if cmp.matched else "no cell of the current run has the settings of a baseline cell")
    return cmp


def _fraction_columns() -> set[str]:
    return {q.column for q in all_quantities() if q.display == "pct"}


def _fmt(metric: str, v: float | None, how: str) -> str:
    """A finding's ``value``, ``change`` or ``threshold`` as text: fractions in % and points, others as
    numbers and relative changes."""
    if v is None:
        return "–"
    pct = metric in _fraction_columns()
    if how == "value":
        return f"{100 * v:.2f}%" if pct else f"{v:.4g}"
    if how == "change":
        return f"{100 * v:+.2f} pts" if pct else f"{100 * v:+.1f}%"
    return f"−{100 * v:.2f} pts" if pct else f"+{100 * v:.0f}%"


def threshold_text(thresholds: dict) -> str:
    """The active thresholds in words: "mIoU drop > 0.50 pts, ..., memory growth > 10%"."""
    named: dict[str, str] = {}
    for q in all_quantities():
        if q.check is not None:
            named.setdefault(q.check.option, q.check.group or q.key)
    parts = []
    for option, check in checks().items():
        v = thresholds.get(option)
        if v is None:
            continue
        if check.kind == "drop":
            parts.append(f"{named[option]} drop > {100 * v:.2f} pts")
        elif check.kind == "growth":
            parts.append(f"{named[option]} growth > {100 * v:.0f}%")
        else:
            parts.append(f"{named[option]} growth > {100 * v:.0f}% with Mann-Whitney p < {thresholds['alpha']:g}")
    return ", ".join(parts) or "none"


def markdown_summary(cmp: Comparison, baseline_name: str | None, current_name: str | None) -> str:
    """A Markdown summary for a CI job page: verdict, regressions, every check, unmatched cells."""
    icon = {EXIT_OK: "✅", EXIT_REGRESSION: "❌", EXIT_CANNOT_COMPARE: "⚠️"}[cmp.exit_code]
    lines = [f"## segbench compare: {icon} {cmp.verdict}", "",
             f"Baseline `{markdown_escape(baseline_name)}` vs current `{markdown_escape(current_name)}`: "
             f"{cmp.matched} paired cell(s), {cmp.compared} compared, {len(cmp.regressions)} regression(s). "
             f"Thresholds: {threshold_text(cmp.thresholds)}.", ""]

    def table(findings: list[Finding]) -> list[str]:
        out = ["| cell | metric | baseline | current | change | fails beyond | verdict |",
               "|:---|:---|---:|---:|---:|---:|:---|"]
        for f in findings:
            verdict = "**regression**" if f.regression else "ok"
            if f.note:
                verdict += f" ({markdown_escape(f.note)})"
            out.append(f"| {markdown_escape(f.cell)} | {f.metric} | {_fmt(f.metric, f.baseline, 'value')} | "
                       f"{_fmt(f.metric, f.current, 'value')} | {_fmt(f.metric, f.change, 'change')} | "
                       f"{_fmt(f.metric, f.threshold, 'threshold')} | {verdict} |")
        return out

    if cmp.regressions:
        lines += ["### Regressions", ""] + table(cmp.regressions) + [""]
    if cmp.findings:
        lines += ["<details><summary>All checks</summary>", ""] + table(cmp.findings) + ["", "</details>", ""]
    for title, items in (("Problems", cmp.problems), ("Timings not judged (flagged measurement)", cmp.unjudged),
                         ("Only in the baseline", cmp.only_baseline),
                         ("Only in the current run", cmp.only_current), ("Notes", cmp.notes)):
        if items:
            lines += [f"**{title}** ({len(items)}):", ""] + [f"- {markdown_escape(x)}" for x in items[:100]] + [""]
    return "\n".join(lines).rstrip() + "\n"
