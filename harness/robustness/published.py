"""Published corruption-robustness figures for registry checkpoints (``published.json``).

An entry names the registry model, the dataset, the checkpoint its source evaluated, the source and
its protocol, the clean mIoU and per corruption the mIoU averaged over severities (percent in the
file, fractions here). ``not_applicable`` lists the published tables that evaluate no registry
checkpoint, with the reason, so a report can say why its paper table is empty.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

PUBLISHED = Path(__file__).resolve().parent / "published.json"
ENTRY_KEYS = ("model", "dataset", "checkpoint", "source", "published_protocol", "clean_mIoU", "mIoU")


@lru_cache(maxsize=1)
def _load() -> dict:
    return json.loads(PUBLISHED.read_text(encoding="utf-8"))


def check_entry(entry: dict, where: str = "published robustness entry") -> None:
    """ValueError naming the missing key or the bad value of an entry."""
    missing = [k for k in ENTRY_KEYS if k not in entry]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}; expected {', '.join(ENTRY_KEYS)}")
    values = {"clean_mIoU": entry["clean_mIoU"], **{f"mIoU.{k}": v for k, v in dict(entry["mIoU"]).items()}}
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
            raise ValueError(f"{where} ({entry['model']}): {key} = {v!r}; expected a percentage in 0..100")


def entries() -> list[dict]:
    """The shipped entries (checked), values as in the file (percent)."""
    out = list(_load()["entries"])
    for i, e in enumerate(out):
        check_entry(e, f"{PUBLISHED}: entries[{i}]")
    return out


def not_applicable() -> list[dict]:
    """Published robustness tables that evaluate no registry checkpoint: ``{source, checkpoint, why}``."""
    return list(_load().get("not_applicable", []))


def lookup(model: str, dataset: str, shipped: list[dict] | None = None) -> dict | None:
    """The entry for registry ``model`` on ``dataset`` with figures as fractions, or None.

    ``shipped``: entries to search (default: the shipped ones)."""
    for e in entries() if shipped is None else shipped:
        if e["model"] == model and e["dataset"] == dataset:
            return {**e, "clean_mIoU": e["clean_mIoU"] / 100.0,
                    "mIoU": {k: v / 100.0 for k, v in e["mIoU"].items()}}
    return None
