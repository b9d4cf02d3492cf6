"""The HTML report without a browser: content, reasons for missing values, charts, overlays, safety."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from fixtures_results import make_cell, write_run, write_samples
from PIL import Image

from harness.report import plots
from harness.report.commands import add_parsers
from harness.report.html import render, write_report
from harness.report.qualitative import ade20k_palette, generated_palette, overlay, palette_for, resolve_inside
from harness.results import load_run

pytest.importorskip("plotly", reason="plotly is not installed (pip install 'segbench[report]')")
FAKE_PLOTLY = "/* plotly.js stand-in */ window.Plotly = {newPlot: function () {}};"


class TableParser(HTMLParser):
    """Collects the headers and the rows of ``<table id="cells">`` as (attrs, [(text, attrs), ...])."""

    def __init__(self):
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[tuple[dict, list[tuple[str, dict]]]] = []
        self._in_table = False
        self._cell: tuple[list[str], dict] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "cells":
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append((a, []))
        elif self._in_table and tag in ("td", "th"):
            self._cell = ([], a)

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif self._in_table and tag in ("td", "th") and self._cell:
            text = "".join(self._cell[0])
            if tag == "th":
                self.headers.append(text)
            else:
                self.rows[-1][1].append((text, self._cell[1]))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0].append(data)


def parse_table(page: str) -> tuple[list[str], list[dict]]:
    p = TableParser()
    p.feed(page)
    rows = []
    for attrs, cells in p.rows:
        if "group" in (attrs.get("class") or ""):
            rows.append({"group": cells[0][0]})
        elif cells:
            rows.append({"status": attrs.get("data-status"),
                         **{h: {"text": t, "class": a.get("class", ""), "title": a.get("title"), "v": a.get("data-v")}
                            for h, (t, a) in zip(p.headers, cells, strict=True)}})
    return p.headers, rows


def specs(page: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r'<script type="application/json" id="spec\d+">(.*?)</script>', page)]


@pytest.fixture
def run(tmp_path):
    cells = [make_cell("dpt-large", family="dpt", miou=0.47, latency=300, seed=1),
             make_cell("dpt-large", "bf16", family="dpt", miou=0.468, latency=180, seed=5),
             make_cell("segformer-b0", family="transformer", miou=0.37, latency=40, seed=2, memory=500.0),
             make_cell("upernet-convnext-tiny", miou=0.45, latency=120, seed=3),
             make_cell("deeplabv3", miou=None, weights="random", latency=20, seed=4),
             make_cell("dpt-hybrid", family="dpt", status="oom", error="torch.OutOfMemoryError: CUDA out of memory")]
    return write_run(tmp_path / "run-1", cells, meta={"env": {"torch": "2.13.0", "cpu": "Test CPU",
                                                              "exotic_key": {"nested": [1, 2]}}})


def test_table_rows_grouped_by_family_with_units_and_best_marks(run):
    page = render([load_run(run)], FAKE_PLOTLY)
    headers, rows = parse_table(page)
    for h in ("model", "weights", "dataset", "device", "precision", "batch", "runtime", "protocol", "mIoU (%)",
              "aAcc (%)", "mAcc (%)", "latency p50 (ms)", "latency p90 (ms)", "throughput (img/s)",
              "GPU peak alloc. (MiB)", "host peak RSS (MiB)", "params (M)", "GFLOPs"):
        assert h in headers
    assert "published mIoU (%)" not in headers and "run" not in headers  # no reference, one run
    assert [r["group"] for r in rows if "group" in r] == ["DPT", "Transformer", "CNN"]
    cells = [r for r in rows if "group" not in r]
    assert len(cells) == 6 and page.count('<tr data-status="ok">') == 5
    best_miou = [r["model"]["text"] for r in cells if "best" in r["mIoU (%)"]["class"]]
    best_lat = [r["model"]["text"] for r in cells if "best" in r["latency p50 (ms)"]["class"]]
    best_rss = [r["model"]["text"] for r in cells if "best" in r["host peak RSS (MiB)"]["class"]]
    assert best_miou == ["dpt-large"] and best_lat == ["deeplabv3"] and best_rss == ["segformer-b0"]
    fp32 = next(r for r in cells if r["model"]["text"] == "dpt-large" and r["precision"]["text"] == "fp32")
    assert fp32["mIoU (%)"]["text"] == "47.0" and float(fp32["mIoU (%)"]["v"]) == pytest.approx(0.47)
    bf16 = next(r for r in cells if r["precision"]["text"] == "bf16 (autocast)")
    assert bf16["model"]["text"] == "dpt-large"


def test_missing_values_say_why(run):
    page = render([load_run(run)], FAKE_PLOTLY)
    _, rows = parse_table(page)
    cells = {r["model"]["text"]: r for r in rows if "group" not in r}
    rnd = cells["deeplabv3"]
    assert rnd["mIoU (%)"]["text"] == "random weights" and "missing" in rnd["mIoU (%)"]["class"]
    assert rnd["mIoU (%)"]["v"] == "" and rnd["latency p50 (ms)"]["v"] != ""
    oom = cells["dpt-hybrid [oom]"]
    assert oom["latency p50 (ms)"]["text"] == "oom" and "OutOfMemoryError" in oom["latency p50 (ms)"]["title"]
    assert cells["dpt-large"]["GPU peak alloc. (MiB)"]["text"] == "not CUDA"
    assert "accuracy needs real weights and data; see README 'Measuring accuracy'" in page.replace("&#x27;", "'")
    assert "1 cell(s) did not finish" in page


def test_published_reference_adds_columns_and_delta(tmp_path):
    cell = make_cell("dpt-large", family="dpt", miou=0.47)
    cell["published"] = {"mIoU": 0.4763, "source": "DPT paper, Table 2"}
    page = render([load_run(write_run(tmp_path / "p", [cell, make_cell("other", miou=0.3)]))], FAKE_PLOTLY)
    headers, rows = parse_table(page)
    assert "published mIoU (%)" in headers and "Δ mIoU (pts)" in headers
    dpt = next(r for r in rows if r.get("model", {}).get("text") == "dpt-large")
    assert dpt["published mIoU (%)"]["text"] == "47.6" and dpt["published mIoU (%)"]["title"] == "source: DPT paper, Table 2"
    assert float(dpt["Δ mIoU (pts)"]["v"]) == pytest.approx(-0.63)
    other = next(r for r in rows if r.get("model", {}).get("text") == "other")
    assert other["published mIoU (%)"]["text"] == "no ref."


def test_quality_flags_column_appears_only_for_flagged_measurements(tmp_path):
    quiet = [make_cell("a", miou=0.4), make_cell("b", miou=0.3)]
    headers, _ = parse_table(render([load_run(write_run(tmp_path / "q", quiet))], FAKE_PLOTLY))
    assert "quality flags" not in headers
    busy = make_cell("b", miou=0.3, quality={"wall_s": 1.0, "cpu_count": 2, "other_cpu_s": 1.5, "other_cores": 1.5,
                                              "other_share": 0.75, "latency": {"n": 20, "cv": 0.3}})
    headers, rows = parse_table(render([load_run(write_run(tmp_path / "b", [quiet[0], busy]))], FAKE_PLOTLY))
    flagged = next(r for r in rows if r.get("model", {}).get("text") == "b")
    assert flagged["quality flags"]["text"] == "busy-host, unstable"
    assert "other processes used 1.50 core(s)" in flagged["quality flags"]["title"]


def test_page_is_self_contained_and_offline(run, tmp_path):
    out = write_report([run], tmp_path / "out" / "r.html")
    page = out.read_text()
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs()[:2000] in page  # plotly.js inlined from the installed package
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=[\"']?(https?:)?//", page)
    assert "<link" not in page and "cdn.plot.ly" not in re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not list(out.parent.glob("*.tmp")) and not list(out.parent.glob(".*.tmp"))


def test_environment_and_provenance_show_every_key(run):
    page = render([load_run(run)], FAKE_PLOTLY)
    prov = page[page.index('id=provenance'):]
    for key in ("torch", "cpu", "exotic_key"):
        assert f"<dt>{key}</dt>" in prov
    assert "{&quot;nested&quot;: [1, 2]}" in prov
    assert "org/dpt-large" in prov and "&quot;source&quot;: &quot;random&quot;" in prov
    assert "digest (sha256)" in prov and "0" * 64 in prov
    assert "segbench run suites/fixture.yaml" in prov


def test_charts(run):
    page = render([load_run(run)], FAKE_PLOTLY)
    titles = [s["layout"]["title"]["text"] for s in specs(page)]
    assert titles[:3] == ["Accuracy vs latency", "Latency p50 by model and precision", "Memory by model and precision"]
    assert "Speed-up over fp32 (fp32 latency p50 / latency p50)" in titles
    assert any(t.startswith("Per-class IoU on ade20k") for t in titles)
    assert "Throughput vs batch size" not in titles  # one batch size only
    acc = specs(page)[0]
    xs = [x for trace in acc["data"] if trace["name"] != "Pareto front" for x in trace["x"]]
    assert len(xs) == 4  # random weights and the oom cell have no accuracy
    speed = next(s for s in specs(page) if s["layout"]["title"]["text"].startswith("Speed-up"))
    rows = {c.identity.precision: c.latency.forward_ms["p50"] for c in load_run(run).cells.values()
            if c.identity.model == "dpt-large"}
    assert speed["data"][0]["y"][0] == pytest.approx(rows["fp32"] / rows["bf16"])
    heat = next(s for s in specs(page) if s["data"][0]["type"] == "heatmap")
    assert heat["data"][0]["x"] == ["a", "b", "c"] and len(heat["data"][0]["z"]) == 4  # ok cells with IoU


def test_throughput_chart_with_a_batch_sweep(tmp_path):
    cells = [make_cell("m", batch_size=b, latency=10 * b ** 0.7, seed=b) for b in (1, 2, 4)]
    page = render([load_run(write_run(tmp_path / "s", cells))], FAKE_PLOTLY)
    spec = next(s for s in specs(page) if s["layout"]["title"]["text"] == "Throughput vs batch size")
    assert spec["data"][0]["x"] == [1, 2, 4] and spec["data"][0]["y"][0] < spec["data"][0]["y"][2]


def test_pareto_front():
    pts = [(10, 30), (20, 40), (15, 20), (30, 39), (40, 50), (20, 35), (5, 10)]
    assert plots.pareto_front(pts) == [(5, 10), (10, 30), (20, 40), (40, 50)]
    assert plots.pareto_front([]) == []


def test_no_charts_and_no_crash_when_every_cell_failed(tmp_path):
    page = render([load_run(write_run(tmp_path / "f", [make_cell("x", status="error"),
                                                       make_cell("y", status="timeout")]))], FAKE_PLOTLY)
    assert "No chart: no cell finished." in page and parse_table(page)[1][1]["latency p50 (ms)"]["text"] == "error"


def test_several_runs_show_a_run_column(run, tmp_path):
    other = write_run(tmp_path / "run-2", [make_cell("dpt-large", family="dpt", miou=0.46, latency=290, seed=8)])
    page = render([load_run(run), load_run(other)], FAKE_PLOTLY)
    headers, rows = parse_table(page)
    assert headers[0] == "run" and {r["run"]["text"] for r in rows if "run" in r} == {"run-1", "run-2"}
    assert "2 run(s), 7 cell(s)" in page


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_qualitative_overlays_are_blended_at_half(tmp_path):
    cell = make_cell("m", dataset="synthetic", class_names=["a", "b", "c"])
    cell["palette"] = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    run_dir = tmp_path / "q"
    cell["samples"] = write_samples(run_dir, cell, ["s1"], size=(20, 30))
    write_run(run_dir, [cell])
    page = render([load_run(run_dir)], FAKE_PLOTLY)
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', page)
    assert len(uris) == 3  # input, ground truth, one prediction
    image = _decode(uris[0])
    truth, pred = _decode(uris[1]), _decode(uris[2])
    label = np.asarray(Image.open(run_dir / cell["samples"][0]["label"]))
    pal = np.array(cell["palette"], dtype=np.float64)
    valid = label != 255
    expected = np.rint(0.5 * image[valid] + 0.5 * pal[label[valid]])
    assert np.abs(truth[valid].astype(int) - expected).max() <= 1
    assert (truth[~valid] == image[~valid]).all()  # ignore pixels keep the input
    pred_label = np.asarray(Image.open(run_dir / cell["samples"][0]["pred"]))
    assert np.abs(pred.astype(int) - np.rint(0.5 * image + 0.5 * pal[pred_label])).max() <= 1
    assert "<figcaption>m · fp32</figcaption>" in page


def _result(**flat):
    """A CellResult from schema-1 keys (dataset, class_names, palette)."""
    from harness.cell_result import CellResult
    from harness.migrate import migrate

    return CellResult.from_dict(migrate({"schema_version": 1, "cell_id": "c", "status": "ok", **flat}))


def test_palettes():
    ade = ade20k_palette()
    assert ade.shape == (150, 3) and ade[0].tolist() == [120, 120, 120] and len({tuple(c) for c in ade}) >= 140
    assert (palette_for(_result(dataset="ade20k", class_names=["x"] * 150)) == ade).all()
    assert palette_for(_result(dataset="ade20k", palette=[[1, 2, 3]])).tolist() == [[1, 2, 3]]
    gen = palette_for(_result(dataset="voc", class_names=list("abcdefghij")))
    assert gen.shape == (10, 3) and (gen == generated_palette(10)).all() and len({tuple(c) for c in gen}) == 10
    bad = palette_for(_result(dataset="voc", class_names=["a"], palette=[[300, 0, 0]]))
    assert (bad == generated_palette(1)).all()  # an invalid palette falls back
    img = np.full((2, 2, 3), 100, np.uint8)
    out = overlay(img, np.array([[0, 255], [7, 1]]), np.array([[200, 0, 0], [0, 50, 0]], np.uint8))
    assert out[0, 0].tolist() == [150, 50, 50] and out[0, 1].tolist() == [100, 100, 100]
    assert out[1, 0].tolist() == [100, 100, 100] and out[1, 1].tolist() == [50, 75, 50]


def test_paths_leaving_the_run_directory_are_refused(tmp_path):
    run_dir = tmp_path / "r"
    cell = make_cell("m")
    good = write_samples(run_dir, cell, ["ok"])
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(secret)
    (run_dir / "samples" / "link.png").symlink_to(secret)
    (run_dir / "samples" / "inner.png").symlink_to(run_dir / good[0]["pred"])
    cell["samples"] = good + [
        {"id": "dots", "image": good[0]["image"], "label": None, "pred": "../secret.png"},
        {"id": "abs", "image": str(secret), "label": None, "pred": good[0]["pred"]},
        {"id": "link", "image": good[0]["image"], "label": None, "pred": "samples/link.png"},
        {"id": "inner", "image": good[0]["image"], "label": None, "pred": "samples/inner.png"},
        {"id": "gone", "image": good[0]["image"], "label": None, "pred": "samples/gone.png"},
    ]
    write_run(run_dir, [cell])
    assert resolve_inside(run_dir, "samples/link.png") == (None, "path 'samples/link.png' resolves outside the run directory")
    assert resolve_inside(run_dir, "../secret.png")[1] == "path '../secret.png' leaves the run directory"
    assert resolve_inside(run_dir, str(secret))[0] is None
    page = render([load_run(run_dir)], FAKE_PLOTLY)
    warnings = re.findall(r'<div class="warn sample-warning">(.*?)</div>', page)
    assert len(warnings) == 4
    assert all(any(f"sample &#x27;{sid}&#x27;" in w for w in warnings) for sid in ("dots", "abs", "link", "gone"))
    assert "ok</h4>" in page and "inner</h4>" in page and "dots</h4>" not in page and "link</h4>" not in page


def test_broken_sample_images_become_warnings(tmp_path):
    run_dir = tmp_path / "b"
    cell = make_cell("m")
    cell["samples"] = write_samples(run_dir, cell, ["x"])
    (run_dir / cell["samples"][0]["pred"]).write_bytes(b"not a png")
    write_run(run_dir, [cell])
    page = render([load_run(run_dir)], FAKE_PLOTLY)
    assert "could not be read (UnidentifiedImageError" in page


def test_hostile_names_are_escaped_in_the_page(tmp_path):
    hostile = "<script>window.__pwned=1</script>\"'&<img src=x onerror=alert(1)>"
    cell = make_cell(hostile, miou=0.4, class_names=[hostile, "b", "c"], dataset=hostile)
    page = render([load_run(write_run(tmp_path / "h", [cell], meta={"env": {hostile: hostile}}))], FAKE_PLOTLY)
    body = page.split("window.Plotly = {newPlot: function () {}};", 1)[1]
    assert "<script>window.__pwned" not in body and "<img src=x" not in body
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;&quot;&#x27;&amp;&lt;img" in body
    for spec in specs(page):  # JSON chart data cannot close its element and labels are entity-escaped
        assert "<" not in json.dumps(spec).replace("\\u003c", "")
    # no name opened or closed a script element: exactly plotly.js, one element per chart and the page's own code
    assert page.count("<script") == page.count("</script>") == 2 + len(specs(page))


def test_report_command_default_output(run, tmp_path, monkeypatch, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command", required=True))
    monkeypatch.chdir(tmp_path)
    args = parser.parse_args(["report", str(run)])
    assert args.func(args) == 0
    assert (tmp_path / "reports" / "run-1.html").is_file() and "reports/run-1.html" in capsys.readouterr().out
    args = parser.parse_args(["report", str(run), str(run), "--out", os.fspath(tmp_path / "two.html")])
    assert args.func(args) == 0 and (tmp_path / "two.html").stat().st_size > 1_000_000
