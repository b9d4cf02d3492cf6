"""Sub-commands that read results: report, table, compare, export."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report.html import write_report

    out = Path(args.out) if args.out else Path("reports") / f"{Path(args.runs[0]).name}.html"
    write_report(args.runs, out)
    print(f"report: {out}")
    return 0


def add_parsers(sub) -> None:
    """Register the result-reading sub-commands on ``sub`` (argparse sub-parsers)."""
    r = sub.add_parser("report", help="write one self-contained HTML report from one or several runs")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR")
    r.add_argument("--out", help="output HTML file (default: reports/<first run id>.html)")
    r.set_defaults(func=_cmd_report)
