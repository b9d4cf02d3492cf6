"""Paper tables: LaTeX booktabs, Markdown and CSV; best/second marks, grouping, CIs, escaping, the CLI."""

from __future__ import annotations

import argparse
import csv
import io
import math

import numpy as np
import pytest
from fixtures_results import make_cell, write_run

from harness.errors import ConfigError
from harness.report.commands import add_parsers
from harness.report.escape import latex_escape, markdown_escape
from harness.report.tables import mean_ci, render_table, t_quantile_975
from harness.results import load_run

HOSTILE = "<script>alert(1)</script>\"q'\\&%_$#{}~^|`*"


@pytest.fixture
def run(tmp_path):
    cells = [make_cell("dpt-large", family="dpt", miou=0.47, latency=300, seed=1),
             make_cell("segformer-b0", family="transformer", miou=0.37, latency=40, seed=2),
             make_cell("upernet-convnext-tiny", miou=0.45, latency=120, seed=3),
             make_cell("deeplabv3", miou=None, weights="random", latency=20, seed=4),
             make_cell("dpt-hybrid", family="dpt", status="oom")]
    return load_run(write_run(tmp_path / "base", cells))


def _md_rows(text: str) -> dict[str, list[str]]:
    out = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| ***"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            out[cells[0]] = cells
    return out


def test_markdown_marks_best_bold_and_second_underlined(run):
    text = render_table([run], "markdown", columns=["model", "mIoU", "latency_p50"])
    lines = text.splitlines()
    assert lines[0] == "| model | mIoU (%) | latency p50 (ms) |"
    assert lines[1] == "|:---|---:|---:|"
    rows = _md_rows(text)
    assert rows["dpt-large"][1] == "**47.0**" and rows["upernet-convnext-tiny"][1] == "<ins>45.0</ins>"
    assert rows["segformer-b0"][1] == "37.0"
    # latency: lower is better, the random-weights cell is fastest and has no accuracy
    assert rows["deeplabv3"][1] == "–" and rows["deeplabv3"][2].startswith("**")
    assert rows["segformer-b0"][2].startswith("<ins>")
    assert rows["dpt-hybrid"][1:] == ["oom", "oom"]  # a failed cell says so instead of a blank


def test_markdown_groups_families_in_order_and_has_a_caption(run):
    text = render_table([run], "markdown", columns=["model", "mIoU"])
    groups = [line for line in text.splitlines() if line.startswith("| ***")]
    assert [g.split("***")[1] for g in groups] == ["DPT", "Transformer", "CNN"]
    lines = text.splitlines()
    assert lines.index(groups[0]) < lines.index(next(x for x in lines if x.startswith("| dpt-large")))
    assert "Device: cpu; precision: fp32; protocol: whole+bilinear" in text.replace("\\", "")
    ungrouped = render_table([run], "markdown", columns=["model", "mIoU"], group="none")
    assert "***" not in ungrouped and len(_md_rows(ungrouped)) == len(_md_rows(text))


def test_latex_is_booktabs_grouped_with_midrules_and_marks(run):
    text = render_table([run], "latex", decimals=2, columns=["model", "precision", "mIoU", "latency_p50"])
    assert text.startswith("\\begin{table}") and "\\begin{tabular}{llrr}" in text
    assert text.count("\\toprule") == 1 and text.count("\\bottomrule") == 1
    assert text.count("\\midrule") == 3  # after the header, then between the three families
    assert "\\textbf{47.00}" in text and "\\underline{45.00}" in text
    assert "mIoU (\\%) & latency p50 (ms)" in text
    assert "\\caption{Device: cpu; precision: fp32; protocol: whole+bilinear" in text
    body = text.split("\\midrule", 1)[1]
    assert body.index("\\textit{DPT}") < body.index("\\textit{Transformer}") < body.index("\\textit{CNN}")
    assert "deeplabv3 & fp32 & -- &" in text


def test_csv_has_status_and_empty_missing_values(run):
    rows = list(csv.reader(io.StringIO(render_table([run], "csv", columns=["model", "mIoU", "latency_p50"]))))
    assert rows[0] == ["family", "status", "model", "mIoU (%)", "latency p50 (ms)"]
    by_model = {r[2]: r for r in rows[1:]}
    assert len(by_model) == 5
    assert by_model["dpt-large"][:4] == ["DPT", "ok", "dpt-large", "47.0"]
    assert by_model["dpt-hybrid"][1] == "oom" and by_model["dpt-hybrid"][3:] == ["", ""]
    assert by_model["deeplabv3"][3] == "" and float(by_model["deeplabv3"][4]) == pytest.approx(20, rel=0.05)


def test_decimals_and_column_aliases(run):
    text = render_table([run], "markdown", columns=["model", "mIoU", "latency", "params"], decimals=3)
    row = _md_rows(text)["dpt-large"]
    assert row[1] == "**47.000**"
    lat = run.cells["dpt-large__ade20k__cpu__fp32__b1"].latency.forward_ms["p50"]
    assert row[2] == f"{lat:.3f}"
    assert "params (M)" in text and "1.000" in row[3]


def test_miou_ci_from_the_cell(tmp_path):
    cell = make_cell("m", miou=0.5)
    cell["metrics"]["mIoU_ci"] = [0.45, 0.56]
    run = load_run(write_run(tmp_path / "ci", [cell]))
    assert _md_rows(render_table([run], "markdown", columns=["model", "mIoU"]))["m"][1] == "**50.0 ± 5.5**"
    latex = render_table([run], "latex", columns=["model", "mIoU"])
    assert "\\textbf{50.0 $\\pm$ 5.5}" in latex and "confidence interval" in latex
    rows = list(csv.reader(io.StringIO(render_table([run], "csv", columns=["model", "mIoU"]))))
    assert rows[0][-1] == "mIoU (%) ±95% CI" and rows[1][-2:] == ["50.0", "5.5"]


def test_repeated_runs_become_mean_and_t_interval(tmp_path):
    mious, lats = [0.40, 0.42, 0.44], [100.0, 110.0, 105.0]
    runs = [load_run(write_run(tmp_path / f"r{i}", [make_cell("m", miou=m, latency=lat, seed=i)]))
            for i, (m, lat) in enumerate(zip(mious, lats, strict=True))]
    text = render_table(runs, "markdown", columns=["model", "mIoU", "latency_p50"], decimals=2)
    rows = _md_rows(text)
    assert len(rows) == 2  # header + one merged row
    half = 4.303 * np.std(np.array(mious) * 100, ddof=1) / math.sqrt(3)
    assert rows["m"][1] == f"**{np.mean(mious) * 100:.2f} ± {half:.2f}**"
    p50s = [r.cells["m__ade20k__cpu__fp32__b1"].latency.forward_ms["p50"] for r in runs]
    mean, h = mean_ci(p50s)
    assert rows["m"][2] == f"**{mean:.2f} ± {h:.2f}**"


def test_repeats_inside_a_cell_give_a_latency_interval(tmp_path):
    cell = make_cell("m", latency=100)
    cell["repeats"] = [{"p50": 100.0, "mean": 100.5, "n": 20}, {"p50": 104.0, "mean": 104.2, "n": 20}]
    text = render_table([load_run(write_run(tmp_path / "r", [cell]))], "markdown", columns=["model", "latency_p50"])
    assert _md_rows(text)["m"][1] == f"**102.0 ± {12.706 * math.sqrt(8) / math.sqrt(2):.1f}**"


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed")
    for df in (1, 2, 5, 10, 29, 30):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)
    assert t_quantile_975(500) == pytest.approx(1.96)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_975(0)


def test_errors_name_the_option_and_the_allowed_values(run, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown column\(s\) speed; known: run, model"):
        render_table([run], "markdown", columns=["model", "speed"])
    with pytest.raises(ConfigError, match="'html' is not one of latex, markdown, csv"):
        render_table([run], "html")
    with pytest.raises(ConfigError, match="--decimals"):
        render_table([run], "markdown", decimals=-1)
    with pytest.raises(ConfigError, match="--group 'model'"):
        render_table([run], "markdown", group="model")
    empty = load_run(write_run(tmp_path / "empty", []))
    with pytest.raises(ConfigError, match="no cell result"):
        render_table([empty], "markdown")


def test_latex_escaping_of_every_special_character():
    assert latex_escape("a_b & 50% $x$ #1 {y} ~^\\") == (
        r"a\_b \& 50\% \$x\$ \#1 \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}")
    assert latex_escape("<b>|c") == r"\textless{}b\textgreater{}\textbar{}c"
    assert latex_escape("line\nbreak") == "line break"


def test_markdown_escaping():
    assert markdown_escape("a|b*c_d`e<script>") == r"a\|b\*c\_d\`e\<script\>"
    assert markdown_escape("x & y\n[z](u) ~s~") == r"x &amp; y \[z\](u) \~s\~"
    assert markdown_escape("back\\slash") == "back\\\\slash"


def test_hostile_names_are_escaped_in_latex_and_markdown(tmp_path):
    run = load_run(write_run(tmp_path / "h", [make_cell(HOSTILE, miou=0.5, dataset="d_1 & 2%")]))
    latex = render_table([run], "latex", columns=["model", "dataset", "mIoU"])
    row = next(line for line in latex.splitlines() if "alert" in line)
    assert row.startswith(r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}" + "\"q'"
                          r"\textbackslash{}\&\%\_\$\#\{\}\textasciitilde{}\textasciicircum{}\textbar{}`*")
    assert r"d\_1 \& 2\%" in row
    md = render_table([run], "markdown", columns=["model", "dataset", "mIoU"])
    row = next(line for line in md.splitlines() if "alert" in line)
    assert "<script>" not in md and row.count(" | ") == 2  # no extra column from the name's '|'
    assert row.startswith(r"| \<script\>alert(1)\</script\>" + "\"q'" + r"\\&amp;%\_$\#{}\~^\|\`\* | d\_1 &amp; 2% |")


def _parse(argv):
    parser = argparse.ArgumentParser(prog="segbench")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_table_command_writes_the_file(run, tmp_path, capsys):
    out = tmp_path / "t" / "table.tex"
    args = _parse(["table", str(run.path), "--format", "latex", "--columns", "model,mIoU", "--decimals", "2",
                   "--out", str(out)])
    assert args.func(args) == 0
    assert "\\toprule" in out.read_text() and "\\textbf{47.00}" in out.read_text()
    args = _parse(["table", str(run.path), "--group", "none", "--columns", "model, mIoU", "--format", "markdown"])
    assert args.func(args) == 0
    assert "| model | mIoU (%) |" in capsys.readouterr().out
