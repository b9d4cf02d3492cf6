"""Published reference numbers shipped with the package (``published.json``), for the
"published" and "delta" columns of reports.

Each entry names the checkpoint its figure belongs to and the segbench protocol that reproduces
the published one. :func:`published` pairs a measured cell with an entry only when both agree:
the cell's protocol has every value the entry's ``protocol`` lists, and the cell's weights
provenance is one of the entry's ``checkpoints`` (a hub id, or a file whose sha256 starts with
the hash its released name carries). Anything else, including unknown provenance, gets no
reference; :func:`match` says why.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

PUBLISHED = Path(__file__).resolve().parent / "published.json"


@lru_cache(maxsize=1)
def entries() -> tuple[dict, ...]:
    return tuple(json.loads(PUBLISHED.read_text())["entries"])


def _same(a, b) -> bool:
    """Protocol values equal, lists and tuples alike, integers and floats alike."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def protocol_differences(entry: dict, protocol: dict) -> list[str]:
    """Keys of the entry's protocol whose value the cell's ``protocol`` does not have ("key: cell vs entry")."""
    return [f"{k}: {protocol.get(k)!r} vs {v!r}" for k, v in entry["protocol"].items()
            if not _same(protocol.get(k), v)]


def checkpoint_of(entry: dict, weights: dict) -> dict | None:
    """The entry's checkpoint that ``weights`` (a cell's provenance dict) is, or None."""
    source = weights.get("source")
    for ckpt in entry.get("checkpoints", []):
        if source == "hub" and ckpt.get("hub") and weights.get("id") == ckpt["hub"]:
            return ckpt
        prefix = ckpt.get("sha256_prefix")
        if source == "file" and prefix and str(weights.get("sha256", "")).startswith(prefix):
            return ckpt
    return None


def _describe_weights(weights: dict | None) -> str:
    if not weights:
        return "unknown weights"
    if weights.get("source") == "hub":
        return f"hub checkpoint {weights.get('id')}"
    if weights.get("source") in ("file", "local"):
        return f"{weights['source']} {weights.get('path')} (sha256 {str(weights.get('sha256'))[:12]}...)"
    return f"{weights.get('source')} weights"


def match(model: str, dataset: str, protocol: dict | str, weights: dict | None) -> tuple[dict | None, str]:
    """(the entry a cell may be compared with, or None; why not, when None).

    protocol: the cell's validated protocol (a bare mode string is read as ``{"mode": mode}``).
    weights: the cell's weights provenance (``result["weights"]``); None = unknown, never paired.
    """
    protocol = {"mode": protocol} if isinstance(protocol, str) else dict(protocol or {})
    candidates = [e for e in entries() if e["model"] == model and e["dataset"] == dataset]
    if not candidates:
        return None, f"no published figure for {model} on {dataset}"
    same = [e for e in candidates if not protocol_differences(e, protocol)]
    if not same:
        closest = min(candidates, key=lambda e: len(protocol_differences(e, protocol)))
        return None, (f"published figures for {model} on {dataset} are for other protocols (closest differs in "
                      + "; ".join(protocol_differences(closest, protocol)) + ")")
    if weights is None:
        return None, "the weights provenance is unknown, so the checkpoint cannot be matched"
    if weights.get("source") == "random":
        return None, "random weights are never compared with a published figure"
    for e in same:
        if checkpoint_of(e, weights) is not None:
            return e, ""
    owners = "; ".join(", ".join(c.get("hub") or c.get("file") for c in e.get("checkpoints", [])) or
                       "an unreleased checkpoint" for e in same)
    return None, f"the published figure belongs to {owners}, the cell ran {_describe_weights(weights)}"


def published(model: str, dataset: str, protocol: dict | str, weights: dict | None = None) -> dict | None:
    """The published figures a cell is compared with, as fractions, or None (see :func:`match`).

    Returned keys: mIoU (and aAcc when published) as fractions in [0, 1], source, checkpoint (the
    matched checkpoint's hub id or file name), protocol (the entry's protocol), published_protocol
    and, when the entry has them, notes.
    """
    entry, _ = match(model, dataset, protocol, weights)
    if entry is None:
        return None
    ckpt = checkpoint_of(entry, weights)
    out = {k: entry[k] for k in ("source", "protocol", "published_protocol", "notes") if k in entry}
    out["checkpoint"] = ckpt.get("hub") or ckpt.get("file")
    out["mIoU"] = entry["mIoU"] / 100.0
    if "aAcc" in entry:
        out["aAcc"] = entry["aAcc"] / 100.0
    return out
