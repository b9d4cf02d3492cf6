"""Published reference numbers shipped with the package (``published.json``), for the
"published" and "delta" columns of reports."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

PUBLISHED = Path(__file__).resolve().parent / "published.json"


@lru_cache(maxsize=1)
def entries() -> tuple[dict, ...]:
    return tuple(json.loads(PUBLISHED.read_text())["entries"])


def published(model: str, dataset: str, protocol_mode: str) -> dict | None:
    """The published figures for (registry model, dataset, protocol mode), as fractions, or None.

    Returned keys: mIoU (and aAcc when published) as fractions in [0, 1], source, protocol,
    published_protocol.
    """
    for e in entries():
        if e["model"] == model and e["dataset"] == dataset and e["protocol"] == protocol_mode:
            out = {k: e[k] for k in ("source", "protocol", "published_protocol") if k in e}
            out["mIoU"] = e["mIoU"] / 100.0
            if "aAcc" in e:
                out["aAcc"] = e["aAcc"] / 100.0
            return out
    return None
