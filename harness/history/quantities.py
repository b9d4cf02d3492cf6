"""The quantities a history series holds: the declared quantities (:mod:`harness.quantities`) that
vary from run to run (accuracy, latency, throughput, memory), by their table key.

:func:`cell_quantities` reads them from a :class:`harness.cell_result.CellResult`; the history and
the A/B ask :data:`QUANTITIES` whether a larger value is better or worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.cell_result import CellResult


@dataclass(frozen=True)
class SeriesQuantity:
    """A quantity's name, unit and whether a larger value is better (accuracy, throughput) or worse."""

    name: str
    unit: str
    higher_is_better: bool
    description: str
    path: str


def _series_quantities() -> dict[str, SeriesQuantity]:
    from harness.quantities import all_quantities

    return {q.key: SeriesQuantity(q.key, q.unit, q.better == "max", f"{q.header} ({q.path})", q.path)
            for q in all_quantities() if q.path and q.varies and q.better and not q.per_class}


QUANTITIES: dict[str, SeriesQuantity] = _series_quantities()


def _finite(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def cell_quantities(cell: CellResult) -> dict[str, float]:
    """The quantities of one cell result that it holds as finite numbers ({} unless status ok).

    Accuracy is absent for random weights (null metrics), GPU memory off CUDA.
    """
    if cell.status != "ok":
        return {}
    return {k: f for k, q in QUANTITIES.items() if (f := _finite(cell.get(q.path))) is not None}


def worse_factor(quantity: str, before: float, after: float) -> float:
    """How many times worse ``after`` is than ``before`` (> 1 worse, < 1 better), for a known quantity."""
    q = QUANTITIES[quantity]
    return before / after if q.higher_is_better else after / before
