"""Robustness summaries from mIoU per (model, corruption, severity) and clean mIoU.

Formulas (mIoU as fractions; ``s`` runs over the severities evaluated for corruption ``c``, the
same set for every model; ``ref`` is the reference model chosen in the suite):

- mean over severities: ``mIoU_c = mean_s mIoU_{c,s}`` (Kamann & Rother report it per corruption);
- relative robustness: ``R_c = mIoU_c / mIoU_clean`` and, over corruptions, ``R = mPC / mIoU_clean``
  with ``mPC = mean_c mIoU_c`` (Michaelis et al.'s rPC, as used for segmentation by Kamann & Rother);
- corruption error, normalised by the reference (Hendrycks & Dietterich's CE with error
  ``1 - mIoU``, Kamann & Rother's "corruption degradation"):
  ``CE_c = sum_s (1 - mIoU_{c,s}) / sum_s (1 - mIoU^ref_{c,s})`` and ``mCE = mean_c CE_c``;
- relative corruption error: ``rCE_c = sum_s (mIoU_clean - mIoU_{c,s}) /
  sum_s (mIoU^ref_clean - mIoU^ref_{c,s})`` and ``relative_mCE = mean_c rCE_c``.

CE and mCE are ratios (1.0 = as the reference; below 1 = more robust); papers print them x 100.
A value is NaN when one of its inputs is missing or NaN (a failed cell, a severity not run for a
model) or its denominator is 0: a mean over part of the corruptions would not compare with the
others, so the means over corruptions are NaN when any corruption is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

CLEAN_NAMES = (None, "clean")


def _num(value) -> float:
    return math.nan if value is None else float(value)


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 and not math.isnan(num) and not math.isnan(den) else math.nan


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values and not any(math.isnan(v) for v in values) else math.nan


def _table(records: Iterable[Mapping]) -> tuple[dict, dict, dict]:
    """(clean mIoU per model, mIoU per (model, corruption, severity), severities per corruption)."""
    clean: dict[str, float] = {}
    cells: dict[tuple[str, str, int], float] = {}
    severities: dict[str, set[int]] = {}
    for i, r in enumerate(records):
        missing = [k for k in ("model", "corruption", "mIoU") if k not in r]
        if missing:
            raise ValueError(f"robustness record {i}: missing key(s) {', '.join(missing)}; expected model, "
                             "corruption, severity and mIoU")
        model, name, value = str(r["model"]), r["corruption"], _num(r["mIoU"])
        if name in CLEAN_NAMES:
            if model in clean:
                raise ValueError(f"robustness record {i}: a second clean mIoU for model {model!r}")
            clean[model] = value
            continue
        sev = r.get("severity")
        if isinstance(sev, bool) or not isinstance(sev, int):
            raise ValueError(f"robustness record {i} ({model}, {name}): severity {sev!r}, expected an integer")
        if (model, name, sev) in cells:
            raise ValueError(f"robustness record {i}: a second mIoU for {model!r}, {name} at severity {sev}")
        cells[model, name, sev] = value
        severities.setdefault(name, set()).add(sev)
    return clean, cells, {c: sorted(s) for c, s in severities.items()}


def _corruption(model: str, name: str, sevs: list[int], clean: dict, cells: dict, reference: str | None) -> dict:
    """mIoU per severity, mean, relative robustness, CE and rCE of one model on one corruption."""
    values = [cells.get((model, name, s), math.nan) for s in sevs]
    c0 = clean.get(model, math.nan)
    out = {"mIoU": values, "mean_mIoU": _mean(values)}
    out["relative"] = _ratio(out["mean_mIoU"], c0)
    out["CE"] = out["rCE"] = math.nan
    if reference is not None:
        ref = [cells.get((reference, name, s), math.nan) for s in sevs]
        r0 = clean.get(reference, math.nan)
        out["CE"] = _ratio(sum(1 - v for v in values), sum(1 - v for v in ref))
        out["rCE"] = _ratio(sum(c0 - v for v in values), sum(r0 - v for v in ref))
    return out


def summarize_robustness(records: Iterable[Mapping], reference: str | None = None) -> dict:
    """Per-model robustness summary of a suite's corruption cells.

    ``records``: mappings with ``model``, ``corruption`` (a name, or None / ``"clean"`` for the
    clean images), ``severity`` (int; ignored for clean) and ``mIoU`` (fraction, or None when the
    cell failed). ``reference``: the model that normalises CE (None: CE and rCE are NaN).

    Returns ``{"reference", "corruptions": [names], "severities": {name: [ints]}, "models": {model:
    {"clean_mIoU", "mPC", "relative", "mCE", "relative_mCE", "per_corruption": {name: {"mIoU":
    [per severity], "mean_mIoU", "relative", "CE", "rCE"}}}}}`` with the formulas of the module
    docstring; floats, NaN where undefined. Raises ValueError for a malformed or repeated record,
    or a reference model that has no record.
    """
    clean, cells, severities = _table(records)
    models = list(dict.fromkeys([*clean, *(m for m, _, _ in cells)]))
    if reference is not None and reference not in models:
        raise ValueError(f"reference model {reference!r} has no robustness record; expected one of "
                         f"{', '.join(models) or '(none)'}")
    out = {"reference": reference, "corruptions": list(severities), "severities": severities, "models": {}}
    for model in models:
        per = {c: _corruption(model, c, s, clean, cells, reference) for c, s in severities.items()}
        mpc = _mean([p["mean_mIoU"] for p in per.values()])
        out["models"][model] = {
            "clean_mIoU": clean.get(model, math.nan), "mPC": mpc,
            "relative": _ratio(mpc, clean.get(model, math.nan)),
            "mCE": _mean([p["CE"] for p in per.values()]),
            "relative_mCE": _mean([p["rCE"] for p in per.values()]),
            "per_corruption": per,
        }
    return out


def severity_rises(summary: dict) -> list[dict]:
    """Where mIoU rises as the corruption gets stronger, per model and corruption of a
    :func:`summarize_robustness` summary: each ``{model, corruption, from_severity, to_severity,
    from_mIoU, to_mIoU}`` between consecutive evaluated severities (severity 0 = the clean images).

    Stronger corruptions are expected not to raise mIoU; on few images one draw can (a class's few
    pixels happen to be right), so a report shows every rise instead of assuming the order.
    Missing (NaN) values are skipped, not compared.
    """
    out = []
    for model, m in summary.get("models", {}).items():
        for name, per in m["per_corruption"].items():
            points = [(0, m["clean_mIoU"])] + list(zip(summary["severities"][name], per["mIoU"], strict=True))
            points = [(s, v) for s, v in points if not math.isnan(v)]
            for (s0, v0), (s1, v1) in zip(points, points[1:], strict=False):
                if v1 > v0:
                    out.append({"model": model, "corruption": name, "from_severity": s0, "to_severity": s1,
                                "from_mIoU": v0, "to_mIoU": v1})
    return out
