"""Every measured quantity, declared once: where it lives in a result, its unit, which way is
better, how it is shown, and how ``compare`` judges a change of it.

The HTML table, the paper tables, ``compare``, ``export``, the regression history and the pandas
loader all read :func:`all_quantities`; none of them lists metric names of its own. Quantities
that hold for any task (latency, memory, compute) are declared here; each task declares its own
(``harness.tasks.<task>.QUANTITIES``) with the same :class:`Quantity` type.

Adding a quantity to a task: compute it in the task's metric engine, declare it in the task's
module. Nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DISPLAYS = ("pct", "ms", "num", "int", "mib", "m", "f3")
"""How a value is shown: ``pct`` a fraction as %, ``ms``/``num`` one decimal (two below 10), ``int``,
``mib`` no decimal, ``m`` millions, ``f3`` three decimals (depth errors: AbsRel 0.109, RMSE 0.357 m)."""

CHECK_KINDS = ("drop", "growth", "growth_beyond_noise")


@dataclass(frozen=True)
class Check:
    """How ``compare`` judges a change between a baseline and a current cell.

    kind: ``drop`` (an absolute fall of a fraction, e.g. mIoU), ``growth`` (a relative rise, e.g.
        memory) or ``growth_beyond_noise`` (a relative rise that a one-sided Mann-Whitney test on
        the raw samples also finds beyond noise, e.g. latency).
    option: the threshold's name (``--max-miou-drop`` on the command line, a key of a thresholds file).
    default: the threshold; None = not checked unless the user sets one.
    group: of the quantities sharing a group, only the first one present on both sides is checked
        (the GPU peak when both sides have one, else the host RSS).
    """

    kind: str
    option: str
    default: float | None
    help: str
    group: str | None = None


@dataclass(frozen=True)
class Quantity:
    """One measured quantity.

    key: the name in tables and ``--columns`` (e.g. ``latency_p50``).
    path: dotted path in a :class:`harness.cell_result.CellResult` (None for a derived quantity).
    header: the column header, with the display unit.
    unit: the unit of the stored value (``fraction``, ``ms``, ``img/s``, ``MiB``, ``count``, ``GFLOP``, ``points``).
    better: ``max``, ``min`` or None (not ranked).
    display: one of :data:`DISPLAYS`; display rows show the stored value divided by ``divisor``
        (parameters are stored as a count and shown in millions).
    column: the name in pandas DataFrames, ``compare`` findings and the history.
    task: the task it belongs to (None: every task).
    check: how ``compare`` judges it (None: not compared).
    varies: differs between repeats of one cell (averaged, with an interval, when runs are merged).
    table: a column of the HTML table; ``shown`` ``"always"``, or the key of a quantity whose value
        in some row makes the column appear (e.g. the published reference).
    paper: one of the paper table's default columns.
    samples: dotted path of the raw samples a noise test reads.
    derive: computes the value from a display row (for quantities with no ``path``) out of the
        quantities named in ``inputs`` (whose reasons explain a missing value).
    per_class: a list with one value per class (heatmaps), not a table column.
    note: dotted path of a text in the result saying why the value is missing (e.g. why a model
        cannot be calibrated); views show its words before the first colon, the result keeps it whole.
    """

    key: str
    path: str | None
    header: str
    unit: str
    better: str | None
    display: str
    column: str
    task: str | None = None
    divisor: float = 1.0
    check: Check | None = None
    varies: bool = True
    table: bool = True
    shown: str = "always"
    paper: bool = False
    aliases: tuple[str, ...] = ()
    samples: str | None = None
    derive: Callable[[dict], float | None] | None = None
    inputs: tuple[str, ...] = ()
    per_class: bool = False
    note: str | None = None

    def raw(self, result: Any) -> Any:
        """The stored value in a CellResult (None when absent or derived)."""
        return result.get(self.path) if self.path else None


MEMORY_GROWTH = Check("growth", "max_memory_growth", 0.10, "relative peak memory growth that fails (0.10 = 10%)",
                      group="memory")

LATENCY_NOTE = "latency.note"  # why a cell has no latency (e.g. corrupted inputs)

COMMON: tuple[Quantity, ...] = (
    Quantity("latency_p50", "latency.forward_ms.p50", "latency p50 (ms)", "ms", "min", "ms", "latency_p50_ms",
             aliases=("latency", "p50"), samples="latency.forward_ms.samples", paper=True, note=LATENCY_NOTE,
             check=Check("growth_beyond_noise", "max_slowdown", 0.10,
                         "relative latency p50 growth that fails when beyond noise (0.10 = 10%)")),
    Quantity("latency_p90", "latency.forward_ms.p90", "latency p90 (ms)", "ms", "min", "ms", "latency_p90_ms",
             aliases=("p90",), note=LATENCY_NOTE),
    Quantity("latency_mean", "latency.forward_ms.mean", "latency mean (ms)", "ms", "min", "ms", "latency_mean_ms",
             table=False),
    Quantity("throughput", "latency.throughput_ips", "throughput (img/s)", "img/s", "max", "num", "throughput_ips",
             aliases=("ips",), paper=True, note=LATENCY_NOTE),
    Quantity("gpu_peak", "memory.gpu_peak_allocated", "GPU peak alloc. (MiB)", "MiB", "min", "mib",
             "gpu_peak_allocated_mib", aliases=("gpu_memory",), check=MEMORY_GROWTH),
    Quantity("gpu_reserved", "memory.gpu_peak_reserved", "GPU peak reserved (MiB)", "MiB", "min", "mib",
             "gpu_peak_reserved_mib", table=False),
    Quantity("host_rss", "memory.host_peak_rss", "host peak RSS (MiB)", "MiB", "min", "mib", "host_peak_rss_mib",
             aliases=("memory", "rss"), check=MEMORY_GROWTH),
    Quantity("params", "compute.params", "params (M)", "count", "min", "m", "params", divisor=1e6, varies=False,
             paper=True),
    Quantity("gflops", "compute.gflops", "GFLOPs", "GFLOP", "min", "num", "gflops", varies=False, paper=True),
)

ALPHA = 0.01
ALPHA_HELP = "significance level of the one-sided Mann-Whitney test on latency samples"


def all_quantities() -> tuple[Quantity, ...]:
    """Every declared quantity: each task's (in task order), then the common ones."""
    from harness.tasks import TASKS

    return tuple(q for task in TASKS.values() for q in task.quantities) + COMMON


def by_key() -> dict[str, Quantity]:
    """Quantities by ``key`` (and by alias)."""
    out: dict[str, Quantity] = {}
    for q in all_quantities():
        out[q.key] = q
        out.update({a: q for a in q.aliases})
    return out


def checks() -> dict[str, Check]:
    """The distinct compare checks by threshold name, in declaration order."""
    out: dict[str, Check] = {}
    for q in all_quantities():
        if q.check is not None:
            out.setdefault(q.check.option, q.check)
    return out
