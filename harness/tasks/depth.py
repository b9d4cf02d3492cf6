"""Monocular depth estimation: depth maps scored per image against metric ground truth.

The ground truth is the sample's ``depth`` (float32 metres, invalid pixels 0); the model's
postprocess gives maps at the image's size in the model's own output space (``depth_kind``:
metric, relative or disparity); the engine is :class:`harness.depth.DepthMetrics` with

- the dataset's evaluated range (``min_depth``, ``max_depth``) and default crop (NYU ``eigen``,
  KITTI ``garg``), unless the suite's ``depth:`` section overrides them;
- the alignment the model's declared output needs (metric: ``none``; relative depth: ``lstsq``
  in depth; disparity: ``lstsq_disparity``, the MiDaS / DPT evaluation), unless the suite says
  otherwise (only alignments that make sense for the model's output are accepted);
- per-image metrics averaged over images (ZoeDepth / BTS / Marigold), with the pixel-pooled
  variant recorded beside them.

Suite settings (``depth:``, validated in :func:`harness.suite.validate`, in a depth cell's
``task_options``): :data:`SETTINGS_KEYS`. ``flip: true`` averages the prediction of the image and
of its mirror (flipped back) in the model's output space; ``predict_crop: kb`` predicts on the
KITTI benchmark crop of a full-size frame and pastes the prediction into a full-size map, the
BTS / DPT KITTI convention (pixels outside the crop are not evaluated).

Only the declarations are imported with the module; torch and numpy work happens in functions.
"""

from __future__ import annotations

from typing import Any

from harness.quantities import Check, Quantity
from harness.tasks.base import Task

ALIGN_FOR_SPACE = {"none": "none", "depth": "lstsq", "disparity": "lstsq_disparity"}
# the alignments that give a meaningful depth for each declared output kind
ALIGNMENTS_FOR_KIND = {"metric": ("none", "median", "lstsq", "lstsq_disparity"), "relative": ("median", "lstsq"),
                       "disparity": ("lstsq_disparity",)}
SILOG_FORMS = {"bts": ("silog",), "half": ("silog_half",), "both": ("silog", "silog_half")}
SETTINGS_KEYS = ("alignment", "crop", "min_depth", "max_depth", "flip", "predict_crop", "silog", "reduction",
                 "min_valid_pixels")
PREDICT_CROPS = ("kb",)


def _metric(key: str, header: str, unit: str, better: str, display: str = "f3", check: Check | None = None,
            paper: bool = False) -> Quantity:
    # shown only when some depth cell carries it: a segmentation-only report has no depth column
    return Quantity(key, f"accuracy.metrics.{key}", header, unit, better, display, key, task="depth", check=check,
                    shown=key, paper=paper)


def _published(key: str, header: str, unit: str, display: str = "f3") -> Quantity:
    return Quantity(f"published_{key}", f"provenance.published.{key}", header, unit, None, display, f"published_{key}",
                    task="depth", varies=False, shown=f"published_{key}")


def _delta_d1(row: dict) -> float | None:
    """Measured minus published δ1, in percentage points."""
    if row.get("d1") is None or row.get("published_d1") is None:
        return None
    return 100 * (row["d1"] - row["published_d1"])


def _delta_abs_rel(row: dict) -> float | None:
    """Measured minus published AbsRel."""
    if row.get("abs_rel") is None or row.get("published_abs_rel") is None:
        return None
    return row["abs_rel"] - row["published_abs_rel"]


QUANTITIES: tuple[Quantity, ...] = (
    _metric("abs_rel", "AbsRel", "ratio", "min", paper=True,
            check=Check("growth", "max_abs_rel_growth", 0.02, "relative AbsRel growth that fails (0.02 = 2%)")),
    _metric("sq_rel", "SqRel", "m", "min"),
    _metric("rmse", "RMSE (m)", "m", "min", paper=True,
            check=Check("growth", "max_rmse_growth", 0.02, "relative depth RMSE growth that fails (0.02 = 2%)")),
    _metric("rmse_log", "RMSE log", "ratio", "min"),
    _metric("log10", "log10", "ratio", "min"),
    _metric("silog", "SILog (×100)", "ratio", "min", display="num"),
    _metric("silog_half", "SILog λ=½", "ratio", "min"),
    _metric("d1", "δ1 (%)", "fraction", "max", display="pct", paper=True,
            check=Check("drop", "max_d1_drop", 0.005, "absolute depth δ1 drop that fails (fraction: 0.005 = 0.5 points)")),
    _metric("d2", "δ2 (%)", "fraction", "max", display="pct"),
    _metric("d3", "δ3 (%)", "fraction", "max", display="pct"),
    _published("abs_rel", "published AbsRel", "ratio"),
    _published("d1", "published δ1 (%)", "fraction", display="pct"),
    _published("rmse", "published RMSE (m)", "m"),
    Quantity("delta_abs_rel", None, "Δ AbsRel", "ratio", None, "f3", "delta_abs_rel", task="depth",
             shown="published_abs_rel", derive=_delta_abs_rel, inputs=("published_abs_rel", "abs_rel")),
    Quantity("delta_d1", None, "Δ δ1 (pts)", "points", None, "num", "delta_d1", task="depth",
             shown="published_d1", derive=_delta_d1, inputs=("published_d1", "d1")),
)

DEPTH = Task("depth", "monocular depth: depth maps in metres, per-image AbsRel, RMSE, δ1... (relative models "
             "aligned per image)", QUANTITIES, headline="abs_rel", batch_field="depths", module="harness.tasks.depth")


# -- the protocol of a cell ---------------------------------------------------------------------
def resolve_protocol(options: dict, model, dataset) -> dict:
    """The depth protocol a cell runs: the suite's ``depth:`` settings over the dataset's and the model's.

    Keys: min_depth, max_depth (metres), crop, alignment, reduction, silog_forms (which SILog forms are
    reported: the suite's ``silog``), flip, predict_crop, min_valid_pixels, and where each came from (``sources``).
    ConfigError when the alignment does not suit the model's declared output.
    """
    from harness.errors import ConfigError

    kind, space = getattr(model, "depth_kind", "metric"), getattr(model, "align_space", "none")
    sources = {}

    def pick(key: str, default, origin: str):
        sources[key] = "suite" if key in options else origin
        return options[key] if key in options else default

    out = {"min_depth": float(pick("min_depth", dataset.min_depth, "dataset")),
           "max_depth": float(pick("max_depth", dataset.max_depth, "dataset")),
           "crop": pick("crop", dataset.default_crop, "dataset"),
           "alignment": pick("alignment", ALIGN_FOR_SPACE.get(space, "none"), f"model ({kind}, aligned in {space})"),
           "reduction": pick("reduction", "image", "default"), "silog_forms": pick("silog", "both", "default"),
           "flip": bool(pick("flip", False, "default")), "predict_crop": pick("predict_crop", None, "default"),
           "min_valid_pixels": int(pick("min_valid_pixels", 1, "default"))}
    allowed = ALIGNMENTS_FOR_KIND.get(kind, ALIGNMENTS_FOR_KIND["metric"])
    if out["alignment"] not in allowed:
        raise ConfigError(f"depth.alignment {out['alignment']!r} does not suit model {model.name!r}, which predicts "
                          f"{kind} depth (aligned in {space} space): use {' or '.join(allowed)}")
    if not out["min_depth"] < out["max_depth"]:
        raise ConfigError(f"depth range ({out['min_depth']}, {out['max_depth']}) of dataset {dataset.name!r}: "
                          "expected min_depth < max_depth (metres)")
    out["sources"] = sources
    return out


def prediction_protocol(cell) -> dict | None:
    """The protocol a depth cell predicts each image under (:func:`predict_with_protocol`), or None when
    whole batches go through the model's forward and postprocess (no flip, no prediction crop)."""
    opts = cell.task_options or {}
    mode = cell.protocol.get("mode", "whole")
    if mode == "whole" and not opts.get("flip") and not opts.get("predict_crop"):
        return None
    return {**cell.protocol, "flip": bool(opts.get("flip")), "predict_crop": opts.get("predict_crop")}


def check_compatible(model, dataset) -> None:
    """ConfigError unless the model predicts depth and the dataset has depth ground truth."""
    from harness.errors import ConfigError

    if getattr(model, "task", "segmentation") != "depth":
        raise ConfigError(f"model {model.name!r} does not predict depth (task {getattr(model, 'task', '?')!r}); "
                          "load it with task: depth or pair it with a segmentation dataset")
    if getattr(dataset, "task", "segmentation") != "depth":
        raise ConfigError(f"dataset {dataset.name!r} has no depth ground truth")


# -- the metric engine --------------------------------------------------------------------------
class DepthEngine:
    """:class:`harness.depth.DepthMetrics` under a cell's protocol (see :func:`resolve_protocol`)."""

    def __init__(self, protocol: dict, device, model_facts: dict | None = None):
        from harness.depth import DepthMetrics

        self.protocol = protocol
        self.model_facts = model_facts or {}
        self.metrics = DepthMetrics(min_depth=protocol["min_depth"], max_depth=protocol["max_depth"],
                                    crop=protocol["crop"], alignment=protocol["alignment"],
                                    reduction=protocol["reduction"], min_valid_pixels=protocol["min_valid_pixels"],
                                    device=device)

    def prepare(self, model) -> None:
        """Before the accuracy clock starts: load the metrics' compiled CPU kernel where it will run."""
        import torch

        from harness.depth import fused

        if self.metrics.engine_for(torch.device(model.device)) == "fused":
            fused.warm()

    def _masks(self, shape: tuple[int, int]):
        """The evaluated-pixel mask of a prediction pasted into a full-size map (None without a prediction crop)."""
        import torch

        from harness.depth.crops import kb_box

        if self.protocol.get("predict_crop") != "kb":
            return None
        top, bottom, left, right = kb_box(*shape)
        mask = torch.zeros(shape, dtype=torch.bool)
        mask[top:bottom, left:right] = True
        return mask

    def update(self, preds: list, targets: list) -> None:
        """Add predictions (float (H, W) tensors in the model's output space) and ground-truth depth (metres)."""
        import numpy as np
        import torch

        from harness.errors import ConfigError

        for pred, target in zip(preds, targets, strict=True):
            t = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))
            try:
                self.metrics.update(pred.float(), t, self._masks(tuple(t.shape)))
            except ValueError as e:  # a crop that does not fit the maps, a prediction of the wrong shape
                raise ConfigError(f"depth metrics of a {t.shape[0]}x{t.shape[1]} ground truth: {e} (set the "
                                  "suite's depth.crop, null for none, or check the dataset)") from None

    def reduce(self, placement) -> None:
        """Sum the state (float64 sums) over the placement's processes."""
        if placement.world_size == 1:
            return
        self.metrics.load_state_tensor(placement.sum(self.metrics.state_tensor()))

    def compute(self) -> dict:
        """The metrics of the protocol's reduction (fractions and metres; NaN where undefined), the other
        reduction under ``pooled`` / ``per_image``, the counts and the protocol as run."""
        main = self.metrics.compute()
        other = self.metrics.compute("pixel" if self.protocol["reduction"] == "image" else "image")
        dropped = {"silog", "silog_half"} - set(SILOG_FORMS[self.protocol["silog_forms"]])
        out = {k: v for k, v in main.items() if k not in dropped}
        from harness.depth import METRICS

        out["pooled" if self.protocol["reduction"] == "image" else "per_image"] = {
            k: other[k] for k in METRICS if k not in dropped}
        out["protocol"] = {**self.protocol, **self.metrics.settings(), **self.model_facts}
        for k in dropped:
            out["protocol"].pop(k, None)
        return out


_LAST: dict[str, Any] = {}  # the protocol of the engine made last in this process (one cell per process)


def make_engine(model, dataset, seed: int = 0, cell=None) -> DepthEngine:
    """The engine of a depth cell (``cell`` gives its ``depth:`` settings; None: the defaults)."""
    protocol = resolve_protocol(dict(getattr(cell, "task_options", None) or {}), model, dataset)
    describe = getattr(model, "describe", None)
    facts = {"model_output": describe() if callable(describe) else {"depth_kind": getattr(model, "depth_kind", None)}}
    engine = DepthEngine(protocol, model.device, facts)
    _LAST["protocol"] = protocol
    return engine


def describe_dataset(dataset) -> dict:
    """The dataset's depth protocol (range in metres, default crop, storage) and the listed entries it does
    not evaluate (KITTI Eigen frames without ground truth: count, total listed, the first reasons);
    class names and palette when the dataset also has segmentation labels."""
    import numpy as np

    excluded = list(getattr(dataset, "excluded", []) or [])
    info = dict(dataset.protocol()) if callable(getattr(dataset, "protocol", None)) else {}
    info["excluded"] = len(excluded)
    info["excluded_examples"] = excluded[:5]
    if getattr(dataset, "num_listed", None) is not None:
        info["num_listed"] = int(dataset.num_listed)
    palette = getattr(dataset, "palette", None)
    names = list(getattr(dataset, "class_names", []) or [])
    return {"class_names": names or None, "palette": np.asarray(palette).tolist() if palette is not None and names
            else None, "data": {"depth": info}}


# -- prediction ---------------------------------------------------------------------------------
def _predict_image(model, image, flip: bool):
    """One image's prediction (H, W) in the model's output space; with ``flip`` the mean of the image's
    and its mirror's predictions (the mirror's flipped back), as ZoeDepth's ``infer`` does."""
    import torch
    from PIL import Image

    size = [(image.height, image.width)]
    pred = model.postprocess(model.forward(model.preprocess([image]).to(model.device)), size)[0].float()
    if not flip:
        return pred
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    back = model.postprocess(model.forward(model.preprocess([mirrored]).to(model.device)), size)[0].float()
    return 0.5 * (pred + torch.flip(back, dims=[-1]))


def predict_with_protocol(model, image, protocol: dict):
    """A float32 (H, W) prediction on the model's device under the depth protocol (flip, KITTI kb crop)."""
    import torch

    from harness.depth.crops import kb_box
    from harness.errors import UnsupportedError

    mode = protocol.get("mode", "whole")
    if mode != "whole":
        raise UnsupportedError(f"depth cells predict whole images; protocol {mode!r} is for segmentation "
                               "(flip test-time augmentation is `depth: {flip: true}`)")
    if describes_own_flip(model) and protocol.get("flip"):
        raise UnsupportedError(f"model {model.name!r} already averages flipped predictions (its `flip` option); "
                               "depth.flip would do it twice")
    if protocol.get("predict_crop") != "kb":
        return _predict_image(model, image, bool(protocol.get("flip")))
    try:
        top, bottom, left, right = kb_box(image.height, image.width)
    except ValueError as e:
        raise UnsupportedError(f"depth.predict_crop kb: {e}") from None
    inner = _predict_image(model, image.crop((left, top, right, bottom)), bool(protocol.get("flip")))
    full = torch.full((image.height, image.width), float("nan"), dtype=torch.float32, device=inner.device)
    full[top:bottom, left:right] = inner
    return full


def describes_own_flip(model) -> bool:
    """Whether the model averages flipped predictions itself (ZoeDepth with ``flip=True``)."""
    describe = getattr(model, "describe", None)
    return bool(callable(describe) and describe().get("flip"))


# -- samples, report ----------------------------------------------------------------------------
def save_sample(run_dir, cell_id: str, dataset_name: str, dataset, sample_id: str, pred, target) -> dict:
    """The input, the ground-truth depth and this cell's aligned prediction as colormap PNGs (one colour
    scale per sample) and its error map; see :func:`harness.tasks.depth_samples.save_depth_sample`."""
    from harness.tasks.depth_samples import save_depth_sample

    return save_depth_sample(run_dir, cell_id, dataset_name, dataset, sample_id, pred, target, _LAST.get("protocol"))


def report_panels(pairs: list) -> list[dict]:
    """Grouped bars of AbsRel and δ1 per model and dataset, with the published figures beside them."""
    from harness.report.depth_panels import metric_bars

    return metric_bars(pairs)


def report_qualitative(runs: list) -> tuple[str, list[str]]:
    """The depth panel (input, ground truth, each model's depth and error map) and each cell's protocol."""
    from harness.report.depth_panels import panel_html

    return panel_html(runs)


def published(cell, model) -> dict | None:
    """The published figures of this cell's checkpoint on its dataset under its alignment (real weights
    only); see :mod:`harness.reference.depth`."""
    from harness.reference.depth import lookup

    if model.weights.get("source") == "random":
        return None
    alignment = (cell.task_options or {}).get("alignment") or ALIGN_FOR_SPACE.get(
        getattr(model, "align_space", "none"), "none")
    return lookup(cell.model, getattr(model, "name", None), cell.weights, cell.dataset, alignment)
