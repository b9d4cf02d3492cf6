"""Suite files: load a YAML suite, validate every key, expand its matrix into cells.

A suite names models, datasets, devices, precisions, batch sizes, runtimes and variants;
the cartesian product of those axes is the set of cells, trimmed by ``include`` (keep only
cells matching one of its entries) and ``exclude`` (drop cells matching one of its entries).
Each (model, dataset) pair is a cell of one task (:mod:`harness.tasks.assign`); a pair whose
dataset cannot score the model's task is left out and listed by :meth:`Suite.task_skips`.
Every error names the file, the key path, the bad value and what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError, did_you_mean
from harness.runtimes import PROTOCOL_MODES, runtime_for
from harness.settings import UPSAMPLE_MODES

# The keys, types, ranges and defaults of the suite format are declared in harness/suite_spec.py (the
# JSON Schema is generated from the same declarations); the validator below reads them.
from harness.suite_spec import (  # noqa: F401  (re-exported for importers of harness.suite)
    BAD_SAMPLE_POLICIES,
    DATASET,
    DATASET_KEYS,
    DEFAULT_MEASURE,
    DEFAULT_PROTOCOL,
    DEVICE_RE,
    FILTER_KEYS,
    LIMITS,
    MEASURE,
    MEASURE_KEYS,
    MERGE_MODES,
    MODEL,
    MODEL_KEYS,
    NAME_PATTERN,
    PROTOCOL_KEYS,
    TOP,
    TOP_KEYS,
    VARIANT,
    VARIANT_KEYS,
    Key,
)
from harness.tasks.assign import check_declared, model_task, pair_task, runtime_for_task

# merge: pytorch-encoding's own crop and base size, filled in by _protocol_merge
PTE_DEFAULTS = {"crop_size": [480, 480], "base_size": 520}


@dataclass
class Cell:
    """One point of a suite's matrix: everything a worker process needs to measure it."""

    model: str
    weights: str | None
    dataset: str
    dataset_root: str | None
    dataset_split: str
    dataset_limit: int | None
    dataset_options: dict
    device: str
    precision: str
    amp: str
    batch_size: int
    runtime: str
    variant: dict
    protocol: dict
    measure: dict
    model_options: dict = field(default_factory=dict)
    model_label: str | None = None
    trust_remote_code: bool = False
    seed: int = 0
    task: str = "segmentation"
    task_options: dict = field(default_factory=dict)  # the task's suite settings (depth: the `depth:` section)
    corruption: dict | None = None  # {name, severity, seed} of the input corruption; None: clean images

    @property
    def corruption_tag(self) -> str | None:
        """``<name>-<severity>`` of the cell's corruption (e.g. ``gaussian_noise-3``), None when clean."""
        return None if self.corruption is None else f"{self.corruption['name']}-{self.corruption['severity']}"

    @property
    def cell_id(self) -> str:
        """Stable, file-name-safe id from the cell's identity (readable part + short hash)."""
        ident = self.identity()
        readable = "__".join([
            _slug(self.model_label or self.model), _slug(self.dataset), _slug(self.device),
            self.precision + ("" if self.amp == "autocast" else "-cast"), f"b{self.batch_size}",
        ] + ([self.runtime] if self.runtime != "pytorch" else [])
          + ([self.protocol["mode"]] if self.protocol.get("mode", "whole") != "whole" else [])
          + ([self.protocol["merge"]] if self.protocol.get("merge") else [])
          + ([self.corruption_tag] if self.corruption is not None else []))
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
        return f"{readable}__{digest}"

    def identity(self) -> dict:
        """The fields that make two cells the same measurement (used for ids, resume, compare).

        The task (and its settings, when set) appears only when it is not segmentation and the corruption
        only when one is set, so segmentation cells of clean images keep the ids they had before tasks and
        corruptions existed."""
        ident = {
            "model": self.model, "weights": self.weights, "dataset": self.dataset,
            "dataset_split": self.dataset_split, "dataset_limit": self.dataset_limit,
            "dataset_options": self.dataset_options, "device": self.device, "precision": self.precision,
            "amp": self.amp, "batch_size": self.batch_size, "runtime": self.runtime,
            "variant": self.variant, "protocol": self.protocol, "model_options": self.model_options,
        }
        if self.task != "segmentation":
            ident["task"] = self.task
        if self.task_options:
            ident["task_options"] = self.task_options
        if self.corruption is not None:
            ident["corruption"] = dict(self.corruption)
        return ident

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cell_id"] = self.cell_id
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Cell:
        """The cell of :meth:`to_dict`; measure keys added since it was written take their defaults
        (a run resumed by a newer segbench)."""
        d = {k: v for k, v in d.items() if k != "cell_id"}
        if isinstance(d.get("measure"), dict):
            d["measure"] = {**DEFAULT_MEASURE, **d["measure"]}
        return cls(**d)


@dataclass
class Suite:
    """A validated suite: its data (defaults filled in) and where it came from."""

    path: Path
    data: dict
    sha256: str

    @property
    def name(self) -> str:
        return self.data["name"]

    def cells(self) -> list[Cell]:
        """Expand the matrix into cells, apply include/exclude, drop duplicates (order kept).

        Pairs whose dataset cannot score the model's task are left out (see :meth:`task_skips`)."""
        d = self.data
        cells: list[Cell] = []
        seen: set[str] = set()
        pairs = {(i, j): pair_task(m["name"], m.get("task"), ds["name"], ds.get("options"))
                 for i, m in enumerate(d["models"]) for j, ds in enumerate(d["datasets"])}
        for (i, m), (j, ds), dev, prec, amp, bs, rt, var, proto in itertools.product(
            enumerate(d["models"]), enumerate(d["datasets"]), d["devices"], d["precisions"], d["amp"],
            d["batch_sizes"], d["runtimes"], d["variants"], d["protocols"],
        ):
            task, reason = pairs[(i, j)]
            if reason:
                continue
            runtime = m.get("runtime") or runtime_for_task(m["name"], rt, task)
            cell = Cell(
                model=m["name"], weights=m["weights"], model_label=m.get("label"),
                model_options=m.get("options") or {}, trust_remote_code=bool(m.get("trust_remote_code")),
                dataset=ds["name"], dataset_root=ds.get("root"), dataset_split=ds["split"],
                dataset_limit=ds.get("limit"), dataset_options=ds.get("options") or {},
                device=dev, precision=prec, amp=amp, batch_size=bs, runtime=runtime, variant=var,
                protocol=_task_protocol(proto, task), measure=dict(d["measure"]), seed=d["seed"],
                task=task, task_options=dict(d.get(task) or {}),
            )
            for point in corruption_points(cell, d.get("corruptions")):
                row = _filter_row(point, m, ds)
                if d["include"] and not any(_matches(row, f) for f in d["include"]):
                    continue
                if any(_matches(row, f) for f in d["exclude"]):
                    continue
                if point.cell_id in seen:
                    continue
                seen.add(point.cell_id)
                cells.append(point)
        return cells

    def task_skips(self) -> list[dict]:
        """The (model, dataset) pairs left out of the matrix because the dataset cannot score the model's
        task: ``[{model, dataset, task, reason}]``, each pair once."""
        out = []
        for m, ds in itertools.product(self.data["models"], self.data["datasets"]):
            task, reason = pair_task(m["name"], m.get("task"), ds["name"], ds.get("options"))
            if reason:
                out.append({"model": m.get("label") or m["name"], "dataset": ds["name"], "task": task,
                            "reason": reason})
        return out


def _task_protocol(protocol: dict, task: str) -> dict:
    """The protocol of a cell of ``task``: ``upsample`` (how segmentation logits are resized) only for
    segmentation; other tasks' models resize as their own post-processing does (recorded as run)."""
    return dict(protocol) if task == "segmentation" else {k: v for k, v in protocol.items() if k != "upsample"}


CORRUPTED_MEASURE = {"latency": False, "stages": False, "flops": False}
"""What a corrupted cell does not measure: the model's speed does not depend on the image content,
so latency, per-stage latency and FLOPs are the clean cell's."""


def corruption_points(cell: Cell, corruptions: dict | None) -> list[Cell]:
    """``cell`` on each point of the suite's validated ``corruptions`` setting (None: only ``cell``).

    The clean point (when the setting keeps it) is ``cell`` itself, unchanged; each corrupted point
    is a copy with ``corruption`` set and accuracy only (:data:`CORRUPTED_MEASURE`). A model with
    random weights gets no corrupted cells: it has no accuracy to degrade.
    """
    if corruptions is None:
        return [cell]
    out = [cell] if corruptions["clean"] else []
    if cell.weights == "random":
        return out or [cell]
    for name in corruptions["names"]:
        for severity in corruptions["severities"]:
            out.append(replace(cell, corruption={"name": name, "severity": severity, "seed": corruptions["seed"]},
                               measure={**cell.measure, **CORRUPTED_MEASURE}))
    return out


def _slug(text: str) -> str:
    text = text.rstrip("/").split("/")[-1] if "/" in text else text
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:48] or "x"


def _filter_row(cell: Cell, model: dict, dataset: dict) -> dict:
    return {"model": {model["name"], model.get("label") or model["name"]}, "task": {cell.task},
            "dataset": {dataset["name"]}, "device": {cell.device}, "precision": {cell.precision},
            "amp": {cell.amp}, "batch_size": {str(cell.batch_size)}, "runtime": {cell.runtime},
            "protocol": {cell.protocol.get("mode", "whole")},
            "corruption": ({"clean"} if cell.corruption is None
                           else {cell.corruption_tag, cell.corruption["name"]})}


def _matches(row: dict, flt: dict) -> bool:
    for key, want in flt.items():
        wanted = {str(w) for w in (want if isinstance(want, list) else [want])}
        if not (row[key] & wanted):
            return False
    return True


class _Validator:
    """Collects the file name so every message can say where the problem is."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")

    def keys(self, obj: Any, allowed: tuple[str, ...], where: str) -> dict:
        if not isinstance(obj, dict):
            raise self.fail(where, f"expected a mapping with keys {', '.join(allowed)}, got {_show(obj)}")
        for k in obj:
            if k not in allowed:
                raise self.fail(f"{where}.{k}" if where else str(k),
                                f"unknown key{did_you_mean(str(k), allowed)}; allowed keys: {', '.join(allowed)}")
        return obj

    def list_of(self, value: Any, key: str, allowed: tuple[str, ...] | None = None, kind: type = str,
                pattern: re.Pattern | None = None, hint: str = "") -> list:
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list, got {_show(value)}")
        for i, v in enumerate(value):
            if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
                raise self.fail(f"{key}[{i}]", f"expected an integer, got {_show(v)}")
            if kind is str and not isinstance(v, str):
                raise self.fail(f"{key}[{i}]", f"expected a string, got {_show(v)}")
            if allowed is not None and v not in allowed:
                raise self.fail(f"{key}[{i}]", f"{v!r} is not allowed{did_you_mean(str(v), allowed)}; "
                                               f"allowed: {', '.join(allowed)}")
            if pattern is not None and not pattern.match(v):
                raise self.fail(f"{key}[{i}]", f"{v!r} is not allowed; expected {hint}")
        return value

    def value(self, value: Any, spec: Key, key: str, large: bool = False) -> Any:
        """``value`` checked against its declaration ``spec`` (type, allowed values, range); None passes
        when the key is nullable. ``large``: ``measure.allow_large`` lifts the upper bound."""
        if value is None and spec.nullable:
            return value
        if spec.kind == "bool" and not isinstance(value, bool):
            raise self.fail(key, f"expected {spec.expect or 'true or false'}, got {_show(value)}")
        if spec.kind in ("int", "number"):
            self.number(value, key, spec.lo, spec.upper(large), integer=spec.kind == "int")
        if spec.kind == "enum" and value not in spec.choices:
            raise self.fail(key, f"{value!r} is not allowed; allowed: {', '.join(spec.choices)}")
        if spec.kind == "str" and not isinstance(value, str):
            raise self.fail(key, f"expected {spec.expect or 'a string'}, got {_show(value)}")
        if spec.kind == "mapping" and not isinstance(value, dict):
            raise self.fail(key, f"expected {spec.expect or 'a mapping'}, got {_show(value)}")
        return value

    def fields(self, entry: dict, specs: dict[str, Key], where: str, skip: tuple[str, ...] = ()) -> dict:
        """Every declared key of ``entry`` checked, absent or null ones given their default."""
        out = {}
        for k, spec in specs.items():
            if k in skip:
                continue
            present = entry.get(k) is not None or (k in entry and not spec.nullable)
            out[k] = self.value(entry[k], spec, f"{where}.{k}") if present else spec.default_value()
        return out

    def number(self, value: Any, key: str, lo: float, hi: float, integer: bool = False) -> Any:
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            raise self.fail(key, f"expected {'an integer' if integer else 'a number'} in [{lo}, {hi}], "
                                 f"got {_show(value)}")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} is out of range; allowed: {lo} to {hi}"
                                 + (" (set measure.allow_large: true to lift the upper bound)" if value > hi else ""))
        return value


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _named_entry(v: _Validator, entry: Any, allowed: tuple[str, ...], key: str, what: str) -> dict:
    """A list entry given as a bare name or a mapping with a non-empty ``name``; returned as a mapping."""
    if isinstance(entry, str):
        entry = {"name": entry}
    v.keys(entry, allowed, key)
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        raise v.fail(f"{key}.name", f"expected {what}, got {_show(entry.get('name'))}")
    return entry


def _model_entry(v: _Validator, entry: Any, i: int) -> dict:
    key = f"models[{i}]"
    entry = _named_entry(v, entry, MODEL_KEYS, key, MODEL["name"].expect)
    out = {"name": entry["name"], **v.fields(entry, MODEL, key, skip=("name",))}
    try:
        check_declared(out.get("task"), f"{key}.task")
    except ConfigError as e:
        raise ConfigError(f"{v.path}: {e}") from None
    _check_model_name(v, entry["name"], out["runtime"], f"{key}.name", model_task(entry["name"], out.get("task")))
    if out.get("task") is None:
        out.pop("task", None)  # the task is in a model entry only when the suite sets it
    return out


def _dataset_entry(v: _Validator, entry: Any, i: int) -> dict:
    key = f"datasets[{i}]"
    entry = _named_entry(v, entry, DATASET_KEYS, key, DATASET["name"].expect)
    out = {"name": entry["name"], **v.fields(entry, DATASET, key, skip=("name",))}
    from harness.data import check_dataset

    try:
        check_dataset(entry["name"], out["options"])
    except ConfigError as e:
        raise v.fail(f"{key}.options" if entry["name"] in _dataset_names() else f"{key}.name", str(e)) from None
    return out


def _dataset_names() -> tuple[str, ...]:
    from harness.data import DATASETS

    return tuple(DATASETS)


def _check_model_name(v: _Validator, name: str, runtime: str | None, key: str, task: str | None) -> None:
    """The runtime that would load ``name`` says whether it can be a model of ``task`` (registry name,
    hub id, path); a model whose task only its datasets will tell (None) may be one of any task."""
    try:
        module = runtime_for(name, runtime or "pytorch").implementation()
    except ConfigError:  # the runtime's extra is not installed: preflight and the cell say so
        return
    errors = []
    for t in [task] if task else ["segmentation", "depth"]:
        try:
            module.check_name(name, t)
            return
        except ConfigError as e:
            errors.append(str(e))
    raise v.fail(key, errors[0])


def _with_defaults(v: _Validator, value: Any, defaults: dict, keys: tuple[str, ...], where: str) -> dict:
    """``defaults`` updated with the mapping ``value`` (None: the defaults), its keys checked."""
    out = dict(defaults)
    if value is not None:
        out.update(v.keys(value, keys, where))
    return out


def _protocol_pair(v: _Validator, p: dict, key: str) -> None:
    """``crop_size`` / ``stride``: an integer or [height, width] in 1..8192, stored as a pair."""
    val = p[key]
    val = [val, val] if isinstance(val, int) and not isinstance(val, bool) else val
    if (not isinstance(val, list) or len(val) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 8192 for x in val)):
        raise v.fail(f"protocol.{key}", f"expected an integer or [height, width] in 1..8192, got {_show(p[key])}")
    p[key] = val


def _protocol_resize(v: _Validator, r: Any) -> None:
    """``resize``: a short side, [height, width], or {short, long} (mmcv's keep-ratio rescale)."""
    def ok(x):
        return isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 8192

    if isinstance(r, dict):
        if set(r) != {"short", "long"} or not (ok(r["short"]) and ok(r["long"])):
            raise v.fail("protocol.resize", f"expected {{short: S, long: L}} with integers in 1..8192 (the image "
                                            f"rescaled, aspect kept, to fit S x L), got {_show(r)}")
    elif not (ok(r) or (isinstance(r, list) and len(r) == 2 and all(ok(x) for x in r))):
        raise v.fail("protocol.resize", f"expected a short side (integer), [height, width] or {{short, long}} "
                                        f"in 1..8192, got {_show(r)}")


def _protocol_merge(v: _Validator, p: dict) -> None:
    """``merge`` and ``base_size``: multiscale only; PyTorch-Encoding's own crop, stride and sizes."""
    if p["mode"] != "multiscale":
        for key in ("merge", "base_size"):
            if key in p:
                raise v.fail(f"protocol.{key}", f"applies to mode multiscale only (mode is {p['mode']!r})")
        return
    p.setdefault("merge", "softmax")
    if p["merge"] not in MERGE_MODES:
        raise v.fail("protocol.merge", f"{p['merge']!r} is not allowed{did_you_mean(str(p['merge']), MERGE_MODES)}; "
                                       f"allowed: {', '.join(MERGE_MODES)}")
    if p["merge"] != "pytorch-encoding":
        if "base_size" in p:
            raise v.fail("protocol.base_size", "applies to merge: pytorch-encoding only (use resize for the others)")
        return
    for key, why in (("stride", "it slides windows every int(crop_size * 2/3)"),
                     ("resize", "it scales the long side to base_size x scale")):
        if key in p:
            raise v.fail(f"protocol.{key}", f"not used by merge: pytorch-encoding ({why})")
    if p["upsample"] != "bilinear":
        raise v.fail("protocol.upsample", "merge: pytorch-encoding resizes bilinearly (align_corners=True); "
                                          f"got {p['upsample']!r}")
    for key, default in PTE_DEFAULTS.items():
        p.setdefault(key, default)
    v.number(p["base_size"], "protocol.base_size", 1, 8192, integer=True)
    if p["crop_size"][0] != p["crop_size"][1]:
        raise v.fail("protocol.crop_size", f"merge: pytorch-encoding uses square crops, got {p['crop_size']}")


def _protocol(v: _Validator, value: Any) -> dict:
    p = _with_defaults(v, value, DEFAULT_PROTOCOL, PROTOCOL_KEYS, "protocol")
    if value is None:
        return p
    if p["mode"] not in PROTOCOL_MODES:
        raise v.fail("protocol.mode", f"{p['mode']!r} is not allowed; allowed: {', '.join(PROTOCOL_MODES)}")
    if p["upsample"] not in UPSAMPLE_MODES:
        raise v.fail("protocol.upsample", f"{p['upsample']!r} is not allowed; allowed: {', '.join(UPSAMPLE_MODES)}")
    for k in ("crop_size", "stride"):
        if k in p:
            _protocol_pair(v, p, k)
    if "scales" in p:
        s = p["scales"]
        if (not isinstance(s, list) or not s or len(s) > 16
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0.1 <= x <= 4 for x in s)):
            raise v.fail("protocol.scales", f"expected a list of 1 to 16 numbers in 0.1..4, got {_show(s)}")
    if p.get("resize") is not None:
        _protocol_resize(v, p["resize"])
    if "flip" in p and not isinstance(p["flip"], bool):
        raise v.fail("protocol.flip", f"expected true or false, got {_show(p['flip'])}")
    if p["mode"] == "slide" and "crop_size" not in p:
        raise v.fail("protocol.crop_size", "slide inference needs crop_size (and stride), e.g. crop_size: 512, stride: 341")
    if "stride" in p and "crop_size" not in p:
        raise v.fail("protocol.stride", "needs crop_size (the windows it moves)")
    if p["mode"] == "slide" or ("crop_size" in p and p.get("merge") != "pytorch-encoding"):
        p.setdefault("stride", [max(1, c * 2 // 3) for c in p["crop_size"]])
    if "stride" in p and any(s > c for s, c in zip(p["stride"], p["crop_size"], strict=True)):
        raise v.fail("protocol.stride", f"{p['stride']} is larger than crop_size {p['crop_size']}: pixels between "
                                        f"windows would never be covered; expected stride <= crop_size")
    if p["mode"] == "multiscale":
        p.setdefault("scales", [0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
        p.setdefault("flip", True)
    _protocol_merge(v, p)
    return p


def _protocols(v: _Validator, value: Any) -> list[dict]:
    """``protocol`` is one mapping, or a list of them (an axis: each cell runs under each)."""
    if isinstance(value, list):
        if not value:
            raise v.fail("protocol", "expected a mapping or a non-empty list of mappings")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(_protocol(v, item))
            except ConfigError as e:
                raise ConfigError(str(e).replace(": protocol", f": protocol[{i}]", 1)) from None
        return out
    return [_protocol(v, value)]


def _measure(v: _Validator, value: Any) -> dict:
    m = _with_defaults(v, value, DEFAULT_MEASURE, MEASURE_KEYS, "measure")
    if value is None:
        return m
    big = v.value(m["allow_large"], MEASURE["allow_large"], "measure.allow_large")
    for k, spec in MEASURE.items():
        v.value(m[k], spec, f"measure.{k}", large=big)
    _robust_measure(v, m)
    return m


def _robust_measure(v: _Validator, m: dict) -> None:
    """The boundary and calibration switches and settings of ``measure`` (docs/ROBUSTNESS.md)."""
    for k in ("boundary", "calibration"):
        if not isinstance(m[k], bool):
            raise v.fail(f"measure.{k}", f"expected true or false, got {_show(m[k])}")
    v.number(m["boundary_dilation_ratio"], "measure.boundary_dilation_ratio", 0.001, 0.5)
    v.number(m["calibration_bins"], "measure.calibration_bins", 1, 1000, integer=True)
    widths = m["trimap_widths"]
    v.list_of(widths, "measure.trimap_widths", kind=int)
    for i, w in enumerate(widths):
        v.number(w, f"measure.trimap_widths[{i}]", 1, 1000, integer=True)
    if len(set(widths)) != len(widths) or len(widths) > 32:
        raise v.fail("measure.trimap_widths", f"expected at most 32 distinct widths (pixels), got {widths!r}")


def _corruptions(v: _Validator, value: Any, models: list[dict], measure: dict) -> dict:
    """The validated ``corruptions`` setting as data: ``{names, severities, clean, seed, reference}``.

    ``reference`` (the model normalising CE / mCE) may be given by a model's name or label; it is
    stored as that model's display name (its label, else its name), the name its cells carry."""
    from harness.robustness.corruptions import expand_corruptions

    names = [m["name"] for m in models] + [m["label"] for m in models if m.get("label")]
    axis = expand_corruptions(value, where=f"{v.path}: corruptions", models=names)
    if not measure["accuracy"]:
        raise v.fail("corruptions", "corrupted cells measure accuracy only; set measure.accuracy: true "
                                    "(or remove corruptions)")
    corrupted = [p for p in axis.points if not p.clean]
    reference = axis.reference
    if reference is not None:
        model = next(m for m in models if reference in (m["name"], m.get("label")))
        reference = model.get("label") or model["name"]
    return {"names": list(dict.fromkeys(p.name for p in corrupted)),
            "severities": sorted({p.severity for p in corrupted}),
            "clean": any(p.clean for p in axis.points), "seed": axis.seed, "reference": reference}


def _depth(v: _Validator, value: Any) -> dict:
    """The ``depth:`` section: settings of the depth cells (docs/DEPTH.md "Running depth suites"), only
    the keys set (each becomes part of the depth cells' identity; the others come from the dataset and
    the model at run time)."""
    from harness.depth.align import ALIGNMENTS
    from harness.depth.crops import check_crop
    from harness.depth.metrics import REDUCTIONS
    from harness.tasks.depth import PREDICT_CROPS, SETTINGS_KEYS, SILOG_FORMS

    if value is None:
        return {}
    d = dict(v.keys(value, SETTINGS_KEYS, "depth"))
    choices = {"alignment": ALIGNMENTS, "silog": tuple(SILOG_FORMS), "reduction": REDUCTIONS,
               "predict_crop": (None, *PREDICT_CROPS)}
    for k, allowed in choices.items():
        if k in d and d[k] not in allowed:
            raise v.fail(f"depth.{k}", f"{d[k]!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
    if "crop" in d:
        try:
            check_crop(d["crop"])
        except ValueError as e:
            raise v.fail("depth.crop", str(e)) from None
    if "flip" in d and not isinstance(d["flip"], bool):
        raise v.fail("depth.flip", f"expected true or false, got {_show(d['flip'])}")
    for k in ("min_depth", "max_depth"):
        if k in d:
            v.number(d[k], f"depth.{k}", 0, float("inf"))
    if "min_depth" in d and "max_depth" in d and not d["min_depth"] < d["max_depth"]:
        raise v.fail("depth", f"min_depth {d['min_depth']} must be below max_depth {d['max_depth']} (metres)")
    if "min_valid_pixels" in d:
        v.number(d["min_valid_pixels"], "depth.min_valid_pixels", 1, 10**9, integer=True)
    return d


def _filters(v: _Validator, value: Any, key: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise v.fail(key, f"expected a list of mappings with keys from {', '.join(FILTER_KEYS)}, got {_show(value)}")
    for i, f in enumerate(value):
        v.keys(f, FILTER_KEYS, f"{key}[{i}]")
        if not f:
            raise v.fail(f"{key}[{i}]", "an empty entry would match every cell")
    return value


def _variants(v: _Validator, value: Any) -> list[dict]:
    if value is None:
        return [{}]
    if not isinstance(value, list) or not value:
        raise v.fail("variants", f"expected a non-empty list of mappings, got {_show(value)}")
    out = []
    for i, var in enumerate(value):
        v.keys(var, VARIANT_KEYS, f"variants[{i}]")
        checked = v.fields(var, VARIANT, f"variants[{i}]")
        out.append({k: checked[k] for k in VARIANT_KEYS if checked[k] not in (None, False)})
    return out


def _axis(v: _Validator, data: dict, key: str) -> list:
    """A matrix axis (devices, precisions, ...): a non-empty list of its declared items, or its default."""
    spec, item = TOP[key], TOP[key].items
    return v.list_of(data.get(key, spec.default_value()), key, allowed=item.choices or None,
                     kind=int if item.kind == "int" else str,
                     pattern=re.compile(item.pattern) if item.pattern else None, hint=item.expect)


def validate(data: Any, path: Path) -> dict:
    """Validate a parsed suite and return it with every default filled in."""
    v = _Validator(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {_show(data)}")
    v.keys(data, TOP_KEYS, "")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise v.fail("name", f"expected 1-64 characters of letters, digits, '.', '_' or '-', got {_show(name)}")
    for required in ("models", "datasets"):
        if required not in data:
            raise v.fail(required, "missing (a suite needs at least one model and one dataset)")
    models = v.list_of(data["models"], "models", kind=object)
    datasets = v.list_of(data["datasets"], "datasets", kind=object)
    out = {
        "name": name,
        "description": data.get("description", TOP["description"].default),
        "models": [_model_entry(v, m, i) for i, m in enumerate(models)],
        "datasets": [_dataset_entry(v, d, i) for i, d in enumerate(datasets)],
        "devices": _axis(v, data, "devices"),
        "precisions": _axis(v, data, "precisions"),
        "amp": _axis(v, data, "amp"),
        "batch_sizes": _axis(v, data, "batch_sizes"),
        "runtimes": _axis(v, data, "runtimes"),
        "variants": _variants(v, data.get("variants")),
        "protocols": _protocols(v, data.get("protocol")),
        "measure": _measure(v, data.get("measure")),
        "include": _filters(v, data.get("include"), "include"),
        "exclude": _filters(v, data.get("exclude"), "exclude"),
        "seed": v.value(data.get("seed", TOP["seed"].default), TOP["seed"], "seed"),
        "depth": _depth(v, data.get("depth")),
    }
    if not isinstance(out["description"], str):
        raise v.fail("description", f"expected a string, got {_show(out['description'])}")
    if data.get("corruptions") is not None:
        out["corruptions"] = _corruptions(v, data["corruptions"], out["models"], out["measure"])
    big = out["measure"]["allow_large"]
    for i, bs in enumerate(out["batch_sizes"]):
        v.value(bs, TOP["batch_sizes"].items, f"batch_sizes[{i}]", large=big)
    return out


MAX_EXTENDS_DEPTH = 8
MERGED_SECTIONS = ("measure", "protocol", "depth")  # merged key by key; every other key is replaced


def _read_yaml(path: Path) -> tuple[Any, bytes]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read suite file ({e.strerror})") from e
    try:
        return yaml.safe_load(raw), raw
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e


def _resolve_extends(path: Path, data: Any, chain: tuple[Path, ...] = ()) -> tuple[Any, list[bytes]]:
    """Apply ``extends: base.yaml`` (relative to the suite's folder, which it may not leave)."""
    if not isinstance(data, dict) or "extends" not in data:
        return data, []
    target = data["extends"]
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{path}: extends: expected a path to a suite file, got {_show(target)}")
    base_path = Path(target)
    if not base_path.is_absolute():
        base_path = (path.parent / base_path)
        try:
            base_path.resolve().relative_to(path.parent.resolve())
        except ValueError:
            raise ConfigError(f"{path}: extends: {target!r} leaves the suite's folder {path.parent}; "
                              "use an absolute path to extend a suite elsewhere") from None
    if base_path.resolve() in chain or len(chain) >= MAX_EXTENDS_DEPTH:
        raise ConfigError(f"{path}: extends: {target!r} makes a cycle or a chain deeper than {MAX_EXTENDS_DEPTH}")
    base, raw = _read_yaml(base_path)
    base, raws = _resolve_extends(base_path, base, chain + (path.resolve(),))
    if not isinstance(base, dict):
        raise ConfigError(f"{base_path}: expected a mapping at the top level, got {_show(base)}")
    merged = dict(base)
    for k, v in data.items():
        if k == "extends":
            continue
        if k in MERGED_SECTIONS and isinstance(v, dict) and isinstance(base.get(k), dict):
            merged[k] = {**base[k], **v}
        else:
            merged[k] = v
    return merged, raws + [raw]


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (safe YAML loader only; ``extends`` applied)."""
    path = Path(path)
    data, raw = _read_yaml(path)
    data, base_raws = _resolve_extends(path, data)
    digest = hashlib.sha256(b"".join(base_raws + [raw])).hexdigest()
    suite = Suite(path=path, data=validate(data, path), sha256=digest)
    if not suite.cells():
        skips = suite.task_skips()
        if len(skips) == len(suite.data["models"]) * len(suite.data["datasets"]):
            raise ConfigError(f"{path}: no (model, dataset) pair can be scored: " + "; ".join(s["reason"] for s in skips))
        raise ConfigError(f"{path}: include/exclude leave no cell to run")
    return suite
