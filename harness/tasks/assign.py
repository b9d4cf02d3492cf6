"""Which task a suite's (model, dataset) pair is: what the model predicts and what the dataset can score.

A model's task is, in order: its suite entry's ``task:``; ``segmentation`` for a segmentation
registry name (``dpt-large`` is the ADE20K model unless the entry says ``task: depth``); ``depth``
for a depth registry name or alias, a depth checkpoint's hub id or release file name; the
``architectures`` of a local directory's (or a cached hub snapshot's) ``config.json``
(``...ForDepthEstimation`` -> depth); else unknown, and the dataset decides.

A dataset scores its registered task (``extra["task"]``, default segmentation) and, for depth
datasets that also carry segmentation labels (``extra["labels_when"]`` names the option that turns
them on: NYU-Depth-v2 labeled's ``class_mapping``, Cityscapes depth's ``labels``, synthetic depth's
``num_classes``), segmentation too, on the same images.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from harness.errors import ConfigError


def _config_task(name: str) -> str | None:
    """The task a transformers ``config.json`` (local directory or cached hub snapshot) declares, or None."""
    path = Path(name) / "config.json"
    if not path.is_file() and "/" in name and not name.startswith((".", "/", "~")):
        from harness.models.hub import cached_file

        path = cached_file(name, "config.json") or path
    try:
        archs = json.loads(path.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return None
    if any("DepthEstimation" in str(a) for a in archs):
        return "depth"
    if any("Segmentation" in str(a) for a in archs):
        return "segmentation"
    return None


def model_task(name: str, declared: str | None = None) -> str | None:
    """The task model ``name`` predicts (see the module docstring); None when only the dataset can tell."""
    from harness.models.depth_registry import CHECKPOINT_ALIASES, DEPTH_MODELS, resolve_depth
    from harness.models.litert import LITERT_MODELS
    from harness.models.registry import resolve
    from harness.tasks import get_task

    if declared is not None:
        return get_task(declared).name
    if resolve(name) is not None or name in LITERT_MODELS:
        return "segmentation"
    file_name = Path(name).name
    if (resolve_depth(name) is not None or any(s.hub_id == name for s in DEPTH_MODELS.values())
            or file_name in CHECKPOINT_ALIASES or any(s.checkpoint == file_name for s in DEPTH_MODELS.values())):
        return "depth"
    return _config_task(name)


def dataset_tasks(name: str, options: dict | None = None) -> tuple[str, ...]:
    """The tasks dataset ``name`` can score with ``options`` (its registered task first)."""
    from harness.data import DATASETS, _factory

    info = DATASETS.get(name)
    if info is None:  # not registered (a test double): segmentation, as datasets were before tasks
        return ("segmentation",)
    primary = info.extra.get("task", "segmentation")
    option = info.extra.get("labels_when")
    if primary == "segmentation" or option is None:
        return (primary,)
    options = options or {}
    if option in options:
        value = options[option]
    else:
        param = inspect.signature(_factory(name).__init__).parameters.get(option)
        value = None if param is None or param.default is inspect.Parameter.empty else param.default
    return (primary, "segmentation") if value else (primary,)


def pair_task(model_name: str, declared: str | None, dataset: str, options: dict | None) -> tuple[str, str | None]:
    """(task, reason): the pair's task, and why the pair cannot be measured (None when it can)."""
    from harness.data import DATASETS

    tasks = dataset_tasks(dataset, options)
    task = model_task(model_name, declared) or tasks[0]
    if task in tasks:
        return task, None
    option = DATASETS[dataset].extra.get("labels_when") if dataset in DATASETS else None
    hint = f" (its option {option!r} adds segmentation labels)" if option and task == "segmentation" else ""
    return task, f"dataset {dataset!r} scores {' and '.join(tasks)} only{hint}; model {model_name!r} predicts {task}"


def runtime_for_task(name: str, requested: str, task: str) -> str:
    """The runtime a model runs on: LiteRT for a LiteRT depth registry entry, else the usual rule."""
    from harness.runtimes import runtime_for

    if task == "depth":
        from harness.models.depth_registry import resolve_depth

        spec = resolve_depth(name)
        if spec is not None and spec.builder == "litert":
            return "litert"
    return runtime_for(name, requested).name


def check_declared(task: object, where: str) -> None:
    """ConfigError unless ``task`` names a declared task."""
    from harness.tasks import TASKS

    if task is not None and task not in TASKS:
        raise ConfigError(f"{where}: {task!r} is not a task; declared tasks: {', '.join(TASKS)}")
