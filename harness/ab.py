"""Interleaved A/B: two configurations measured in alternating rounds on one machine, decided from the pairs.

Each round runs each side once, in fresh processes, in the order AB, BA, AB, ... (the order
alternates so a machine that drifts slower or faster through the run favours neither side).
For each cell the round gives one ratio B/A of the chosen quantity, oriented so that > 1 means
B is worse (slower, heavier, less accurate). From the n paired ratios:

- the geometric mean ratio exp(mean(log r)) and its confidence interval
  exp(mean +- t_{n-1} * sd / sqrt(n)) (Student's t on the log ratios, default 95%);
- the one-sided Wilcoxon signed-rank test of the log ratios (B worse; and B better).

Verdict per cell: **regression** when the whole interval lies above the threshold factor
(default 1.05) and the signed-rank test says B is worse with p < alpha (default 0.01);
**improvement** when the interval lies below 1/threshold and the test says B is better;
**no regression** when the interval's upper end is below the threshold; otherwise
**inconclusive** (the interval straddles the threshold: more rounds or a quieter machine).
The interval bounds the size of the change; the signed-rank test asks that the pairs agree
on its direction, which one outlier pair (a neighbour that started between the two halves
of a round) cannot fake, and it assumes nothing about the distribution of the log ratios.
With 10 rounds it reaches p = 1/1024 when every pair points the same way; below 7 rounds
it cannot reach 0.01, so fewer rounds never give a regression verdict.

Sides: two suites (or one suite twice: an A/A check), two git revisions each run from its own
``git worktree`` with ``python -m harness run SUITE`` (asv continuous's job), or two commands
that write cell results into a folder. Exit codes as ``compare``: 0 no regression, 1 a
regression, 2 could not compare (a cell inconclusive, a side failed, nothing paired).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import ConfigError, SegbenchError
from harness.history.quantities import QUANTITIES, cell_quantities, worse_factor
from harness.measure.quality import QualityProbe, cell_flags, flags
from harness.significance import t_ppf, wilcoxon_signed_rank_greater

EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_COMPARE = 0, 1, 2
DEFAULT_ROUNDS = 10
DEFAULT_THRESHOLD = 1.05
DEFAULT_ALPHA = 0.01
DEFAULT_CONFIDENCE = 0.95
MIN_ROUNDS = 3
ROUND_FLAGS = ("busy-host", "cpu-steal", "throttled")
# When more than half of a side's rounds were flagged busy-host or cpu-steal, disturbances that last
# several rounds make the pairs less independent than the interval and the test assume: the
# decision then uses a 99% interval and a signed-rank level five times smaller (0.01 -> 0.002,
# the level asv uses).
BUSY_CONFIDENCE = 0.99
BUSY_ALPHA_FACTOR = 0.2


@dataclass
class PairStats:
    """The decision for one cell from its per-round ratios (B/A, > 1 = B worse)."""

    ratios: list[float]
    n: int
    ratio: float | None
    ci: tuple[float, float] | None
    p_worse: float | None
    p_better: float | None
    verdict: str  # regression | improvement | no regression | inconclusive
    reason: str = ""


def decide(ratios: list[float], threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
           confidence: float = DEFAULT_CONFIDENCE) -> PairStats:
    """Geometric mean ratio, its t interval and the signed-rank tests of ``ratios``, and the verdict."""
    r = np.asarray([x for x in ratios if x is not None and math.isfinite(x) and x > 0], dtype=np.float64)
    n = int(r.size)
    if n < MIN_ROUNDS:
        return PairStats(list(map(float, r)), n, None, None, None, None, "inconclusive",
                         f"{n} paired round(s); at least {MIN_ROUNDS} are needed")
    logs = np.log(r)
    mean, sd = float(logs.mean()), float(logs.std(ddof=1))
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    lo, hi = math.exp(mean - half), math.exp(mean + half)
    p_worse, p_better = wilcoxon_signed_rank_greater(logs), wilcoxon_signed_rank_greater(-logs)
    p_worse = 1.0 if math.isnan(p_worse) else p_worse
    p_better = 1.0 if math.isnan(p_better) else p_better
    if lo > threshold and p_worse < alpha:
        verdict, why = "regression", f"interval above {threshold:g} and signed-rank p={p_worse:.2g} < {alpha:g}"
    elif hi < 1.0 / threshold and p_better < alpha:
        verdict, why = "improvement", f"interval below 1/{threshold:g} and signed-rank p={p_better:.2g} < {alpha:g}"
    elif hi < threshold:
        verdict, why = "no regression", f"interval below {threshold:g}"
    elif lo > threshold:
        verdict, why = "inconclusive", (f"interval [{lo:.3f}, {hi:.3f}] above {threshold:g} but the pairs disagree "
                                        f"on the direction (signed-rank p={p_worse:.2g}, not below {alpha:g})")
    else:
        verdict, why = "inconclusive", f"interval [{lo:.3f}, {hi:.3f}] reaches {threshold:g}"
    return PairStats(list(map(float, r)), n, math.exp(mean), (lo, hi), p_worse, p_better, verdict, why)


def _read_cells(folder: Path) -> list:
    """Cell results (:class:`harness.cell_result.CellResult`) a round left in ``folder``: a run
    directory's cells, or ``*.json`` cell files."""
    from harness.results import load_cell_result, load_run

    runs = sorted(p.parent for p in folder.rglob("run.json"))
    if runs:
        return [c for r in runs for c in load_run(r).cells.values()]
    return [load_cell_result(p) for p in sorted(folder.rglob("*.json"))]


class SuiteSide:
    """A suite's cells, each run in a fresh process by ``harness.runner.run_cell_process``."""

    def __init__(self, suite: str | os.PathLike, name: str | None = None):
        from harness.suite import load_suite

        self.suite = load_suite(suite)
        self.cells = self.suite.cells()
        self.name = name or str(suite)

    def run_round(self, dest: Path) -> list:
        from harness.launchers import run_cell_process
        from harness.results import cell_path, load_cell_result

        out = []
        for cell in self.cells:
            run_cell_process(cell, dest)
            out.append(load_cell_result(cell_path(dest, cell.cell_id)))
        return out

    def close(self) -> None:
        pass


class CommandSide:
    """A command run once per round; ``{out}`` in it is replaced by the round's folder, where it writes
    a run directory or cell result files (``*.json`` with a ``status``)."""

    def __init__(self, command: str | list[str], name: str | None = None, cwd: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, timeout_s: float = 3600.0):
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            raise ConfigError("A/B command side: the command is empty")
        self.name = name or " ".join(self.argv)
        self.cwd, self.env, self.timeout_s = cwd, env, timeout_s

    def run_round(self, dest: Path) -> list[dict]:
        dest.mkdir(parents=True, exist_ok=True)
        argv = [a.replace("{out}", str(dest)) for a in self.argv]
        try:
            proc = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                                  timeout=self.timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SegbenchError(f"A/B side {self.name!r}: {type(e).__name__}: {e}") from None
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise SegbenchError(f"A/B side {self.name!r} exited with code {proc.returncode}:\n{tail}")
        cells = _read_cells(dest)
        if not cells:
            raise SegbenchError(f"A/B side {self.name!r} wrote no cell result under {dest}")
        return cells

    def close(self) -> None:
        pass


class RevisionSide(CommandSide):
    """A git revision of ``repo``, checked out in its own worktree, running ``command`` there
    (default ``python -m harness run SUITE --out {out}``, the suite path taken as given, so both
    revisions measure the same suite file)."""

    def __init__(self, repo: str | os.PathLike, revision: str, suite: str | os.PathLike, work_dir: Path,
                 command: str | None = None, name: str | None = None):
        self.repo, self.revision = Path(repo).resolve(), revision
        self.tree = work_dir / f"worktree-{_slug(revision)}"
        self._git("worktree", "add", "--detach", "--force", str(self.tree), revision)
        suite_abs = str(Path(suite).resolve())
        cmd = command or f"{shlex.quote(sys.executable)} -m harness run {{suite}} --out {{out}}"
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[1])
        kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != Path(here)]
        env["PYTHONPATH"] = os.pathsep.join([str(self.tree), *kept])
        super().__init__(cmd.replace("{suite}", shlex.quote(suite_abs)), name or revision, cwd=self.tree, env=env)

    def _git(self, *args: str) -> str:
        proc = subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise ConfigError(f"git {' '.join(args[:2])} {self.revision!r} in {self.repo}: {proc.stderr.strip()}")
        return proc.stdout

    def close(self) -> None:
        subprocess.run(["git", "-C", str(self.repo), "worktree", "remove", "--force", str(self.tree)],
                       capture_output=True, timeout=120)
        subprocess.run(["git", "-C", str(self.repo), "worktree", "prune"], capture_output=True, timeout=120)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)[:60]


@dataclass
class CellAB:
    """One paired cell: its label, each side's value per measured round, and the decision."""

    label: str
    a_values: list[float | None]
    b_values: list[float | None]
    stats: PairStats


@dataclass
class ABResult:
    """What :func:`run_ab` measured and decided."""

    side_a: str
    side_b: str
    quantity: str
    settings: dict
    order: list[str] = field(default_factory=list)
    cells: list[CellAB] = field(default_factory=list)
    round_flags: dict[str, list[list[str]]] = field(default_factory=lambda: {"A": [], "B": []})
    round_quality: dict[str, list[dict]] = field(default_factory=lambda: {"A": [], "B": []})
    problems: list[str] = field(default_factory=list)

    @property
    def flagged_rounds(self) -> dict[str, int]:
        return {side: sum(1 for f in fl if f) for side, fl in self.round_flags.items()}

    @property
    def exit_code(self) -> int:
        if self.problems or not self.cells:
            return EXIT_CANNOT_COMPARE
        if any(c.stats.verdict == "regression" for c in self.cells):
            return EXIT_REGRESSION
        if any(c.stats.verdict == "inconclusive" for c in self.cells):
            return EXIT_CANNOT_COMPARE
        if self.settings.get("strict") and any(self.flagged_rounds.values()):
            return EXIT_CANNOT_COMPARE
        return EXIT_OK

    @property
    def verdict(self) -> str:
        return {EXIT_OK: "no regression", EXIT_REGRESSION: "regression",
                EXIT_CANNOT_COMPARE: "could not compare"}[self.exit_code]

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "exit_code": self.exit_code, "side_a": self.side_a, "side_b": self.side_b,
                "quantity": self.quantity, "settings": self.settings, "order": self.order,
                "flagged_rounds": self.flagged_rounds, "round_flags": self.round_flags,
                "round_quality": self.round_quality, "problems": self.problems,
                "cells": [{"cell": c.label, "a": c.a_values, "b": c.b_values, **asdict(c.stats)} for c in self.cells]}


def _pairs(a_cells: list, b_cells: list) -> list[tuple[str, str, str]]:
    """(label, A key, B key) of each pair: by identity when both sides hold the same cells, else by position."""
    from harness.report.compare import cell_label, identity

    a_keys, b_keys = [identity(c) for c in a_cells], [identity(c) for c in b_cells]
    if sorted(a_keys) == sorted(b_keys):
        return [(cell_label(c), k, k) for c, k in zip(a_cells, a_keys, strict=True)]
    if len(a_cells) != len(b_cells):
        raise ConfigError(f"A/B: side A has {len(a_cells)} cell(s) and side B {len(b_cells)} with different "
                          "settings: they cannot be paired (give both sides the same cells, or one cell each)")
    return [(f"{cell_label(a)} vs {cell_label(b)}", ka, kb)
            for a, b, ka, kb in zip(a_cells, b_cells, a_keys, b_keys, strict=True)]


def _value(cells: list, key: str, quantity: str) -> float | None:
    from harness.report.compare import identity

    for c in cells:
        if identity(c) == key:
            return cell_quantities(c).get(quantity)
    return None


def _round_flags(q: dict, cells: list) -> list[str]:
    """Machine flags the parent measured around the round, plus the flags the cells recorded."""
    out = [f for f in flags(q) if f in ROUND_FLAGS]
    for c in cells:
        for f in cell_flags(c):
            if f not in out:
                out.append(f)
    return out


def _run_side(side, dest: Path) -> tuple[list, list[str], dict]:
    """One round of one side, with the machine flags the parent measured around it and the reading."""
    probe = QualityProbe(include_children=True).start()
    cells = side.run_round(dest)
    q = probe.stop()
    keep = ("wall_s", "own_cores", "other_cores", "other_share", "steal_share")
    return cells, _round_flags(q, cells), {k: q.get(k) for k in keep}


def run_ab(side_a, side_b, rounds: int = DEFAULT_ROUNDS, warmup_rounds: int = 1, quantity: str = "latency_p50",
           threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
           confidence: float = DEFAULT_CONFIDENCE, work_dir: str | os.PathLike | None = None, strict: bool = False,
           between_rounds: Callable[[int], None] | None = None, echo: bool = False,
           max_rounds: int | None = None) -> ABResult:
    """Measure ``side_a`` and ``side_b`` in ``rounds`` alternating rounds (after ``warmup_rounds``
    discarded ones) and decide per paired cell; sides are closed afterwards.

    With ``max_rounds`` above ``rounds``, rounds go on while a cell is not :func:`settled`, deciding
    again after each, until every cell is or ``max_rounds`` were measured. ``between_rounds(i)``
    is called before round ``i`` (0-based, warm-up rounds included). ``strict`` turns a round
    flagged ``busy-host``/``cpu-steal``/``throttled`` into "could not compare".
    """
    max_rounds = max(rounds, max_rounds or rounds)
    check_settings(rounds, warmup_rounds, quantity, threshold, alpha, confidence)
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="segbench-ab-"))
    sides = {"A": side_a, "B": side_b}
    settings = {"rounds": rounds, "max_rounds": max_rounds, "warmup_rounds": warmup_rounds, "threshold": threshold,
                "alpha": alpha, "confidence": confidence, "strict": strict, "work_dir": str(work)}
    res = ABResult(side_a.name, side_b.name, quantity, settings)
    measured: list[dict[str, list[dict]]] = []
    try:
        for i in range(warmup_rounds + max_rounds):
            if i >= warmup_rounds + rounds and not _undecided(res, measured, threshold, alpha, confidence):
                break
            if between_rounds is not None:
                between_rounds(i)
            _one_round(res, sides, i, i < warmup_rounds, work, measured)
            if echo:
                print(f"segbench ab: round {i + 1} ({res.order[-1] if res.order else 'AB'})"
                      f"{' warm-up' if i < warmup_rounds else ''}", file=sys.stderr)
    except SegbenchError as e:
        res.problems.append(str(e))
    finally:
        for s in sides.values():
            s.close()
    res.cells = []
    if measured:
        _decide_cells(res, measured, threshold, alpha, confidence)
    return res


def _one_round(res: ABResult, sides: dict, i: int, warmup: bool, work: Path, measured: list) -> None:
    """Round ``i``: both sides, AB on even rounds and BA on odd ones; kept unless a warm-up round."""
    order = "AB" if i % 2 == 0 else "BA"
    got: dict[str, list[dict]] = {}
    for s in order:
        got[s], fl, q = _run_side(sides[s], work / s / f"round-{i:02d}")
        if not warmup:
            res.round_flags[s].append(fl)
            res.round_quality[s].append(q)
    if not warmup:
        res.order.append(order)
        measured.append(got)


def settled(stats: PairStats, threshold: float) -> bool:
    """Whether more rounds would not change the answer's kind: a regression or an improvement, or
    "no regression" with the interval also above 1/threshold (no change either way)."""
    if stats.verdict in ("regression", "improvement"):
        return True
    return stats.verdict == "no regression" and stats.ci is not None and stats.ci[0] > 1.0 / threshold


def _undecided(res: ABResult, measured: list, threshold: float, alpha: float, confidence: float) -> bool:
    """Whether some cell is not :func:`settled` after the rounds so far (a pairing problem ends the rounds)."""
    problems, res.cells = list(res.problems), []
    _decide_cells(res, measured, threshold, alpha, confidence)
    paired = len(res.problems) == len(problems)
    res.problems = problems
    return paired and not all(settled(c.stats, threshold) for c in res.cells)


def _decide_cells(res: ABResult, measured: list[dict[str, list[dict]]], threshold: float, alpha: float,
                  confidence: float) -> None:
    try:
        pairs = _pairs(measured[0]["A"], measured[0]["B"])
    except ConfigError as e:
        res.problems.append(str(e))
        return
    n = len(measured)
    busy = any(sum(1 for f in fl if {"busy-host", "cpu-steal"} & set(f)) > n / 2 for fl in res.round_flags.values())
    if busy:
        confidence, alpha = max(confidence, BUSY_CONFIDENCE), alpha * BUSY_ALPHA_FACTOR
    res.settings["busy_levels"] = {"used": busy, "confidence": confidence, "alpha": alpha}
    for label, ka, kb in pairs:
        a = [_value(r["A"], ka, res.quantity) for r in measured]
        b = [_value(r["B"], kb, res.quantity) for r in measured]
        ratios = [worse_factor(res.quantity, x, y) for x, y in zip(a, b, strict=True)
                  if x is not None and y is not None and x > 0 and y > 0]
        stats = decide(ratios, threshold, alpha, confidence)
        missing = sum(1 for x, y in zip(a, b, strict=True) if x is None or y is None)
        if missing:
            stats.reason += f"; {missing} round(s) without a {res.quantity} value on a side"
        res.cells.append(CellAB(label, a, b, stats))


def check_settings(rounds: int, warmup_rounds: int, quantity: str, threshold: float, alpha: float,
                   confidence: float) -> None:
    """ConfigError naming the first bad setting."""
    if quantity not in QUANTITIES:
        raise ConfigError(f"A/B quantity {quantity!r}: expected one of {', '.join(QUANTITIES)}")
    for name, value, ok, want in (
            ("rounds", rounds, rounds >= MIN_ROUNDS, f"an integer >= {MIN_ROUNDS}"),
            ("warmup rounds", warmup_rounds, warmup_rounds >= 0, "an integer >= 0"),
            ("threshold", threshold, threshold > 1.0, "a factor > 1, e.g. 1.05"),
            ("alpha", alpha, 0.0 < alpha < 1.0, "a number in (0, 1)"),
            ("confidence", confidence, 0.0 < confidence < 1.0, "a number in (0, 1)")):
        if not ok:
            raise ConfigError(f"A/B {name} {value!r}: expected {want}")


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4g}"


def markdown_summary(res: ABResult) -> str:
    """A Markdown summary for a CI job page: verdict, each cell's ratio and interval, flagged rounds."""
    from harness.report.escape import markdown_escape as esc

    icon = {EXIT_OK: "✅", EXIT_REGRESSION: "❌", EXIT_CANNOT_COMPARE: "⚠️"}[res.exit_code]
    t = res.settings
    n = len(res.order)
    lines = [f"## segbench ab: {icon} {res.verdict}", "",
             f"A = `{esc(res.side_a)}`, B = `{esc(res.side_b)}`: {n} interleaved round(s) "
             f"({' '.join(res.order) or '–'}) after {t['warmup_rounds']} warm-up; quantity `{res.quantity}`, ratio "
             f"B/A oriented so that > 1 means B is worse. Regression when the {100 * t['confidence']:.0f}% interval "
             f"of the geometric mean ratio lies above {t['threshold']:g} and the Wilcoxon signed-rank p < "
             f"{t['alpha']:g}.", ""]
    if res.cells:
        lines += ["| cell | A median | B median | ratio B/A | interval | p (B worse) | verdict |",
                  "|:---|---:|---:|---:|:---|---:|:---|"]
        for c in res.cells:
            s = c.stats
            a = [v for v in c.a_values if v is not None]
            b = [v for v in c.b_values if v is not None]
            ci = f"[{s.ci[0]:.3f}, {s.ci[1]:.3f}]" if s.ci else "–"
            verdict = f"**{s.verdict}**" if s.verdict in ("regression", "inconclusive") else s.verdict
            lines.append(f"| {esc(c.label)} | {_fmt(float(np.median(a)) if a else None)} | "
                         f"{_fmt(float(np.median(b)) if b else None)} | {_fmt(s.ratio)} | {ci} | "
                         f"{_fmt(s.p_worse)} | {verdict} ({esc(s.reason)}) |")
        lines.append("")
    fr = res.flagged_rounds
    if any(fr.values()):
        names = sorted({f for fl in res.round_flags.values() for r in fl for f in r})
        busy = t.get("busy_levels") or {}
        if t.get("strict"):
            tail = " — strict mode: not compared."
        elif busy.get("used"):
            tail = (f"; most rounds ran on a busy machine, so the decision used a "
                    f"{100 * busy['confidence']:.0f}% interval and p < {busy['alpha']:g}.")
        else:
            tail = "; both sides ran interleaved, so the pairs share the disturbance."
        lines += [f"Measurement quality: {fr['A']}/{n} A round(s) and {fr['B']}/{n} B round(s) flagged "
                  f"({', '.join(names)}){tail}", ""]
    if res.problems:
        lines += [f"**Problems** ({len(res.problems)}):", ""] + [f"- {esc(p)}" for p in res.problems] + [""]
    return "\n".join(lines).rstrip() + "\n"


DESCRIPTION = "Interleaved A/B: two configurations in alternating rounds on this machine, decided from the pairs."


def build_parser(prog: str = "segbench ab") -> argparse.ArgumentParser:
    """The standalone parser of ``python -m harness.ab``."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    _add_arguments(p)
    return p


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``ab`` on ``sub`` (an argparse sub-parsers action); its ``func`` is :func:`cmd_ab`."""
    p = sub.add_parser("ab", help="interleaved A/B of two suites, git revisions or commands", description=DESCRIPTION)
    _add_arguments(p)
    p.set_defaults(func=cmd_ab)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suites", nargs="*", metavar="SUITE",
                   help="SUITE_A SUITE_B (two suites), or one SUITE (A/A, or the suite run at each --rev)")
    p.add_argument("--rev", action="append", metavar="REV", help="a git revision (twice: A then B), each run "
                   "from its own worktree of --repo with `python -m harness run SUITE`")
    p.add_argument("--repo", default=".", help="git repository of --rev (default: .)")
    p.add_argument("--rev-command", help="command run in each worktree; {suite} and {out} are replaced "
                   "(default: python -m harness run {suite} --out {out})")
    p.add_argument("--cmd-a", help="command for side A; it writes cell results into {out}")
    p.add_argument("--cmd-b", help="command for side B")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"measured rounds (default {DEFAULT_ROUNDS})")
    p.add_argument("--max-rounds", type=int, help="while a cell is undecided (inconclusive, or 'no regression' "
                   "that may be an improvement), go on up to this many rounds")
    p.add_argument("--warmup-rounds", type=int, default=1, help="discarded rounds first (default 1)")
    p.add_argument("--quantity", default="latency_p50", choices=list(QUANTITIES))
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"factor a regression must exceed (default {DEFAULT_THRESHOLD})")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"signed-rank level (default {DEFAULT_ALPHA})")
    p.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    p.add_argument("--strict", action="store_true", help="a round flagged busy-host/cpu-steal/throttled: exit 2")
    p.add_argument("--work-dir", help="keep every round's results here (default: a temporary folder, removed)")
    from harness.cli_output import VERDICT_FORMATS, add_output_options

    add_output_options(p, VERDICT_FORMATS)
    p.add_argument("--out", help="write the summary (markdown unless --format/--json) to this file, e.g. "
                                 "$GITHUB_STEP_SUMMARY; stderr then gets one line with the verdict")


def _sides(args: argparse.Namespace, work: Path):
    if args.cmd_a or args.cmd_b:
        if not (args.cmd_a and args.cmd_b) or args.suites or args.rev:
            raise ConfigError("--cmd-a and --cmd-b go together, without SUITE or --rev")
        return CommandSide(args.cmd_a, "A: " + args.cmd_a), CommandSide(args.cmd_b, "B: " + args.cmd_b)
    if args.rev:
        if len(args.rev) != 2 or len(args.suites) != 1:
            raise ConfigError("--rev takes two revisions (A, then B) and one SUITE")
        a = RevisionSide(args.repo, args.rev[0], args.suites[0], work, args.rev_command)
        try:
            return a, RevisionSide(args.repo, args.rev[1], args.suites[0], work, args.rev_command)
        except BaseException:
            a.close()
            raise
    if len(args.suites) == 1:
        return SuiteSide(args.suites[0], f"{args.suites[0]} (A)"), SuiteSide(args.suites[0], f"{args.suites[0]} (B)")
    if len(args.suites) == 2:
        return SuiteSide(args.suites[0]), SuiteSide(args.suites[1])
    raise ConfigError("give SUITE_A SUITE_B, one SUITE (with or without two --rev), or --cmd-a and --cmd-b")


def ab_main(argv: list[str] | None = None) -> int:
    """``segbench ab``: exit 0 no regression, 1 regression, 2 could not compare (errors print one line)."""
    return cmd_ab(build_parser().parse_args(argv))


def cmd_ab(args: argparse.Namespace) -> int:
    """Run the A/B the parsed ``args`` describe and write its summary; the exit code."""
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="segbench-ab-"))
    try:
        check_settings(args.rounds, args.warmup_rounds, args.quantity, args.threshold, args.alpha, args.confidence)
        side_a, side_b = _sides(args, work)
        res = run_ab(side_a, side_b, args.rounds, args.warmup_rounds, args.quantity, args.threshold, args.alpha,
                     args.confidence, work, args.strict, echo=not args.quiet, max_rounds=args.max_rounds)
    except SegbenchError as e:
        print(f"segbench ab: error: {e}", file=sys.stderr)
        return EXIT_CANNOT_COMPARE
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    from harness.cli_output import emit_document
    from harness.verdict_views import ab_lines

    doc = res.to_json()
    emit_document(args, "ab", doc, lambda style, width: ab_lines(doc, style, width), lambda: markdown_summary(res))
    return res.exit_code


if __name__ == "__main__":
    sys.exit(ab_main())
