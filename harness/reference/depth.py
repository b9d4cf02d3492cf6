"""Published depth figures (``depth.json``), each with its source and the checkpoint it belongs to.

Three tables are read: DPT-Hybrid fine-tuned on NYUv2 and KITTI (isl-org/DPT ``EVALUATION.md``),
the MiDaS / DPT zero-shot table (isl-org/MiDaS ``README.md``) and Depth Anything's relative-depth
table (LiheYoung/Depth-Anything ``README.md``). A cell is paired with an entry when its model
reference, its model's registry name or its weights file name is one of the entry's ``match``
names, its dataset is the entry's (the two NYU-Depth-v2 layouts are the same 654 test images)
and its alignment is the published protocol's.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

DEPTH_REFERENCE = Path(__file__).resolve().parent / "depth.json"
SAME_IMAGES = {"nyu-depth-v2-labeled": "nyu-depth-v2"}  # dataset -> the dataset an entry names
METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")
INFO_KEYS = ("source", "checkpoint", "published_protocol", "alignment", "zero_shot", "table", "note")


@lru_cache(maxsize=1)
def entries() -> tuple[dict, ...]:
    """Every entry of ``depth.json``, in file order."""
    return tuple(json.loads(DEPTH_REFERENCE.read_text(encoding="utf-8"))["entries"])


def figures(entry: dict) -> dict:
    """An entry's metrics as segbench stores them (d1..d3 fractions, AbsRel as a ratio, RMSE in metres)
    plus its information keys; the MiDaS table's δ>1.25 error (%) becomes d1 = 1 − error / 100."""
    out = {k: float(entry[k]) for k in METRIC_KEYS if k in entry}
    if "delta1_error_pct" in entry:
        out["d1"] = 1.0 - float(entry["delta1_error_pct"]) / 100.0
    out.update({k: entry[k] for k in INFO_KEYS if k in entry})
    return out


def lookup(model_ref: str, model_name: str | None, weights: str | None, dataset: str, alignment: str) -> dict | None:
    """The published figures for a cell (see the module docstring), or None when no entry matches."""
    names = {str(model_ref), str(model_name)} if model_name else {str(model_ref)}
    if weights and weights != "random":
        names.add(Path(weights).name)
    names |= {Path(n).name for n in names if n.endswith((".pt", ".pth", ".ckpt", ".safetensors"))}
    dataset = SAME_IMAGES.get(dataset, dataset)
    for e in entries():
        if e["dataset"] == dataset and e["alignment"] == alignment and names & set(e["match"]):
            return figures(e)
    return None
