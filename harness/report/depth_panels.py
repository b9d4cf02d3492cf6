"""The depth task's report panels: metric bars, the protocol each cell ran, and the qualitative panel.

The qualitative panel shows, per sample, the input, the ground-truth depth and, per cell, its
aligned depth and error map (PNGs written by :mod:`harness.tasks.depth_samples`, embedded as data
URIs so the report stays one offline file). Paths are checked exactly as the segmentation panel
checks them (:func:`harness.report.qualitative.resolve_inside`): a path leaving the run directory
is never opened and becomes a warning.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape as E

import numpy as np

from harness.report.plots import _layout
from harness.report.qualitative import MAX_SAMPLES, _open, _thumb_size, cell_label, data_uri, resolve_inside

PROTOCOL_FIELDS = (("alignment", "alignment"), ("crop", "crop"), ("min_depth", "min (m)"), ("max_depth", "max (m)"),
                   ("reduction", "mean over"), ("flip", "flip"), ("predict_crop", "predict crop"))


def _names(pairs: list) -> dict[str, str]:
    """cell id -> a bar's label: model · precision (· run with several runs); cells that would share a
    label within a dataset (e.g. one model on several folders of ``rgbd-folder``) add their crop and range."""
    several_runs = len({row["run"] for row, _ in pairs}) > 1
    base = {row["cell_id"]: f"{row['model']} · {row['precision']}" + (f" · {row['run']}" if several_runs else "")
            for row, _ in pairs}
    count: dict[tuple[str, str], int] = defaultdict(int)
    for row, _ in pairs:
        count[(str(row["dataset"]), base[row["cell_id"]])] += 1
    out = {}
    for row, cell in pairs:
        label = base[row["cell_id"]]
        if count[(str(row["dataset"]), label)] > 1:
            proto = (cell.accuracy.metrics or {}).get("protocol") or {}
            label += f" · {proto.get('crop') or 'no crop'} {proto.get('max_depth', '?'):g} m" \
                if isinstance(proto.get("max_depth"), (int, float)) else f" · {row['cell_id'][-8:]}"
        out[row["cell_id"]] = label
    return out


def _bars(pairs: list, key: str, published: str, title: str, ytitle: str, scale: float) -> dict | None:
    ok = [(row, cell) for row, cell in pairs if row["status"] == "ok" and row.get(key) is not None]
    if not ok:
        return None
    names = _names(ok)
    by_dataset: dict[str, dict[str, float]] = defaultdict(dict)
    refs: dict[str, dict[str, float]] = defaultdict(dict)
    for r, _ in ok:
        by_dataset[str(r["dataset"])][names[r["cell_id"]]] = scale * r[key]
        if r.get(published) is not None:
            refs[str(r["dataset"])][names[r["cell_id"]]] = scale * r[published]
    data = [{"type": "bar", "name": ds, "x": list(v), "y": list(v.values())} for ds, v in by_dataset.items()]
    data += [{"type": "scatter", "mode": "markers", "name": f"published · {ds}", "x": list(v), "y": list(v.values()),
              "marker": {"symbol": "x", "size": 11, "color": "#222"}} for ds, v in refs.items()]
    return {"data": data, "layout": _layout(title, "model", ytitle, barmode="group")}


def metric_bars(pairs: list) -> list[dict]:
    """AbsRel and δ1 (%) per depth cell, one bar series per dataset, published figures as markers."""
    specs = [_bars(pairs, "abs_rel", "published_abs_rel", "Depth: AbsRel by model (lower is better)", "AbsRel", 1.0),
             _bars(pairs, "d1", "published_d1", "Depth: δ1 by model (higher is better)", "δ1 (%)", 100.0)]
    return [s for s in specs if s]


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


def protocol_table(cells: list[tuple[str, object]]) -> str:
    """One row per depth cell: what its metrics mean (alignment, crop, range, reduction, flip, output kind,
    resize, evaluated / excluded images)."""
    head = "".join(f"<th>{E(h)}</th>" for h in ("cell", "dataset", *(h for _, h in PROTOCOL_FIELDS), "output",
                                                 "images", "excluded"))
    body = []
    for label, cell in cells:
        metrics = cell.accuracy.metrics or {}
        proto = metrics.get("protocol") if isinstance(metrics.get("protocol"), dict) else {}
        output = proto.get("model_output") if isinstance(proto.get("model_output"), dict) else {}
        data = cell.provenance.data if isinstance(cell.provenance.data, dict) else {}
        depth = data.get("depth") if isinstance(data.get("depth"), dict) else {}
        excluded = depth.get("excluded")
        if excluded and depth.get("num_listed"):
            excluded = f"{excluded} of {depth['num_listed']} listed"
        tds = [label, cell.identity.dataset, *(proto.get(k) for k, _ in PROTOCOL_FIELDS),
               " ".join(str(x) for x in (output.get("depth_kind"), output.get("resize")) if x),
               metrics.get("num_images"), excluded]
        body.append("<tr>" + "".join(f"<td>{E(_fmt(v))}</td>" for v in tds) + "</tr>")
    return f"<table class=protocol><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _picture(run, rel, warns: list[str], where: str) -> str | None:
    """A data URI of the picture at ``rel`` inside the run directory (thumbnail width), or None with a warning."""
    from PIL import Image, UnidentifiedImageError

    path, why = resolve_inside(run.path, rel)
    if why:
        warns.append(f"{where}: {why}; not shown")
        return None
    try:
        image = _open(path, "RGB")
        return data_uri(np.asarray(image.resize(_thumb_size(*image.size), Image.BILINEAR)))
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombWarning) as e:
        warns.append(f"{where}: could not be read ({type(e).__name__}: {e}); not shown")
        return None


def _figure(uri: str, caption: str) -> str:
    return f'<figure><img alt="{E(caption)}" src="{E(uri)}"><figcaption>{E(caption)}</figcaption></figure>'


def _items(runs, cells) -> tuple[dict, list[str]]:
    """(dataset, sample id) -> figures HTML (input, ground truth, then each cell's depth and error)."""
    items: dict[tuple[str, str], list[str]] = {}
    warns: list[str] = []
    several = len(runs) > 1
    for run, cell in cells:
        for s in cell.samples:
            if not isinstance(s, dict):
                continue
            key = (str(cell.identity.dataset), str(s.get("id")))
            if key not in items and len(items) >= MAX_SAMPLES:
                continue
            where = f"{run.run_id}/{cell.cell_id}: sample {s.get('id')!r}"
            if key not in items:
                image = _picture(run, s.get("image"), warns, where + " image")
                if image is None:
                    continue
                truth = _picture(run, s.get("label"), warns, where + " ground truth")
                items[key] = [_figure(image, "input")] + ([_figure(truth, "ground truth depth")] if truth else [])
            name = cell_label(cell, run.run_id if several else None)
            for k, suffix in (("pred", ""), ("error", " · |p−g|/g")):
                uri = _picture(run, s.get(k), warns, f"{where} {k}")
                if uri:
                    items[key].append(_figure(uri, name + suffix))
    return items, warns


def panel_html(runs) -> tuple[str, list[str]]:
    """The depth section of the report: each depth cell's protocol, and the qualitative panel."""
    cells = [(run, c) for run in runs for c in run.cells.values() if c.identity.task == "depth"]
    if not cells:
        return "", []
    several = len(runs) > 1
    table = protocol_table([(cell_label(c, run.run_id if several else None), c) for run, c in cells if c.ok])
    items, warns = _items(runs, cells)
    blocks = [f"<h4>{E(ds)} / {E(sid)}</h4><div class=qual>{''.join(figs)}</div>" for (ds, sid), figs in items.items()]
    qual = ("<p>Depth coloured by inverse depth (near = bright) on the ground truth's scale of each sample; "
            "predictions aligned as their metrics align them; error maps black (0) to yellow (AbsRel >= 0.5), "
            "grey where there is no ground truth, dimmed outside the evaluated crop.</p>" + "".join(blocks)) if blocks else ""
    return (f"<h2 id=depth>Depth</h2><p>What each depth cell's metrics mean:</p>{table}{qual}"), warns
