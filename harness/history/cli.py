"""``segbench history add | check | report``: the command line of the run history.

:func:`add_parsers` registers the three sub-commands on an argparse sub-parsers action (for
``segbench history ...``); :func:`history_main` parses ``argv`` itself (``python -m harness.history``).
"""

from __future__ import annotations

import argparse
import os
import sys

from harness.errors import ConfigError, SegbenchError

DB_HELP = "SQLite file or SQLAlchemy URL (postgresql://user@host/db); default $SEGBENCH_HISTORY_DB or {default}"


def _default_db() -> str:
    from harness.history.store import DEFAULT_DB

    return os.environ.get("SEGBENCH_HISTORY_DB") or DEFAULT_DB


def _store(args: argparse.Namespace):
    from harness.history.store import HistoryStore

    return HistoryStore(args.db or _default_db())


def cmd_add(args: argparse.Namespace) -> int:
    """Record each run directory; a run already recorded is reported and left as it is."""
    store = _store(args)
    try:
        for run_dir in args.runs:
            res = store.add_run_dir(run_dir, commit=args.commit, branch=args.branch, machine=args.machine)
            state = f"recorded {res.points} point(s)" if res.added else "already recorded, left as it is"
            print(f"history: {run_dir}: {state}")
    finally:
        store.close()
    return 0


def parse_magnitudes(items: list[str] | None) -> dict[str, float]:
    """``["0.03", "mIoU=0.005"]`` -> {every quantity: 0.03, "mIoU": 0.005}; ConfigError naming a bad item."""
    from harness.history.quantities import QUANTITIES

    out: dict[str, float] = {}
    for item in items or []:
        name, _, value = item.rpartition("=")
        try:
            v = float(value)
        except ValueError:
            v = -1.0
        if v < 0 or (name and name not in QUANTITIES):
            raise ConfigError(f"--min-magnitude {item!r}: expected VALUE or QUANTITY=VALUE with VALUE >= 0 and "
                              f"QUANTITY one of {', '.join(QUANTITIES)}")
        out.update({name: v} if name else dict.fromkeys(QUANTITIES, v))
    return out


def _checked(args: argparse.Namespace):
    from harness.history.check import check_series

    store = _store(args)
    try:
        series = [s for q in (args.quantity or [None])
                  for s in store.series(quantity=q, machine=args.machine, branch=args.branch, cell=args.cell)]
    finally:
        store.close()
    result = check_series(series, window=args.window, max_pvalue=args.max_pvalue,
                          min_magnitude=parse_magnitudes(args.min_magnitude), recent=args.recent,
                          exclude_flagged=args.exclude_flagged)
    if not series:
        result.problems.append("no series matched: record runs with `history add RUN_DIR` (or relax the filters)")
    return result


def cmd_check(args: argparse.Namespace) -> int:
    """Change points per series; exit 0 no recent regression, 1 a recent regression step, 2 could not check."""
    from harness.cli_output import emit_document
    from harness.history.check import markdown_summary
    from harness.verdict_views import history_lines

    result = _checked(args)
    doc = result.to_json()
    emit_document(args, "history check", doc, lambda style, width: history_lines(doc, style, width),
                  lambda: markdown_summary(result))
    return result.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    """The HTML page of every matched series with its steps."""
    from harness.history.report import write_report

    result = _checked(args)
    out = write_report(result, args.out)
    print(f"history report: {out}")
    return 0


def _filters(p: argparse.ArgumentParser) -> None:
    from harness.history.changepoints import DEFAULT_MAX_PVALUE, DEFAULT_WINDOW
    from harness.history.check import DEFAULT_RECENT
    from harness.history.quantities import QUANTITIES

    p.add_argument("--db", help=DB_HELP.format(default="results/history.sqlite"))
    p.add_argument("--quantity", action="append", choices=list(QUANTITIES),
                   help="only this quantity (repeatable; default: all)")
    p.add_argument("--machine", help="only this machine class (as `history add` recorded it)")
    p.add_argument("--branch", help="only runs recorded on this branch")
    p.add_argument("--cell", help="only cells whose label contains this text")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, help=f"E-divisive window (default {DEFAULT_WINDOW})")
    p.add_argument("--max-pvalue", type=float, default=DEFAULT_MAX_PVALUE,
                   help=f"significance of a step (default {DEFAULT_MAX_PVALUE:g})")
    p.add_argument("--min-magnitude", action="append", metavar="[QUANTITY=]VALUE",
                   help="smallest relative step reported (default 0.05; mIoU/aAcc 0.01); repeatable")
    p.add_argument("--recent", type=int, default=DEFAULT_RECENT,
                   help=f"a regression step among this many newest points fails (default {DEFAULT_RECENT})")
    p.add_argument("--exclude-flagged", action="store_true",
                   help="leave out points whose cell carries measurement-quality flags")


def add_parsers(sub) -> None:
    """Register ``add``, ``check`` and ``report`` on ``sub`` (an argparse sub-parsers action)."""
    a = sub.add_parser("add", help="record run directories (commit, branch, machine, time, quantities)")
    a.add_argument("runs", nargs="+", metavar="RUN_DIR")
    a.add_argument("--db", help=DB_HELP.format(default="results/history.sqlite"))
    a.add_argument("--commit", help="commit to record (default: the run's git_sha)")
    a.add_argument("--branch", help="branch to record (default: $GITHUB_HEAD_REF / $GITHUB_REF_NAME, or git's)")
    a.add_argument("--machine", help="machine class to record (default: CPU model and count, GPU model and count)")
    a.set_defaults(func=cmd_add)

    from harness.cli_output import VERDICT_FORMATS, add_output_options

    c = sub.add_parser("check", help="change points per series; exit 1 on a recent regression step")
    _filters(c)
    add_output_options(c, VERDICT_FORMATS)
    c.add_argument("--out", help="write the summary (markdown unless --format/--json) to this file, e.g. "
                                 "$GITHUB_STEP_SUMMARY; stderr then gets one line with the verdict")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("report", help="offline HTML page: a chart per series with its change points")
    _filters(r)
    r.add_argument("--out", default="reports/history.html", help="output HTML file (default reports/history.html)")
    r.set_defaults(func=cmd_report)


def build_parser(prog: str = "segbench history") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Run history: record runs, find steps, chart them.")
    add_parsers(p.add_subparsers(dest="history_command", required=True, metavar="COMMAND"))
    return p


def history_main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the sub-command; errors print one line and return 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SegbenchError as e:
        print(f"segbench history: error: {e}", file=sys.stderr)
        return 2
