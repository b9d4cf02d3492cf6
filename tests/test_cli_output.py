"""Command-line output: human by default (summary first, aligned tables within 100 columns, colour only on a
terminal), ``--json`` with the full result (the content the JSON forms had before), ``--quiet`` for CI."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures_results import make_cell, write_run

from harness import cli_output as co
from harness.cli import main
from harness.results import load_run

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 100


@pytest.fixture(autouse=True)
def _progress_restored(monkeypatch):
    """``--quiet`` switches progress bars off for the process (and its children): restore them after each test."""
    for key in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(key, raising=False)
    yield
    import sys

    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.enable_progress_bar()  # enables huggingface_hub's too


def lines_of(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def assert_fits(text: str, what: str) -> None:
    wide = [line for line in lines_of(text) if len(line) > WIDTH]
    assert not wide, f"{what}: {len(wide)} line(s) over {WIDTH} columns, e.g. {wide[0]!r}"
    assert "\x1b[" not in text, f"{what}: colour codes in output that is not a terminal"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# --- the formatting primitives -------------------------------------------------------------------------

def test_truncate_split_header_and_wrap():
    assert co.truncate("abcdef", 4) == "abc…" and co.truncate("abc", 4) == "abc" and co.truncate("abc", 0) == ""
    assert co.split_header("latency p50 (ms)") == ("latency p50", "ms")
    assert co.split_header("GFLOPs") == ("GFLOPs", "") and co.split_header("Δ mIoU (pts)") == ("Δ mIoU", "pts")
    path = "/a/very/long/path/" + "x" * 120
    assert path in co.wrap(f"results: {path}", 40)  # a path is never cut


def test_render_table_aligns_and_fits_any_width():
    cols = [co.Column("name", min_width=6), co.Column("value", "ms", "right"), co.Column("note", min_width=4)]
    rows = [["a" * 80, "1.5", "n" * 90], ["short", "12345.0", "ok"]]
    for width in (40, 60, 100):
        lines = co.render_table(cols, rows, width)
        assert all(len(line) <= width for line in lines)
        assert lines[1].strip() == "ms"  # units on the second header line, under their column
        value_end = lines[0].index("value") + len("value")
        assert all(line[:value_end].endswith(("1.5", "12345.0", "value", "   ms")) for line in lines)
        assert "…" in lines[2]
    tiny = co.render_table([co.Column(f"c{i}", min_width=8) for i in range(20)], [["x" * 10] * 20], 50)
    assert all(len(line) <= 50 for line in tiny)  # too many columns: cut at the right edge


def test_grouped_table_and_marks():
    cols = [co.Column("check"), co.Column("value", align="right")]
    lines = co.grouped_table(cols, [("cell one", [["a", "1"], ["b", "2"]]), ("cell two", [["c", "3"]])], 60,
                             marks={(2, 1): ("bold",)})
    assert [line.strip() for line in lines] == ["check  value", "cell one", "a          1", "b          2",
                                                "cell two", "c          3"]
    coloured = co.grouped_table(cols, [("t", [["a", "1"], ["b", "2"]])], 60, co.Style(True), marks={(1, 1): ("bold",)})
    assert "\x1b[1m    2\x1b[0m" in coloured[-1] and co.visible_len(coloured[-1]) == len(lines[-1])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert co.colour_enabled(_Tty()) and not co.colour_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not co.colour_enabled(_Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not co.colour_enabled(_Tty())
    style = co.Style(True)
    assert style.verdict("regression").startswith("\x1b[1;31m") and style.verdict("no regression").startswith(
        "\x1b[1;32m") and style.verdict("could not compare").startswith("\x1b[1;33m")
    assert co.Style(False).verdict("regression") == "regression"


def test_terminal_width_caps_at_100(monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")
    assert co.output_width(_Tty()) == 100 and co.output_width(io.StringIO()) == 100
    monkeypatch.setenv("COLUMNS", "60")
    assert co.output_width(_Tty()) == 60


def test_to_json_is_strict():
    text = co.to_json({"a": math.nan, "b": [1.0, math.inf], "p": Path("x/y")})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "p": "x/y"} and "NaN" not in text


# --- registries and suites ------------------------------------------------------------------------------

def test_models_and_datasets_default_fit_and_json_is_the_registry(capsys):
    from harness.data import dataset_infos
    from harness.models import model_infos

    for command, rows in (("models", model_infos()), ("datasets", dataset_infos())):
        code, out, _ = run_cli(capsys, command)
        assert code == 0
        assert_fits(out, command)
        assert out.startswith(f"{len(rows)} {command}, ")
        for r in rows:
            assert r["name"][:27] in out  # every entry has its row (long names cut with an ellipsis)
        code, out, _ = run_cli(capsys, command, "--json")
        assert code == 0 and json.loads(out) == json.loads(json.dumps(rows, default=str))
        assert run_cli(capsys, command, "--quiet") == (0, "", "")


SUITES = sorted((ROOT / "suites").glob("*.yaml"))


@pytest.mark.parametrize("suite", SUITES, ids=[p.name for p in SUITES])
def test_dry_run_lists_every_cell_within_100_columns(capsys, suite):
    from harness.suite import load_suite

    cells = load_suite(suite).cells()
    code, out, _ = run_cli(capsys, "run", suite, "--dry-run")
    assert code == 0
    assert_fits(out, f"dry-run {suite.name}")
    rows = lines_of(out)[2:2 + len(cells)]  # after the count and the header
    assert out.startswith(f"{len(cells)} cell") and [r.split()[0] for r in rows] == [str(i + 1) for i in range(len(cells))]
    code, out, _ = run_cli(capsys, "run", suite, "--dry-run", "--json")
    assert [c["cell_id"] for c in json.loads(out)] == [c.cell_id for c in cells]
    assert json.loads(out)[0] == json.loads(json.dumps(cells[0].to_dict()))
    assert run_cli(capsys, "run", suite, "--dry-run", "-q") == (0, "", "")


# --- results: profile, table, run summary ---------------------------------------------------------------

BASELINES = sorted(p for p in (ROOT / "results" / "baselines").iterdir() if (p / "run.json").exists())


@pytest.mark.parametrize("run", BASELINES, ids=[p.name for p in BASELINES])
def test_profile_and_table_of_the_committed_baselines_fit(capsys, run):
    code, out, _ = run_cli(capsys, "profile", run)
    assert code == 0 and "accuracy loop" in out or "model load" in out
    assert_fits(out, "profile")
    code, out, _ = run_cli(capsys, "profile", run, "--json")
    cells = load_run(run).cells
    assert code == 0 and {c["cell_id"] for c in json.loads(out)} == set(cells)
    code, out, _ = run_cli(capsys, "table", run)
    assert code == 0
    assert_fits(out, "table")
    assert out.splitlines()[0].split()[:3] == ["model", "precision", "mIoU"]
    code, out, _ = run_cli(capsys, "table", run, "--json")
    doc = json.loads(out)
    assert len(doc["rows"]) == len(cells) and doc["columns"][2] == {"key": "mIoU", "header": "mIoU (%)"}


def test_table_quiet_still_writes_the_file(capsys, tmp_path):
    out = tmp_path / "t.md"
    assert run_cli(capsys, "table", BASELINES[0], "--out", out, "--quiet") == (0, "", "")
    assert out.read_text().startswith("| model | precision |")


def _runs(tmp_path):
    cells = [make_cell("dpt-large-ade20k-with-a-long-label", family="dpt", miou=0.4712, latency=300, seed=1),
             make_cell("segformer-b0", family="transformer", miou=0.37, latency=40, seed=2, precision="bf16"),
             make_cell("upernet-convnext-tiny", miou=0.45, latency=120, seed=3, status="error",
                       error="RuntimeError: " + "a long message " * 30),
             make_cell("deeplabv3", miou=None, weights="random", latency=20, seed=4)]
    return write_run(tmp_path / "run-20260101-000000", cells)


def test_run_summary_fits_and_names_failures(tmp_path):
    from harness.cli_views import run_lines

    run_dir = _runs(tmp_path)
    run = load_run(run_dir)
    doc = {"run_dir": "results/run-20260101-000000", "exit_code": 1, "interrupted": False,
           "statuses": {c.cell_id: c.status for c in run.cells.values()}, "failed": ["upernet"], "report": None}
    text = "\n".join(run_lines(doc, run, co.Style(), WIDTH))
    assert_fits(text, "run summary")
    first, second = text.splitlines()[:2]
    assert first.startswith("failed  4 cells: 3 ok, 1 error") and second == "results: results/run-20260101-000000"
    assert "mIoU" in text and "latency p50" in text and "47.1" in text and "failed (1):" in text


# --- compare, history check, ab -------------------------------------------------------------------------

def test_compare_human_json_markdown_and_quiet(capsys, tmp_path):
    from harness.report.compare import compare_runs

    base = write_run(tmp_path / "base", [make_cell("dpt-large", family="dpt", miou=0.47, latency=300, seed=1),
                                         make_cell("segformer-b0", miou=0.37, latency=40, seed=2)])
    cur = write_run(tmp_path / "cur", [make_cell("dpt-large", family="dpt", miou=0.40, latency=390, seed=3),
                                       make_cell("segformer-b0", miou=0.37, latency=40, seed=4),
                                       make_cell("new-model", latency=10)])
    code, out, _ = run_cli(capsys, "compare", base, cur)
    assert code == 1 and out.startswith("regression  baseline base vs current cur: 2 paired")
    assert_fits(out, "compare")
    assert "dpt-large · ade20k · cpu · fp32 · b1" in out and "only in the current run (1):" in out
    code_j, out_j, _ = run_cli(capsys, "compare", base, cur, "--json")
    code_f, out_f, _ = run_cli(capsys, "compare", base, cur, "--format", "json")
    cmp = compare_runs(load_run(base), load_run(cur))
    today = {"baseline": {"run_id": "base", "path": str(base)}, "current": {"run_id": "cur", "path": str(cur)},
             **cmp.to_json()}  # what `compare --format json` printed before
    assert code_j == code_f == 1 and json.loads(out_j) == json.loads(out_f) == json.loads(json.dumps(today))
    assert run_cli(capsys, "compare", base, cur, "--format", "markdown")[1].startswith("## segbench compare: ❌")
    summary = tmp_path / "summary.md"
    code, out, err = run_cli(capsys, "compare", base, cur, "--out", summary, "--quiet")
    assert (code, out, err) == (1, "", "") and summary.read_text().startswith("## segbench compare: ❌ regression")
    code, out, err = run_cli(capsys, "compare", base, cur, "--out", summary)
    assert out == "" and "regression" in err
    code, out, err = run_cli(capsys, "compare", base, tmp_path / "missing")
    assert code == 2 and out.startswith("could not compare") and "missing" in err


def test_history_check_view_fits(capsys, tmp_path):
    from harness.history.check import check_series
    from harness.history.store import Series
    from harness.verdict_views import history_lines

    pytest.importorskip("signal_processing_algorithms", reason="scripts/install-history.sh installs it")
    n = 30
    values = np.r_[np.full(20, 100.0), np.full(10, 125.0)] + np.random.default_rng(0).normal(0, 0.5, n)
    series = [Series("Intel Xeon Platinum 8480+ x2 · NVIDIA H200 x1", f"k{q}",
                     "dpt-large-ade20k-with-a-long-label · ade20k · cuda · bf16 cast · b16", q,
                     values * (0.01 if q == "mIoU" else 1), [f"{i:04d}abcdef" + "0" * 30 for i in range(n)],
                     ["main"] * n,
                     [f"2026-01-{1 + i % 28:02d}" for i in range(n)], [f"r{i}" for i in range(n)], [()] * n)
              for q in ("latency_p50", "mIoU")]
    result = check_series(series)
    doc = result.to_json()
    text = "\n".join(history_lines(doc, co.Style(), WIDTH))
    assert_fits(text, "history check")
    assert text.startswith("regression  2 series, 60 points") and "0019abcdef..0020abcdef" in text
    assert json.loads(co.to_json(doc)) == json.loads(json.dumps(result.to_json()))


def test_ab_view_fits():
    from harness.ab import ABResult, CellAB, decide
    from harness.verdict_views import ab_lines

    rng = np.random.default_rng(0)
    res = ABResult("A: python -m harness run suites/ab-cpu.yaml --out {out}", "B: the same at HEAD", "latency_p50",
                   {"rounds": 10, "max_rounds": 10, "warmup_rounds": 1, "threshold": 1.05, "alpha": 0.01,
                    "confidence": 0.95, "strict": False, "work_dir": "/tmp/x"}, order=["AB", "BA"] * 5)
    for name, shift in (("deeplabv3-mobilenetv2 · synthetic · cpu · fp32 · b1", 1.15), ("segformer-b0 · x", 1.0)):
        a = list(100 + rng.normal(0, 1, 10))
        b = [v * shift for v in a]
        res.cells.append(CellAB(name, a, b, decide([y / x for x, y in zip(a, b, strict=True)])))
    res.round_flags = {"A": [["busy-host"]] + [[]] * 9, "B": [[]] * 10}
    text = "\n".join(ab_lines(res.to_json(), co.Style(), WIDTH))
    assert_fits(text, "ab")
    assert text.startswith("regression  latency_p50 of B/A over 10 interleaved round(s)")
    assert "flagged rounds: A 1, B 0 of 10" in text and "1.150" in text


# --- eval -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_eval(tmp_path_factory):
    from layouts import write_ade20k
    from tiny_models import save_tiny_segformer

    tmp = tmp_path_factory.mktemp("eval")
    return save_tiny_segformer(tmp / "segformer"), write_ade20k(tmp / "data", n=20, sizes=[(32, 40)])


def test_eval_summary_first_then_the_classes_present(capsys, tiny_eval):
    model, data = tiny_eval
    code, out, _ = run_cli(capsys, "eval", model, "ade20k", "--root", data)
    assert code == 0
    assert_fits(out, "eval")
    lines = lines_of(out)
    summary = next(line for line in lines if line.startswith("mIoU "))
    assert "aAcc " in summary and "mAcc " in summary and "(95% CI " in summary  # 20 images: an interval
    assert "images: 20   skipped: 0" in out
    code, raw, _ = run_cli(capsys, "eval", model, "ade20k", "--root", data, "--json")
    doc = json.loads(raw)
    iou = doc["metrics"]["IoU"]
    present = [i for i, v in enumerate(iou) if v is not None]
    assert f"per class: {len(present)} of 150 classes present" in out
    table = lines[lines.index(next(line for line in lines if line.startswith("per class"))) + 3:]
    assert [int(row.split()[0]) for row in table] == present  # one row per class present, none for the others
    first = table[0].split()
    assert float(first[-5]) == pytest.approx(100 * iou[present[0]], abs=0.051)
    assert run_cli(capsys, "eval", model, "ade20k", "--root", data, "--limit", "1", "-q") == (0, "", "")


def test_eval_json_is_the_content_it_printed_before(capsys, tiny_eval, tmp_path):
    """``eval --json`` equals the dict ``eval`` printed before (NaN written as null, strict JSON)."""
    from harness.cell import run_cell
    from harness.suite import DEFAULT_MEASURE, DEFAULT_PROTOCOL, Cell

    model, data = tiny_eval
    code, raw, _ = run_cli(capsys, "eval", model, "ade20k", "--root", data, "--limit", "3", "--json")
    measure = dict(DEFAULT_MEASURE, latency=False, samples=0, num_workers=0, on_bad_sample="error")
    cell = Cell(model=str(model), weights=None, dataset="ade20k", dataset_root=str(data), dataset_split="validation",
                dataset_limit=3, dataset_options={}, device="cpu", precision="fp32", amp="autocast", batch_size=1,
                runtime="pytorch", variant={}, protocol=dict(DEFAULT_PROTOCOL, upsample="bilinear"), measure=measure)
    result = run_cell(cell, tmp_path)
    d = result.provenance.data or {}
    before = {"model": result.identity.model, "weights": result.provenance.weights, "dataset": result.identity.dataset,
              "metrics": result.accuracy.metrics, "metrics_note": result.accuracy.note,
              "data": {k: d.get(k) for k in ("num_samples", "digest", "skipped")}}
    assert code == 0 and json.loads(raw) == json.loads(co.to_json(before))
    assert "NaN" not in raw and "mIoU_ci_note" in json.loads(raw)["metrics"]


def test_every_command_has_a_help_page():
    """``segbench COMMAND --help`` renders for every command (argparse formats help texts with %)."""
    import argparse

    from harness.cli import build_parser

    def walk(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    pages = [p.format_help() for p in walk(build_parser())]
    assert len(pages) > 15 and all("usage:" in page for page in pages)
    printing = ("run", "eval", "models", "datasets", "profile", "table", "compare", "merge", "init", "ab")
    for page in pages:
        name = page.split()[2] if page.startswith("usage: segbench ") else ""
        if name in printing or page.startswith("usage: segbench history check"):
            assert "--json" in page and "--quiet" in page, name


def test_init_and_merge_output_fit(capsys, tmp_path, monkeypatch):
    from layouts import write_ade20k, write_voc

    monkeypatch.chdir(tmp_path)
    write_ade20k(Path("data"), n=2)
    write_voc(Path("data") / "voc", n=2)
    code, out, _ = run_cli(capsys, "init", "--data", "data", "--models", "segformer-b0", "--out", "suites/mine.yaml")
    assert code == 0 and out.startswith("wrote suites/mine.yaml: 1 model(s) x 2 dataset(s), 1 cell(s)")
    assert_fits(out, "init")
    assert "data/ADEChallengeData2016" in out and "data/voc/VOCdevkit/VOC2012" in out
    run = write_run(Path("results") / "a", [make_cell("dpt-large", family="dpt")])
    code, out, _ = run_cli(capsys, "merge", run, "--out", "results/merged")
    assert code == 0 and out.startswith("merged 1 cells from 1 runs into results/merged")
    assert_fits(out, "merge")
    code, out, _ = run_cli(capsys, "merge", run, "--out", "results/merged2", "--json")
    assert json.loads(out)["cells"] == 1
