"""The suite format, declared once: every key of a suite file with its type, allowed values, range,
default and meaning.

Two readers: the suite validator (:mod:`harness.suite`) checks values against these declarations
and fills in their defaults, and :mod:`harness.suite_schema` turns the same declarations into the
JSON Schema editors use (``harness/schema/suite.schema.json``, ``segbench schema``).

Adding a suite key
------------------
1. One :class:`Key` entry in its section's table below (:data:`TOP`, :data:`MODEL`, :data:`DATASET`,
   :data:`VARIANT`, :data:`PROTOCOL`, :data:`MEASURE`). A ``measure``, ``variants``, model or dataset
   key needs nothing else: the validator loops over these tables. A new top-level section
   (``kind="mapping"`` with its own table in ``fields``) also needs its reader in ``suite.validate``.
2. ``python scripts/make_suite_schema.py`` regenerates the shipped schema (a test fails while it
   is stale).

Rules that relate two keys of ``protocol`` (e.g. "slide needs crop_size") are checked in code by
``suite._protocol``; :data:`PROTOCOL_RULES` declares the ones a JSON Schema can express, and a
test holds both to the same bad suites. What only the validator can check is listed in
:data:`VALIDATOR_ONLY`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.runtimes import PROTOCOL_MODES, RUNTIMES
from harness.settings import AMP_MODES, PRECISIONS, UPSAMPLE_MODES

NO_DEFAULT = object()
"""A key without a default: absent means "not set" (or, for a required key, an error)."""

KINDS = ("bool", "int", "number", "str", "enum", "mapping", "list", "pair", "object", "any")
"""``pair``: an integer or [height, width]; ``mapping``: any mapping (options passed on as they are);
``object``: a mapping whose keys are declared in ``fields``."""


@dataclass(frozen=True)
class Key:
    """One key of a suite file.

    kind: one of :data:`KINDS`. doc: what it means (shown by editors on hover).
    default: the value filled in when the key is absent (:data:`NO_DEFAULT`: none).
    choices: allowed values of an ``enum``. lo, hi: the range of a number (``hi``: without
    ``measure.allow_large``); large_hi: the upper bound with ``allow_large: true`` (None: ``hi`` holds).
    nullable: ``null`` is accepted (and means the default). expect: the words after "expected" in
    the validator's message for a wrong type. pattern: a regular expression a string must match.
    items: the declaration of a list's items; min_items / max_items: its length.
    fields: the keys of an ``object``; required: the ones it must have.
    one_of: other accepted shapes (a model given as a bare name); with kind ``any``, the only ones.
    schema: JSON Schema keywords added to (or replacing) the generated ones, for what the kinds do
    not describe. rules: relations between the keys of an ``object`` (:class:`Rule`).
    ref: the name under which the schema keeps this declaration once (``$defs``) and refers to it.
    """

    kind: str
    doc: str
    default: Any = NO_DEFAULT
    choices: tuple = ()
    lo: float | None = None
    hi: float | None = None
    large_hi: float | None = None
    nullable: bool = False
    expect: str = ""
    pattern: str | None = None
    items: Key | None = None
    min_items: int = 0
    max_items: int | None = None
    fields: dict[str, Key] | None = None
    required: tuple[str, ...] = ()
    one_of: tuple[Key, ...] = ()
    schema: dict | None = None
    rules: tuple[Rule, ...] = ()
    ref: str | None = None

    def upper(self, large: bool = False) -> float | None:
        """The upper bound, lifted to ``large_hi`` when ``measure.allow_large`` is true."""
        return self.large_hi if large and self.large_hi is not None else self.hi

    def default_value(self) -> Any:
        """A fresh copy of the default (lists and mappings are not shared between suites)."""
        d = self.default
        return list(d) if isinstance(d, (list, tuple)) else dict(d) if isinstance(d, dict) else d


@dataclass(frozen=True)
class Rule:
    """A relation between keys of one section: when ``when`` holds (every key present with that value)
    or ``unless`` does not hold, the keys in ``require`` must be present, those in ``forbid`` absent,
    and those in ``values`` equal to the value given (when present). ``present``: ``when`` also holds
    only if these keys are present."""

    doc: str
    when: dict = field(default_factory=dict)
    unless: dict = field(default_factory=dict)
    present: tuple[str, ...] = ()
    require: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    values: dict = field(default_factory=dict)


LARGE = 10**9
"""Upper bound of the counts and times ``measure.allow_large: true`` lifts."""

# Upper bounds that keep a suite from asking for absurd work by accident; a suite may lift
# them with `measure: {allow_large: true}`.
LIMITS = {"warmup": 10_000, "iters": 100_000, "batch_size": 4096, "timeout_s": 7 * 24 * 3600,
          "samples": 64, "num_workers": 64, "repeat": 100, "max_warmup": 100_000}

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
DEVICE_PATTERN = r"^(cpu|mps|cuda(:\d+)?)$"
DEVICE_RE = re.compile(DEVICE_PATTERN)
BAD_SAMPLE_POLICIES = ("error", "skip")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
# multiscale merges (harness/protocols.py, docs/PROTOCOLS.md): softmax = mmsegmentation's test-time
# augmentation (the default), pytorch-encoding = PyTorch-Encoding's MultiEvalModule, logits = mean logits
MERGE_MODES = ("softmax", "pytorch-encoding", "logits")
FILTER_KEYS = ("model", "dataset", "device", "precision", "amp", "batch_size", "runtime", "protocol", "corruption",
               "task")
MAX_PIXELS = 8192


def _count(doc: str, lo: int, limit: str, default: int) -> Key:
    return Key("int", doc, default, lo=lo, hi=LIMITS[limit], large_hi=LARGE)


def _flag(doc: str, default: bool) -> Key:
    return Key("bool", doc, default)


MODEL: dict[str, Key] = {
    "name": Key("str", "registry name (segbench models), hub id, local directory or checkpoint file",
                expect="a model name, hub id or path", schema={"minLength": 1}),
    "weights": Key("str", "null: the model's own (pretrained) weights; 'random': the architecture with random "
                   "weights (speed and memory only); or a path to weights", None, nullable=True,
                   expect="null (the model's own weights), 'random' or a path"),
    "label": Key("str", "display name in results and reports", None, nullable=True,
                 expect="a display name (string)"),
    "runtime": Key("enum", "runtime of this model (default: the suite's runtimes axis)", None,
                   choices=tuple(RUNTIMES), nullable=True),
    "options": Key("mapping", "options passed to the model's loader", {}, nullable=True, expect="a mapping"),
    "trust_remote_code": _flag("run the hub repository's own model code (transformers trust_remote_code)", False),
    "task": Key("str", "the model's task when its name does not say (segmentation or depth)", None, nullable=True,
                schema={"enum": ["segmentation", "depth"]}),
}

DATASET: dict[str, Key] = {
    "name": Key("str", "registry name (segbench datasets)", expect="a dataset name", schema={"minLength": 1}),
    "root": Key("str", "folder of the dataset in its own layout (default: $SEGBENCH_DATA/<its folder>)", None,
                nullable=True, expect="a path string"),
    "split": Key("str", "split to evaluate", "validation", expect="a string"),
    "limit": Key("int", "evaluate only the first N samples (sorted order)", None, lo=1, hi=10**7, nullable=True),
    "options": Key("mapping", "options of the dataset (see segbench datasets --json)", {}, nullable=True,
                   expect="a mapping"),
}

VARIANT: dict[str, Key] = {
    "channels_last": _flag("run in channels_last memory format", False),
    "compile": _flag("torch.compile the model", False),
    "attn_implementation": Key("enum", "attention implementation of transformers models", None,
                               choices=ATTN_IMPLEMENTATIONS, nullable=True),
}

_PAIR_DOC = "an integer or [height, width], pixels"
_RESIZE_SCHEMA = {"anyOf": [
    {"type": "integer", "minimum": 1, "maximum": MAX_PIXELS},
    {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": MAX_PIXELS}, "minItems": 2,
     "maxItems": 2},
    {"type": "object", "properties": {k: {"type": "integer", "minimum": 1, "maximum": MAX_PIXELS}
                                      for k in ("short", "long")},
     "required": ["short", "long"], "additionalProperties": False}]}

PROTOCOL: dict[str, Key] = {
    "mode": Key("enum", "whole image, slide (windows) or multiscale (+ flip)", "whole", choices=PROTOCOL_MODES),
    "upsample": Key("enum", "interpolation of logits back to the label's size", "bilinear", choices=UPSAMPLE_MODES),
    "crop_size": Key("pair", f"window size of slide / multiscale inference: {_PAIR_DOC}", lo=1, hi=MAX_PIXELS),
    "stride": Key("pair", f"window stride (default 2/3 of crop_size): {_PAIR_DOC}", lo=1, hi=MAX_PIXELS),
    "scales": Key("list", "multiscale factors (default 0.5 to 1.75)", items=Key("number", "scale", lo=0.1, hi=4),
                  min_items=1, max_items=16),
    "flip": Key("bool", "add horizontally flipped inputs (multiscale; default true)"),
    "resize": Key("any", "rescale first: a short side, [height, width] or {short, long} (aspect kept)",
                  schema=_RESIZE_SCHEMA, nullable=True),
    "merge": Key("enum", "how multiscale predictions are merged (default softmax)", choices=MERGE_MODES),
    "base_size": Key("int", "PyTorch-Encoding's base size (merge: pytorch-encoding; default 520)", lo=1,
                     hi=MAX_PIXELS),
}

PROTOCOL_RULES: tuple[Rule, ...] = (
    Rule("slide inference needs crop_size", when={"mode": "slide"}, require=("crop_size",)),
    Rule("stride needs crop_size", present=("stride",), require=("crop_size",)),
    Rule("merge and base_size apply to mode multiscale only", unless={"mode": "multiscale"},
         forbid=("merge", "base_size")),
    Rule("base_size applies to merge: pytorch-encoding only", unless={"merge": "pytorch-encoding"},
         forbid=("base_size",)),
    Rule("merge: pytorch-encoding slides its own windows, scales the long side and resizes bilinearly",
         when={"merge": "pytorch-encoding"}, forbid=("stride", "resize"), values={"upsample": "bilinear"}),
)

HEAP_POLICIES = ("retained", "system")  # harness.pipeline.set_heap

MEASURE: dict[str, Key] = {
    "warmup": _count("untimed iterations before timing", 0, "warmup", 2),
    "iters": _count("timed iterations", 1, "iters", 10),
    "min_time_s": Key("number", "keep timing until this many seconds have passed", 0.0, lo=0, hi=3600,
                      large_hi=10**6),
    "accuracy": _flag("measure accuracy over the dataset", True),
    "latency": _flag("measure latency", True),
    "timeout_s": Key("number", "a cell running longer is stopped (status timeout), seconds", 1800.0, lo=1,
                     hi=LIMITS["timeout_s"], large_hi=LARGE),
    "samples": _count("qualitative samples saved per cell", 0, "samples", 2),
    "num_workers": _count("data loader worker processes", 0, "num_workers", 0),
    "heap": Key("enum", "CPU cells: keep freed memory in the heap (retained) or let the C library map and unmap "
                "each large tensor per forward (system); docs/PERFORMANCE.md", "retained", choices=HEAP_POLICIES),
    "on_bad_sample": Key("enum", "a broken sample stops the cell (error) or is skipped and recorded (skip)",
                         "error", choices=BAD_SAMPLE_POLICIES),
    "repeat": _count("repeat each cell's latency measurement", 1, "repeat", 1),
    "flops": _flag("count FLOPs", True),
    "stages": _flag("time preprocess / forward / postprocess separately", True),
    "warmup_cv": Key("number", "warm up until the coefficient of variation of recent iterations is below this",
                     None, lo=0.001, hi=1.0, nullable=True),
    "max_warmup": _count("upper bound of warmup iterations under warmup_cv", 1, "max_warmup", 200),
    "allow_large": _flag("lift the upper bounds of counts and times (and batch sizes)", False),
    "boundary": _flag("Boundary IoU and trimap figures in the accuracy pass (docs/ROBUSTNESS.md)", True),
    "calibration": _flag("ECE, MCE, NLL and Brier score of logit models in the accuracy pass", True),
    "boundary_dilation_ratio": Key("number", "Boundary IoU band: this fraction of the image diagonal", 0.02,
                                   lo=0.001, hi=0.5),
    "trimap_widths": Key("list", "trimap band widths, pixels (distinct)", [1, 2, 5, 10, 20, 40],
                         items=Key("int", "width", lo=1, hi=1000), min_items=1, max_items=32),
    "calibration_bins": Key("int", "equal-width confidence bins of ECE / MCE", 15, lo=1, hi=1000),
}

FILTER: dict[str, Key] = {k: Key("any", f"cells whose {k} is this value (or one of these)") for k in FILTER_KEYS}


def _corruption_fields() -> dict[str, Key]:
    from harness.robustness.corruptions import CORRUPTIONS as NAMES
    from harness.robustness.corruptions import GROUPS, SEVERITIES

    name = Key("enum", "a corruption or group name", choices=tuple(NAMES) + tuple(GROUPS))
    severity = Key("int", "severity", lo=min(SEVERITIES), hi=max(SEVERITIES))
    return {
        "names": Key("any", "corruption names or groups (all, common, extra, noise, blur, weather, digital)",
                     one_of=(name, Key("list", "names", items=name, min_items=1))),
        "severities": Key("any", "severities 1..5", one_of=(severity, Key("list", "severities", items=severity,
                                                                          min_items=1))),
        "clean": Key("bool", "also the clean images (default true)"),
        "seed": Key("int", "seed of the corruptions' random draws", lo=0, hi=2**63 - 1),
        "reference": Key("str", "the model that normalises CE / mCE (a model name or label of the suite)"),
    }


def _depth_fields() -> dict[str, Key]:
    """The ``depth:`` section's keys (the depth task's ``SETTINGS_KEYS``, each declared here)."""
    from harness.depth.align import ALIGNMENTS
    from harness.depth.metrics import REDUCTIONS
    from harness.tasks.depth import PREDICT_CROPS, SETTINGS_KEYS, SILOG_FORMS

    metres = "metres"
    fields = {
        "alignment": Key("enum", "per-image alignment (default: from the model's declared output)",
                         choices=ALIGNMENTS),
        "crop": Key("any", "evaluation crop: eigen, eigen_kitti, garg, kb, or null (default: the dataset's)",
                    nullable=True),
        "min_depth": Key("number", f"valid ground truth above this, {metres}", lo=0, hi=1e6),
        "max_depth": Key("number", f"valid ground truth below this, {metres}", lo=0, hi=1e6),
        "flip": Key("bool", "average with the horizontally flipped prediction"),
        "predict_crop": Key("enum", "predict on this crop and paste into the frame (KITTI kb)",
                            choices=PREDICT_CROPS, nullable=True),
        "silog": Key("enum", "SILog form(s): bts (x100), half (Depth Anything V2), both", choices=tuple(SILOG_FORMS)),
        "reduction": Key("enum", "average per image (default) or pool pixels", choices=REDUCTIONS),
        "min_valid_pixels": Key("int", "an image with fewer valid pixels is not scored", lo=1, hi=10**9),
    }
    if tuple(fields) != SETTINGS_KEYS:
        raise RuntimeError(f"suite_spec: depth keys {tuple(fields)} differ from harness.tasks.depth.SETTINGS_KEYS")
    return fields


CORRUPTIONS = _corruption_fields()
DEPTH = _depth_fields()


def _entries(fields: dict[str, Key], what: str, doc: str) -> Key:
    """A list of entries, each a bare name or a mapping with a name."""
    entry = Key("object", f"a {what}: a bare name, or a mapping with its name", fields=fields, required=("name",),
                one_of=(Key("str", f"{what} name", schema={"minLength": 1}),), ref=what)
    return Key("list", doc, items=entry, min_items=1)


def _axis(item: Key, doc: str, default: list) -> Key:
    return Key("list", doc, default, items=item, min_items=1)


_PROTOCOL = Key("object", "how a prediction is made (docs/PROTOCOLS.md)", fields=PROTOCOL, rules=PROTOCOL_RULES,
                ref="protocol")
_FILTER = Key("object", "settings a cell must match (each value, or one of a list of values)", fields=FILTER,
              schema={"minProperties": 1}, ref="filter")

TOP: dict[str, Key] = {
    "extends": Key("str", "a base suite (path relative to this file's folder) whose keys this file overrides"),
    "name": Key("str", "the suite's name (default: the file name without .yaml)", pattern=NAME_PATTERN),
    "description": Key("str", "what the suite measures", "", expect="a string"),
    "models": _entries(MODEL, "model", "models: registry names (segbench models), hub ids or paths"),
    "datasets": _entries(DATASET, "dataset", "datasets: registry names (segbench datasets) with their root"),
    "devices": _axis(Key("str", "device", pattern=DEVICE_PATTERN, expect="cpu, cuda, cuda:N or mps"),
                     "devices: cpu, cuda, cuda:N or mps", ["cpu"]),
    "precisions": _axis(Key("enum", "precision", choices=PRECISIONS), "numeric precisions", ["fp32"]),
    "amp": _axis(Key("enum", "how fp16/bf16 is applied", choices=AMP_MODES),
                 "how fp16 and bf16 are applied: torch.autocast, or the model cast", ["autocast"]),
    "batch_sizes": _axis(Key("int", "batch size", lo=1, hi=LIMITS["batch_size"], large_hi=LARGE), "batch sizes",
                         [1]),
    "runtimes": _axis(Key("enum", "runtime", choices=tuple(RUNTIMES)), "runtimes", ["pytorch"]),
    "variants": Key("list", "model variants (each cell runs under each)", nullable=True, min_items=1,
                    items=Key("object", "a variant", fields=VARIANT, ref="variant")),
    "protocol": Key("any", "one protocol, or a list of them (an axis: each cell runs under each)", nullable=True,
                    one_of=(_PROTOCOL, Key("list", "protocols", items=_PROTOCOL, min_items=1))),
    "measure": Key("object", "what is measured and how long", fields=MEASURE, nullable=True, ref="measure"),
    "include": Key("list", "keep only cells matching one entry", items=_FILTER, nullable=True),
    "exclude": Key("list", "drop cells matching one entry", items=_FILTER, nullable=True),
    "seed": Key("int", "random seed (data order, random weights, bootstrap)", 0, lo=0, hi=2**31 - 1),
    "corruptions": Key("object", "the corruption axis: each accuracy cell also on corrupted inputs "
                       "(docs/ROBUSTNESS.md)", nullable=True, ref="corruptions", fields=CORRUPTIONS),
    "depth": Key("object", "settings of the depth cells (docs/DEPTH.md, Running depth suites)", nullable=True,
                 ref="depth", fields=DEPTH),
}
REQUIRED = ("models", "datasets")

TOP_KEYS = tuple(TOP)
MODEL_KEYS = tuple(MODEL)
DATASET_KEYS = tuple(DATASET)
VARIANT_KEYS = tuple(VARIANT)
PROTOCOL_KEYS = tuple(PROTOCOL)
MEASURE_KEYS = tuple(MEASURE)
DEFAULT_PROTOCOL = {k: s.default for k, s in PROTOCOL.items() if s.default is not NO_DEFAULT}
DEFAULT_MEASURE = {k: s.default for k, s in MEASURE.items()}

VALIDATOR_ONLY = (
    "model names: a registry name, hub id or path, checked by the runtime that would load it",
    "dataset names and their options, checked by the dataset registry",
    "protocol.stride larger than protocol.crop_size",
    "protocol.crop_size not square under merge: pytorch-encoding",
    "extends: the base file must exist, stay in the suite's folder and not make a cycle",
    "include / exclude that leave no cell",
    "measure.trimap_widths: distinct widths",
    "corruptions.reference: one of the suite's models",
    "depth.min_depth below depth.max_depth; depth.crop: a named crop or fractions",
    "models[].task: a declared task (the schema lists them)",
)
"""What :func:`harness.suite.load_suite` checks that a JSON Schema cannot (registries, files,
comparisons between two values)."""
