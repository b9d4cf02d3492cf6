"""The task declaration and the metric-engine contract every task's engine follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from harness.quantities import Quantity


@dataclass(frozen=True)
class Task:
    """A dense prediction task.

    name: as written in suites and results (``segmentation``).
    description: one line for ``segbench models`` / ``datasets`` and the report.
    quantities: the task's own quantities (see :mod:`harness.quantities`), in display order.
    headline: key of the accuracy quantity plotted against latency.
    batch_field: the loader batch's attribute holding the ground truths (``labels``).
    module: the measuring module (see :mod:`harness.tasks`).
    """

    name: str
    description: str
    quantities: tuple[Quantity, ...]
    headline: str
    batch_field: str
    module: str


class MetricEngine(Protocol):
    """Accumulates a task's metrics over the accuracy loop.

    ``update`` takes a batch's predictions (postprocessed, one per image, on the model's device)
    and ground truths (as the dataset yields them). The state is a sum, so ranks under torchrun
    combine it: ``reduce(placement)`` sums the state over ``placement``'s processes (a no-op for
    one process). ``compute()`` gives the metrics dict stored in the result's ``accuracy.metrics``
    (fractions; NaN where undefined) with ``num_images``. ``prepare(model)`` runs before the loop's
    clock starts (loading compiled CPU loops the engine or the model's postprocess will use).
    """

    def prepare(self, model: Any) -> None: ...

    def update(self, preds: list, targets: list) -> None: ...

    def reduce(self, placement: Any) -> None: ...

    def compute(self) -> dict: ...
