"""``history check``: change points of every series, as steps with their commit range, size and significance.

A step is a **regression** when the quantity got worse across it (latency or memory up,
accuracy or throughput down) and an **improvement** otherwise. Exit codes, as ``compare``:
0 no regression step among the ``recent`` newest points of any series, 1 a regression step
there, 2 could not check (nothing recorded, nothing matched the filters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.history.changepoints import DEFAULT_MAX_PVALUE, DEFAULT_WINDOW, ChangePoint, change_points
from harness.history.quantities import QUANTITIES
from harness.history.store import Series
from harness.report.escape import markdown_escape

EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_CHECK = 0, 1, 2
MIN_POINTS = 4
DEFAULT_RECENT = 10
# Smallest relative step reported, per quantity: accuracy on a fixed dataset is deterministic,
# so 1% of mIoU (~0.5 points) is already a real change; timings and memory use Hunter's 5%.
MIN_MAGNITUDE = {"mIoU": 0.01, "aAcc": 0.01, "latency_p50": 0.05, "latency_mean": 0.05, "throughput": 0.05,
                 "gpu_peak": 0.05, "host_rss": 0.05}
FALLBACK_MIN_MAGNITUDE = 0.05


@dataclass
class Step:
    """One change point of one series, with what it means for that quantity."""

    series: Series
    change: ChangePoint
    kind: str  # "regression" or "improvement"
    recent: bool

    @property
    def commit_range(self) -> tuple[str | None, str | None]:
        """(last commit surely before the step, first commit surely after it): ``git log BEFORE..AFTER``."""
        lo = self.change.index_lo if self.change.index_lo is not None else self.change.index
        hi = self.change.index_hi if self.change.index_hi is not None else self.change.index
        return self.series.commits[lo - 1], self.series.commits[hi]

    def to_json(self) -> dict:
        c, s = self.change, self.series
        before, after = self.commit_range

        def fin(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {"kind": self.kind, "recent": self.recent, "quantity": s.quantity, "cell": s.cell_label,
                "machine": s.machine, "index": c.index, "index_range": [c.index_lo, c.index_hi],
                "commit_before": before, "commit_after": after, "commit_at": s.commits[c.index],
                "run_at": s.run_ids[c.index], "time_at": s.times[c.index], "mean_before": c.mean_before,
                "mean_after": c.mean_after, "std_before": c.std_before, "std_after": c.std_after,
                "change": fin(c.forward_change), "magnitude": fin(c.magnitude), "pvalue": c.pvalue}


@dataclass
class CheckResult:
    """Everything ``history check`` found."""

    settings: dict
    series: list[Series] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Step]:
        """Regression steps among the recent points (the ones that fail a CI job)."""
        return [s for s in self.steps if s.kind == "regression" and s.recent]

    @property
    def exit_code(self) -> int:
        if self.problems or not any(len(s) >= MIN_POINTS for s in self.series):
            return EXIT_CANNOT_CHECK
        return EXIT_REGRESSION if self.regressions else EXIT_OK

    @property
    def verdict(self) -> str:
        return {EXIT_OK: "no recent regression", EXIT_REGRESSION: "regression",
                EXIT_CANNOT_CHECK: "could not check"}[self.exit_code]

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "exit_code": self.exit_code, "settings": self.settings,
                "series": len(self.series), "points": int(sum(len(s) for s in self.series)),
                "steps": [s.to_json() for s in self.steps], "too_short": self.too_short, "problems": self.problems}


def _without_flagged(s: Series) -> Series:
    keep = [i for i, f in enumerate(s.flags) if not f]
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    return Series(s.machine, s.cell_key, s.cell_label, s.quantity, s.values[keep], pick(s.commits),
                  pick(s.branches), pick(s.times), pick(s.run_ids), pick(s.flags))


def check_series(series: list[Series], window: int = DEFAULT_WINDOW, max_pvalue: float = DEFAULT_MAX_PVALUE,
                 min_magnitude: dict[str, float] | None = None, recent: int = DEFAULT_RECENT,
                 exclude_flagged: bool = False) -> CheckResult:
    """Change points of each series; ``min_magnitude`` per quantity overrides :data:`MIN_MAGNITUDE`."""
    mags = {**MIN_MAGNITUDE, **(min_magnitude or {})}
    result = CheckResult(settings={"window": window, "max_pvalue": max_pvalue, "min_magnitude": mags,
                                   "recent": recent, "exclude_flagged": exclude_flagged})
    for s in series:
        if exclude_flagged:
            s = _without_flagged(s)
        result.series.append(s)
        if len(s) < MIN_POINTS:
            result.too_short.append(f"{s.cell_label} · {s.quantity} · {s.machine}: {len(s)} point(s)")
            continue
        mag = mags.get(s.quantity, FALLBACK_MIN_MAGNITUDE)
        higher_better = QUANTITIES[s.quantity].higher_is_better if s.quantity in QUANTITIES else False
        for c in change_points(s.values, window, max_pvalue, mag):
            worse = (c.mean_after < c.mean_before) if higher_better else (c.mean_after > c.mean_before)
            result.steps.append(Step(s, c, "regression" if worse else "improvement", c.index >= len(s) - recent))
    return result


def _fmt(v: float, quantity: str) -> str:
    if quantity in ("mIoU", "aAcc"):
        return f"{100 * v:.2f}%"
    return f"{v:.4g}"


def _short(sha: str | None) -> str:
    return (sha or "?")[:12]


def markdown_summary(result: CheckResult) -> str:
    """A Markdown summary for a CI job page: verdict, then every step (recent regressions first)."""
    icon = {EXIT_OK: "✅", EXIT_REGRESSION: "❌", EXIT_CANNOT_CHECK: "⚠️"}[result.exit_code]
    t = result.settings
    n_points = int(sum(len(s) for s in result.series))
    lines = [f"## segbench history check: {icon} {result.verdict}", "",
             f"{len(result.series)} series, {n_points} points; E-divisive means, window {t['window']}, "
             f"p < {t['max_pvalue']:g}; a step fails the check when it is a regression among the "
             f"{t['recent']} newest points of its series.", ""]
    if result.steps:
        lines += ["| | cell | quantity | machine | commits | before | after | change | p |",
                  "|:---|:---|:---|:---|:---|---:|---:|---:|---:|"]
        order = sorted(result.steps, key=lambda s: (not (s.kind == "regression" and s.recent), s.kind,
                                                    s.series.cell_label, s.series.quantity, s.change.index))
        for st in order:
            c, s = st.change, st.series
            before, after = st.commit_range
            mark = ("❌ **regression**" if st.recent else "regression") if st.kind == "regression" else "improvement"
            lines.append(f"| {mark} | {markdown_escape(s.cell_label)} | {s.quantity} | {markdown_escape(s.machine)} | "
                         f"`{markdown_escape(_short(before))}..{markdown_escape(_short(after))}` | "
                         f"{_fmt(c.mean_before, s.quantity)} | {_fmt(c.mean_after, s.quantity)} | "
                         f"{100 * c.forward_change:+.1f}% | {c.pvalue:.1g} |")
        lines.append("")
    else:
        lines += ["No change point in any series.", ""]
    for title, items in (("Problems", result.problems), ("Too short to check", result.too_short)):
        if items:
            lines += [f"**{title}** ({len(items)}):", ""] + [f"- {markdown_escape(x)}" for x in items[:50]] + [""]
    return "\n".join(lines).rstrip() + "\n"

