"""Tasks: what differs between dense prediction tasks, behind one seam.

A :class:`Task` declares the task's quantities (its columns in every view), its headline
quantity (plotted against latency), the dataset field holding the ground truth, and the module
that measures it. The measuring module (``harness.tasks.<name>``, imported when a cell of the
task runs) provides:

- ``published(cell, model)``: the reference figures paired with the cell (None: no reference);
- ``check_compatible(model, dataset)``: ConfigError when the model cannot be scored on the dataset;
- ``predict_with_protocol(model, image, protocol)``: one prediction under a slide or multiscale protocol;
- ``make_engine(model, dataset, seed, cell=None)``: a :class:`harness.tasks.base.MetricEngine` (the cell
  gives its measure switches and task settings);
- ``describe_dataset(dataset)``: task-specific provenance (class names, palette) for the result;
- ``save_sample(run_dir, cell_id, dataset_name, dataset, sample_id, pred, target)``: the files of one
  qualitative sample, returned as ``{id, image, label, pred}`` paths relative to the run directory;
- ``report_panels(pairs)``: chart specs of the task's own report panels (per-class heatmaps, ...),
  from (display row, CellResult) pairs of the task's cells;
- ``report_qualitative(runs)``: the task's qualitative panel as HTML, and warnings.

Optional: ``make_engine`` may take ``cell`` (the task's suite settings, ``cell.task_options``), and
``prediction_protocol(cell)`` says under which protocol a cell predicts image by image (None: whole
batches through forward and postprocess); without it that is the cell's protocol unless ``whole``.
:mod:`harness.tasks.assign` says which task a suite's (model, dataset) pair is.

Adding a task: a module beside segmentation.py and one :class:`Task` entry below; the runner,
the results store and the report core do not change.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from harness.errors import ConfigError, did_you_mean
from harness.tasks.base import MetricEngine, Task
from harness.tasks.depth import DEPTH
from harness.tasks.segmentation import SEGMENTATION

__all__ = ["TASKS", "Task", "MetricEngine", "get_task", "task_module"]

TASKS: dict[str, Task] = {t.name: t for t in (SEGMENTATION, DEPTH)}


def get_task(name: str) -> Task:
    """The task declared as ``name``; ConfigError listing the declared ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"task {name!r} is not one of {', '.join(TASKS)}{did_you_mean(str(name), TASKS)}") from None


def task_module(name: str) -> ModuleType:
    """The measuring module of task ``name``."""
    return importlib.import_module(get_task(name).module)
