"""Sub-commands that read results: ``report``, ``table``, ``compare``, ``export``.

Only argparse and pathlib are imported at module level: the measuring path imports the CLI
without pandas or plotly, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _write(text: str, out: str | None) -> None:
    """Write ``text`` to the file ``out`` (parent folders created) or, without ``out``, to stdout."""
    if not out:
        sys.stdout.write(text)
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


def _load_runs(dirs: list[str]):
    from harness.results import load_run

    return [load_run(d) for d in dirs]


def cmd_report(args: argparse.Namespace) -> int:
    """``segbench report RUN_DIR... [--out FILE]``: the offline HTML report; exit 0, or 2 on bad input."""
    from harness.report.html import write_report
    from harness.results import load_run

    first = load_run(args.runs[0])
    out = Path(args.out) if args.out else Path("reports") / f"{first.meta.get('run_id') or Path(args.runs[0]).name}.html"
    write_report(args.runs, out)
    print(f"report: {out}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """``segbench table RUN_DIR... --format ...``: a paper table on stdout or in ``--out``.

    Default format: ``text`` (aligned, within 100 columns) on stdout, ``markdown`` in ``--out``;
    ``--json`` gives the values as stored, ``--quiet`` prints nothing (the file is still written)."""
    from harness.cli_output import for_stream, output_width, to_json, write_file
    from harness.report.tables import render_table, table_json

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    runs = _load_runs(args.runs)
    if args.json:
        text = to_json(table_json(runs, columns)) + "\n"
    else:
        fmt = args.format or ("markdown" if args.out else "text")
        colour = fmt == "text" and not args.out and for_stream(sys.stdout).enabled
        text = render_table(runs, fmt=fmt, columns=columns, decimals=args.decimals, group=args.group,
                            width=output_width(sys.stdout) if not args.out else 100, colour=colour)
    if args.out:
        write_file(text, args.out)
        if not args.quiet:
            print(f"wrote {args.out}", file=sys.stderr)
    elif not args.quiet:
        sys.stdout.write(text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``segbench compare BASELINE CURRENT``: exit 0 no regression, 1 regression, 2 could not compare."""
    from harness.cli_output import emit_document
    from harness.errors import SegbenchError
    from harness.report.compare import (
        EXIT_CANNOT_COMPARE,
        THRESHOLD_HELP,
        check_thresholds,
        compare_runs,
        load_thresholds,
        markdown_summary,
    )
    from harness.results import load_run
    from harness.verdict_views import compare_lines

    try:
        thresholds = load_thresholds(args.thresholds) if args.thresholds else {}
        overrides = {k: getattr(args, k) for k in THRESHOLD_HELP if getattr(args, k, None) is not None}
        thresholds = check_thresholds({**thresholds, **overrides}, "command line")
    except SegbenchError as e:
        print(f"segbench compare: error: {e}", file=sys.stderr)
        return EXIT_CANNOT_COMPARE
    try:
        base, cur = load_run(args.baseline), load_run(args.current)
    except (SegbenchError, OSError) as e:
        problem = str(e)
        print(f"segbench compare: could not compare: {problem}", file=sys.stderr)
        doc = {"verdict": "could not compare", "exit_code": EXIT_CANNOT_COMPARE, "problems": [problem]}
        emit_document(args, "compare", doc, lambda style, width: compare_lines(doc, style, width),
                      lambda: f"## segbench compare: ⚠️ could not compare\n\n{problem}\n")
        return EXIT_CANNOT_COMPARE
    cmp = compare_runs(base, cur, thresholds)
    doc = {"baseline": {"run_id": base.meta.get("run_id"), "path": str(base.path)},
           "current": {"run_id": cur.meta.get("run_id"), "path": str(cur.path)}, **cmp.to_json()}
    emit_document(args, "compare", doc, lambda style, width: compare_lines(doc, style, width),
                  lambda: markdown_summary(cmp, base.meta.get("run_id"), cur.meta.get("run_id")))
    return cmp.exit_code


def cmd_export(args: argparse.Namespace) -> int:
    """``segbench export RUN_DIR --format pytest-benchmark``: latency results for benchmark dashboards."""
    import json

    from harness.report.export import to_pytest_benchmark
    from harness.results import load_run

    _write(json.dumps(to_pytest_benchmark(load_run(args.run)), indent=2) + "\n", args.out)
    return 0


def add_parsers(sub) -> None:
    """Register ``report``, ``table``, ``compare`` and ``export`` on ``sub`` (an argparse sub-parsers action)."""
    from harness.cli_output import VERDICT_FORMATS as FORMATS
    from harness.cli_output import add_output_options
    from harness.report.compare import THRESHOLD_HELP

    r = sub.add_parser("report", help="write one self-contained offline HTML report from one or several runs")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR")
    r.add_argument("--out", help="output HTML file (default: reports/<run_id of the first run>.html)")
    r.set_defaults(func=cmd_report)

    t = sub.add_parser("table", help="paper table: LaTeX (booktabs), Markdown or CSV")
    t.add_argument("runs", nargs="+", metavar="RUN_DIR")
    t.add_argument("--format", choices=("text", "latex", "markdown", "csv"), default=None,
                   help="text (aligned, the default on stdout), latex (booktabs), markdown (the default in --out), csv")
    t.add_argument("--columns", help="comma-separated column keys, e.g. model,precision,mIoU,latency_p50,params "
                                     "(default: model,precision,mIoU,aAcc,mAcc,latency_p50,throughput,params,gflops)")
    t.add_argument("--decimals", type=int, default=1, help="digits after the decimal point (default 1)")
    t.add_argument("--group", choices=("family", "none"), default="family",
                   help="group models by family (DPT, transformer, CNN); default family")
    t.add_argument("--out", help="write to this file instead of standard output")
    add_output_options(t)
    t.set_defaults(func=cmd_table)

    c = sub.add_parser("compare", help="regression verdict: exit 0 none, 1 regression, 2 could not compare")
    c.add_argument("baseline", metavar="BASELINE")
    c.add_argument("current", metavar="CURRENT")
    c.add_argument("--thresholds", metavar="FILE", help="YAML or JSON mapping of thresholds (command-line "
                                                         "options override it)")
    for key, help_text in THRESHOLD_HELP.items():
        if key == "allow_flagged":
            c.add_argument("--allow-flagged", action="store_const", const=1, dest=key,
                           help="judge timings even when a side's measurement was flagged (busy host, unstable, ...) "
                                "or the runs ran on different hardware")
        else:
            c.add_argument("--" + key.replace("_", "-"), type=float, dest=key,
                           help=help_text.replace("%", "%%"))  # argparse formats help with %
    add_output_options(c, FORMATS)
    c.add_argument("--out", help="write the summary (markdown unless --format/--json) to this file, e.g. "
                                 "$GITHUB_STEP_SUMMARY; stderr then gets one line with the verdict")
    c.set_defaults(func=cmd_compare)

    x = sub.add_parser("export", help="export latency results (pytest-benchmark JSON)")
    x.add_argument("run", metavar="RUN_DIR")
    x.add_argument("--format", choices=("pytest-benchmark",), default="pytest-benchmark")
    x.add_argument("--out", help="output file (default: standard output)")
    x.set_defaults(func=cmd_export)
