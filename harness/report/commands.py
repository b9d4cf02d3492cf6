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


def _write(text: str, out: str | None) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        print(text, end="")


def _cmd_table(args: argparse.Namespace) -> int:
    from harness.report.tables import render_table
    from harness.results import load_run

    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    try:
        text = render_table([load_run(d) for d in args.runs], fmt=args.format, columns=columns,
                            decimals=args.decimals, group=not args.no_group)
    except ValueError as e:
        from harness.errors import ConfigError

        raise ConfigError(str(e)) from None
    _write(text, args.out)
    return 0


def _load_thresholds(path: str | None) -> dict:
    if not path:
        return {}
    import json

    import yaml

    from harness.errors import ConfigError
    from harness.report.compare import DEFAULT_THRESHOLDS

    text = Path(path).read_text()
    data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict) or any(k not in DEFAULT_THRESHOLDS for k in data):
        raise ConfigError(f"{path}: expected a mapping with keys from {', '.join(DEFAULT_THRESHOLDS)}")
    return data


def _cmd_compare(args: argparse.Namespace) -> int:
    import json

    from harness.report.compare import compare_runs, markdown_summary
    from harness.results import ResultsError, load_run

    try:
        base, cur = load_run(args.baseline), load_run(args.current)
    except ResultsError as e:
        print(f"segbench compare: could not compare: {e}")
        return 2
    thresholds = _load_thresholds(args.thresholds)
    for key in ("max_miou_drop", "max_aacc_drop", "max_slowdown", "max_memory_growth", "alpha"):
        if getattr(args, key) is not None:
            thresholds[key] = getattr(args, key)
    cmp = compare_runs(base, cur, thresholds)
    if args.format == "json":
        _write(json.dumps(cmp.to_json(), indent=1) + "\n", args.out)
    else:
        _write(markdown_summary(cmp, base.meta.get("run_id"), cur.meta.get("run_id")), args.out)
    return cmp.exit_code


def _cmd_export(args: argparse.Namespace) -> int:
    import json

    from harness.report.export import to_pytest_benchmark
    from harness.results import load_run

    _write(json.dumps(to_pytest_benchmark(load_run(args.run)), indent=1) + "\n", args.out)
    return 0


def add_parsers(sub) -> None:
    """Register the result-reading sub-commands on ``sub`` (argparse sub-parsers)."""
    r = sub.add_parser("report", help="write one self-contained HTML report from one or several runs")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR")
    r.add_argument("--out", help="output HTML file (default: reports/<first run id>.html)")
    r.set_defaults(func=_cmd_report)

    t = sub.add_parser("table", help="paper table (LaTeX booktabs, Markdown or CSV)")
    t.add_argument("runs", nargs="+", metavar="RUN_DIR")
    t.add_argument("--format", choices=("latex", "markdown", "csv"), default="markdown")
    t.add_argument("--columns", help="comma-separated columns, e.g. model,precision,mIoU,latency_p50")
    t.add_argument("--decimals", type=int, default=1)
    t.add_argument("--no-group", action="store_true", help="do not group models by family")
    t.add_argument("--out", help="write to this file instead of standard output")
    t.set_defaults(func=_cmd_table)

    c = sub.add_parser("compare", help="regression verdict: exit 0 none, 1 regression, 2 could not compare")
    c.add_argument("baseline", metavar="BASELINE_RUN")
    c.add_argument("current", metavar="CURRENT_RUN")
    c.add_argument("--thresholds", help="YAML or JSON file with max_miou_drop, max_aacc_drop, max_slowdown, "
                                        "max_memory_growth, alpha")
    c.add_argument("--max-miou-drop", type=float, help="absolute mIoU drop that fails (fraction; default 0.005)")
    c.add_argument("--max-aacc-drop", type=float, help="absolute aAcc drop that fails (fraction; default 0.005)")
    c.add_argument("--max-slowdown", type=float, help="relative p50 latency growth that fails (default 0.10)")
    c.add_argument("--max-memory-growth", type=float, help="relative peak memory growth that fails (default 0.10)")
    c.add_argument("--alpha", type=float, help="significance level of the latency test (default 0.01)")
    c.add_argument("--format", choices=("markdown", "json"), default="markdown")
    c.add_argument("--out", help="write the summary to this file (e.g. $GITHUB_STEP_SUMMARY)")
    c.set_defaults(func=_cmd_compare)

    x = sub.add_parser("export", help="export latency results (pytest-benchmark JSON)")
    x.add_argument("run", metavar="RUN_DIR")
    x.add_argument("--format", choices=("pytest-benchmark",), default="pytest-benchmark")
    x.add_argument("--out", help="output file (default: standard output)")
    x.set_defaults(func=_cmd_export)
