"""The ``segbench`` command line: run | report | table | compare | export | merge | models | datasets | eval |
profile | schema | init | ab | history (docs/CLI.md).

Every command that prints results prints a human summary by default (:mod:`harness.cli_output`,
:mod:`harness.cli_views`), the full result with ``--json``, and nothing but errors with ``--quiet``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from harness.cli_output import add_output_options
from harness.errors import SegbenchError


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.cli_output import emit, mode
    from harness.cli_views import dry_run_lines
    from harness.runner import dry_run, run_suite

    if args.dry_run:
        from harness.suite import load_suite

        cells = dry_run(args.suite, shard=args.shard)
        skips = load_suite(args.suite).task_skips()
        emit(args, [c.to_dict() for c in cells],
             lambda style, width: dry_run_lines(cells, args.suite, style, width, skips))
        return 0
    summary = run_suite(args.suite, out_dir=args.out, resume=args.resume, force=args.force,
                        shard=args.shard, argv=["segbench", *sys.argv[1:]], available_only=args.available_only,
                        echo=not args.quiet)
    if summary.interrupted:
        print(f"segbench: interrupted; finished cells are kept. Resume with: segbench run {args.suite} "
              f"--resume {summary.run_dir}", file=sys.stderr)
    report = None
    if args.report and not summary.interrupted:
        from harness.report.html import write_report

        report = Path(args.report_dir) / f"{summary.run_dir.name}.html"
        write_report([summary.run_dir], report)
    doc = {"run_dir": str(summary.run_dir), "exit_code": summary.exit_code, "interrupted": summary.interrupted,
           "statuses": summary.statuses, "failed": summary.failed, "report": str(report) if report else None}
    emit(args, doc, lambda style, width: _run_lines(doc, summary.run_dir, style, width))
    if summary.failed and mode(args) != "human":
        print(f"segbench: {len(summary.failed)} cell(s) failed: {', '.join(summary.failed)}", file=sys.stderr)
    return summary.exit_code


def _run_lines(doc: dict, run_dir: Path, style, width: int) -> list[str]:
    from harness.cli_views import run_lines
    from harness.results import load_run

    try:
        run = load_run(run_dir)
    except SegbenchError:  # an interrupted run may have no cell yet
        run = None
    return run_lines(doc, run, style, width)


def _cmd_models(args: argparse.Namespace) -> int:
    from harness.cli_output import emit
    from harness.cli_views import MODEL_FIELDS, registry_lines
    from harness.models import model_infos

    rows = model_infos()
    emit(args, rows, lambda style, width: registry_lines(rows, MODEL_FIELDS, style, width, "models"))
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from harness.cli_output import emit
    from harness.cli_views import DATASET_FIELDS, registry_lines
    from harness.data import dataset_infos

    rows = dataset_infos()
    emit(args, rows, lambda style, width: registry_lines(rows, DATASET_FIELDS, style, width, "datasets"))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """Accuracy of one model on one dataset, in this process: a summary and a per-class table, or JSON."""
    import tempfile

    from harness.cell import run_cell
    from harness.cli_output import emit
    from harness.cli_views import eval_lines
    from harness.suite import DEFAULT_MEASURE, DEFAULT_PROTOCOL, Cell
    from harness.tasks.assign import pair_task, runtime_for_task

    measure = dict(DEFAULT_MEASURE, latency=False, samples=0, num_workers=args.workers,
                   on_bad_sample=args.on_bad_sample)
    task, reason = pair_task(args.model, args.task, args.dataset, {})
    if reason:
        print(f"segbench eval: {reason}", file=sys.stderr)
        return 2
    protocol = dict(DEFAULT_PROTOCOL, upsample=args.upsample) if task == "segmentation" else {"mode": "whole"}
    cell = Cell(model=args.model, weights=args.weights, dataset=args.dataset, dataset_root=args.root,
                dataset_split=args.split, dataset_limit=args.limit, dataset_options={}, device=args.device,
                precision=args.precision, amp="autocast", batch_size=args.batch_size,
                runtime=runtime_for_task(args.model, args.runtime, task), variant={}, protocol=protocol,
                measure=measure, task=task)
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
    emit(args, out, lambda style, width: eval_lines(out, result.provenance.class_names, result.identity.task,
                                                    style, width))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from harness.cli_output import bullet_list, emit
    from harness.merge import merge_runs

    rep = merge_runs(args.runs, args.out, prefer=args.prefer, allow_missing=args.allow_missing, force=args.force)
    doc = {**asdict(rep), "out_dir": str(rep.out_dir), "runs": list(args.runs)}

    def human(style, width):
        return ([f"merged {rep.cells} cells from {len(args.runs)} runs into {rep.out_dir}"]
                + bullet_list("duplicate cells resolved", sorted(set(rep.duplicates)), width, 10, style)
                + bullet_list("cells missing", rep.missing, width, 10, style))

    emit(args, doc, human)
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from harness.cli_output import emit
    from harness.cli_views import profile_doc, profile_lines
    from harness.results import load_run

    cells = list(load_run(args.run).cells.values())
    emit(args, profile_doc(cells), lambda style, width: profile_lines(cells, style, width))
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


def _cmd_init(args: argparse.Namespace) -> int:
    """A commented starter suite for the given models and data folders (refuses to overwrite)."""
    from harness.cli_output import Column as Col
    from harness.cli_output import emit, render_table, wrap
    from harness.init_suite import write_starter

    doc = write_starter(args.out, args.models, args.data, force=args.force)

    def human(style, width):
        rows = [[d["name"], d["root"] or "-", d["split"] or "-", str(d["samples"] or "-")] for d in doc["datasets"]]
        head = (f"wrote {doc['path']}: {len(doc['models'])} model(s) x {len(doc['datasets'])} dataset(s), "
                f"{doc['cells']} cell(s)")
        return ([style.bold(line) for line in wrap(head, width)] + [""]
                + render_table([Col("dataset"), Col("root", min_width=20), Col("split"), Col("samples", align="right")],
                               rows, width, style)
                + ["", f"next: segbench run {doc['path']} --dry-run"])

    emit(args, doc, human)
    return 0


def _add_init(sub) -> None:
    from harness.init_suite import DEFAULT_OUT

    i = sub.add_parser("init", help="write a commented starter suite for your models and data folders")
    i.add_argument("--models", nargs="+", metavar="MODEL",
                   help="registry names, hub ids or paths (default: the registry models found locally)")
    i.add_argument("--data", nargs="+", metavar="DIR",
                   help="data folders: known layouts are found in them (default: synthetic images)")
    i.add_argument("--out", default=DEFAULT_OUT, help=f"the suite file to write (default: {DEFAULT_OUT})")
    i.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_output_options(i)
    i.set_defaults(func=_cmd_init)


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
    add_output_options(r)
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
    e.add_argument("--task", default=None, choices=("segmentation", "depth"),
                   help="the model's task (default: from the model's registry or config, else the dataset's)")
    e.add_argument("--batch-size", type=int, default=1)
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--upsample", default="bilinear", choices=("bilinear", "bicubic"))
    e.add_argument("--on-bad-sample", default="error", choices=("error", "skip"))
    e.add_argument("--profile", action="store_true", help="print where the time went (load, data, forward, ...)")
    add_output_options(e)
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
    add_output_options(g)
    g.set_defaults(func=_cmd_merge)

    pr = sub.add_parser("profile", help="where each cell's time went: load, data wait, forward, postprocess, metric")
    pr.add_argument("run", metavar="RUN_DIR")
    add_output_options(pr)
    pr.set_defaults(func=_cmd_profile)

    m = sub.add_parser("models", help="list the model registry")
    add_output_options(m)
    m.set_defaults(func=_cmd_models)

    d = sub.add_parser("datasets", help="list the datasets, the layout each expects and whether it is found")
    add_output_options(d)
    d.set_defaults(func=_cmd_datasets)

    _add_eval(sub)
    _add_schema(sub)
    _add_init(sub)

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
    if getattr(args, "quiet", False):
        from harness.cli_output import silence_progress

        silence_progress()
    try:
        return int(args.func(args) or 0)
    except SegbenchError as e:
        print(f"segbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segbench: interrupted; finished cells are kept (resume with `segbench run SUITE --resume RUN_DIR`)",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `segbench models | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
