"""The ``segbench`` command line: run | report | table | compare | export | merge | models | datasets | eval."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from harness.errors import SegbenchError


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.runner import dry_run, run_suite

    if args.dry_run:
        cells = dry_run(args.suite, shard=args.shard)
        for c in cells:
            w = c.weights or "pretrained"
            print(f"{c.cell_id}\t{c.model}\t{w}\t{c.dataset}\t{c.device}\t{c.precision}/{c.amp}\t"
                  f"batch {c.batch_size}\t{c.runtime}\t{c.protocol['mode']}")
        print(f"{len(cells)} cells", file=sys.stderr)
        return 0
    summary = run_suite(args.suite, out_dir=args.out, resume=args.resume, force=args.force,
                        shard=args.shard, argv=["segbench", *sys.argv[1:]], available_only=args.available_only)
    print(f"results: {summary.run_dir}")
    if summary.interrupted:
        print(f"segbench: interrupted; finished cells are kept. Resume with: segbench run {args.suite} "
              f"--resume {summary.run_dir}", file=sys.stderr)
    if args.report and not summary.interrupted:
        from harness.report.html import write_report

        out = Path(args.report_dir) / f"{summary.run_dir.name}.html"
        write_report([summary.run_dir], out)
        print(f"report: {out}")
    if summary.failed:
        print(f"segbench: {len(summary.failed)} cell(s) failed: {', '.join(summary.failed)}", file=sys.stderr)
    return summary.exit_code


def _cmd_models(args: argparse.Namespace) -> int:
    from harness.models import model_infos

    rows = model_infos()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    cols = ("name", "family", "params", "input_size", "label_set", "runtime", "weights_from", "present")
    _print_table(rows, cols)
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from harness.data import dataset_infos

    rows = dataset_infos()
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    _print_table(rows, ("name", "num_classes", "ignore_index", "label_set", "root", "found"))
    return 0


def _print_table(rows: list[dict], cols: tuple[str, ...]) -> None:
    cols = tuple(c for c in cols if any(c in r for r in rows))
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) and v > 100_000:
        return f"{v / 1e6:.1f}M"
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    return str(v)


def _cmd_eval(args: argparse.Namespace) -> int:
    """Accuracy of one model on one dataset, in this process, printed as JSON."""
    import tempfile

    from harness.cell import run_cell
    from harness.suite import DEFAULT_MEASURE, DEFAULT_PROTOCOL, Cell

    measure = dict(DEFAULT_MEASURE, latency=False, samples=0, num_workers=args.workers,
                   on_bad_sample=args.on_bad_sample)
    cell = Cell(model=args.model, weights=args.weights, dataset=args.dataset, dataset_root=args.root,
                dataset_split=args.split, dataset_limit=args.limit, dataset_options={}, device=args.device,
                precision=args.precision, amp="autocast", batch_size=args.batch_size, runtime=args.runtime,
                variant={}, protocol=dict(DEFAULT_PROTOCOL, upsample=args.upsample), measure=measure)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_cell(cell, Path(tmp))
    if result.status != "ok":
        print(f"segbench eval: {result.status}: {result.error}", file=sys.stderr)
        return 1
    if args.profile:
        from harness.profile import describe

        print(describe(result), file=sys.stderr)
    data = result.provenance.data or {}
    out = {"model": result.identity.model, "weights": result.provenance.weights, "dataset": result.identity.dataset,
           "metrics": result.accuracy.metrics, "metrics_note": result.accuracy.note,
           "data": {k: data.get(k) for k in ("num_samples", "digest", "skipped")}}
    print(json.dumps(out, indent=1, default=str))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from harness.merge import merge_runs

    rep = merge_runs(args.runs, args.out, prefer=args.prefer, allow_missing=args.allow_missing, force=args.force)
    print(f"merged {rep.cells} cells from {len(args.runs)} runs into {rep.out_dir}")
    if rep.duplicates:
        print(f"{len(rep.duplicates)} duplicate cell(s) resolved: {', '.join(sorted(set(rep.duplicates))[:10])}",
              file=sys.stderr)
    if rep.missing:
        print(f"{len(rep.missing)} cell(s) missing: {', '.join(rep.missing[:10])}", file=sys.stderr)
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from harness.profile import describe
    from harness.results import load_run

    for cell in load_run(args.run).cells.values():
        print(describe(cell))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    """The JSON Schema of suite files (the file shipped in the package), on stdout or in ``--out``."""
    from harness.suite_schema import SCHEMA_PATH, shipped_text

    if args.path:
        print(SCHEMA_PATH)
        return 0
    text = shipped_text()
    if not args.out:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _add_schema(sub) -> None:
    s = sub.add_parser("schema", help="the JSON Schema of suite files, for editors (completion and checks)")
    s.add_argument("--out", help="write it to this file instead of standard output")
    s.add_argument("--path", action="store_true", help="print where the installed package keeps it")
    s.set_defaults(func=_cmd_schema)


def _add_run(sub) -> None:
    r = sub.add_parser("run", help="run a suite (one fresh process per cell)")
    r.add_argument("suite", help="suite YAML file, e.g. suites/default.yaml")
    r.add_argument("--out", default="results", help="parent folder of run directories (default: results)")
    r.add_argument("--dry-run", action="store_true", help="list the cells without running them")
    r.add_argument("--resume", metavar="RUN_DIR", help="finish the missing cells of an earlier run")
    r.add_argument("--force", action="store_true", help="resume even if the suite or environment changed")
    r.add_argument("--shard", metavar="K/N", help="run only the K-th of N deterministic shares of the cells")
    r.add_argument("--available-only", action="store_true",
                   help="run the cells whose weights and data are present; record the others as skipped")
    r.add_argument("--report", action="store_true", help="write an HTML report when the run ends")
    r.add_argument("--report-dir", default="reports", help="where --report writes (default: reports)")
    r.set_defaults(func=_cmd_run)


def _add_eval(sub) -> None:
    e = sub.add_parser("eval", help="accuracy of one model on one dataset (no suite, no latency)")
    e.add_argument("model")
    e.add_argument("dataset")
    e.add_argument("--weights", default=None, help="null (pretrained), 'random' or a path")
    e.add_argument("--root", default=None)
    e.add_argument("--split", default="validation")
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--device", default="cpu")
    e.add_argument("--precision", default="fp32")
    e.add_argument("--runtime", default="pytorch")
    e.add_argument("--batch-size", type=int, default=1)
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--upsample", default="bilinear", choices=("bilinear", "bicubic"))
    e.add_argument("--on-bad-sample", default="error", choices=("error", "skip"))
    e.add_argument("--profile", action="store_true", help="print where the time went (load, data, forward, ...)")
    e.set_defaults(func=_cmd_eval)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segbench", description="Benchmark and evaluation harness for "
                                "semantic segmentation: accuracy, latency and memory, with reports.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)

    g = sub.add_parser("merge", help="merge shard runs (or runs from several machines) into one run")
    g.add_argument("runs", nargs="+", metavar="RUN_DIR")
    g.add_argument("--out", required=True, help="the merged run directory to create")
    g.add_argument("--prefer", choices=("first", "last"), default=None,
                   help="which input wins when two hold different results for one cell (default: refuse)")
    g.add_argument("--allow-missing", action="store_true", help="merge even if some suite cells are absent")
    g.add_argument("--force", action="store_true", help="merge even if suites or environments differ")
    g.set_defaults(func=_cmd_merge)

    pr = sub.add_parser("profile", help="where each cell's time went: load, data wait, forward, postprocess, metric")
    pr.add_argument("run", metavar="RUN_DIR")
    pr.set_defaults(func=_cmd_profile)

    m = sub.add_parser("models", help="list the model registry")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_models)

    d = sub.add_parser("datasets", help="list the datasets, the layout each expects and whether it is found")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_datasets)

    _add_eval(sub)
    _add_schema(sub)

    _add_regression_tools(sub)
    try:
        from harness.report.commands import add_parsers
    except ImportError:  # report package not installed in this checkout
        add_parsers = None
    if add_parsers is not None:
        add_parsers(sub)
    return p


def _add_regression_tools(sub) -> None:
    """``segbench ab`` (interleaved A/B) and ``segbench history add|check|report``."""
    from harness.ab import add_parser as add_ab
    from harness.history.cli import add_parsers as add_history

    add_ab(sub)
    h = sub.add_parser("history", help="run history: record runs, find change points per series, chart them")
    add_history(h.add_subparsers(dest="history_command", required=True, metavar="COMMAND"))


def _sigterm(signum, frame):  # turn SIGTERM into the same clean stop as Ctrl-C
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``segbench`` console script and ``python -m harness``."""
    signal.signal(signal.SIGTERM, _sigterm)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SegbenchError as e:
        print(f"segbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segbench: interrupted; finished cells are kept (resume with `segbench run SUITE --resume RUN_DIR`)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
