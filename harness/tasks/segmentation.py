"""Semantic segmentation: label maps scored by a dataset-level confusion matrix.

The ground truth is the sample's ``label`` (int64 class indices, ``ignore_index`` elsewhere);
the model's postprocess gives label maps at the label's size; the engine is
:class:`harness.metrics.SegmentationMetrics` (mmsegmentation's conventions: intersections and
unions summed over the dataset, NaN for classes absent from it), plus a bootstrap interval of
mIoU over images when there are enough images for one.

Only the declarations are imported with the module; torch and numpy work happens in functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.quantities import Check, Quantity
from harness.tasks.base import Task

MIN_BOOTSTRAP_IMAGES = 20
"""Below this many images an interval over images says little (the resamples repeat a handful of
images), so none is reported; ``metrics.mIoU_ci_note`` says why instead."""

RANDOM_NOTE = "random weights: speed and memory only, accuracy not measured"


def _delta_miou(row: dict) -> float | None:
    """Measured minus published mIoU, in percentage points."""
    if row.get("mIoU") is None or row.get("published_mIoU") is None:
        return None
    return 100 * (row["mIoU"] - row["published_mIoU"])


def _fraction(key: str, header: str, check: Check | None = None, shown: str = "always", paper: bool = False) -> Quantity:
    return Quantity(key, f"accuracy.metrics.{key}", header, "fraction", "max", "pct", key, task="segmentation",
                    check=check, shown=shown, paper=paper)


CALIBRATION_NOTE = "accuracy.metrics.calibration_note"


def _calibration(key: str, header: str, unit: str, display: str) -> Quantity:
    """A calibration figure (lower is better), shown when some cell has it."""
    return Quantity(key, f"accuracy.metrics.{key}", header, unit, "min", display, key, task="segmentation",
                    shown=key, note=CALIBRATION_NOTE)


def _trimap(kind: str, width: int, table: bool) -> Quantity:
    """Trimap ``mIoU`` or ``aAcc`` in the band of ``width`` pixels around ground-truth boundaries."""
    key = f"trimap_{kind}_{width}px"
    return Quantity(key, f"accuracy.metrics.trimap_{kind}.{width}", f"trimap {kind} {width} px (%)", "fraction",
                    "max", "pct", key, task="segmentation", shown=key, table=table)


def _per_class(key: str, header: str) -> Quantity:
    return Quantity(key, f"accuracy.metrics.{key}", header, "fraction", "max", "pct", key, task="segmentation",
                    table=False, per_class=True)


QUANTITIES: tuple[Quantity, ...] = (
    _fraction("mIoU", "mIoU (%)", Check("drop", "max_miou_drop", 0.005,
                                         "absolute mIoU drop that fails (fraction: 0.005 = 0.5 points)"), paper=True),
    _fraction("aAcc", "aAcc (%)", Check("drop", "max_aacc_drop", 0.005, "absolute aAcc drop that fails (fraction)"),
              paper=True),
    _fraction("mAcc", "mAcc (%)", paper=True),
    _fraction("mDice", "mDice (%)", shown="mDice"),
    _fraction("mPrecision", "mPrecision (%)", shown="mPrecision"),
    _fraction("mRecall", "mRecall (%)", shown="mRecall"),
    Quantity("published_mIoU", "provenance.published.mIoU", "published mIoU (%)", "fraction", None, "pct",
             "published_mIoU", task="segmentation", varies=False, shown="published_mIoU", aliases=("published",)),
    Quantity("delta_mIoU", None, "Δ mIoU (pts)", "points", None, "num", "delta_mIoU", task="segmentation",
             shown="published_mIoU", aliases=("delta",), derive=_delta_miou,
             inputs=("published_mIoU", "mIoU")),
    _fraction("mBIoU", "mBIoU (%)", Check("drop", "max_mbiou_drop", None,
                                           "absolute mean Boundary IoU drop that fails (fraction)"), shown="mBIoU"),
    _trimap("mIoU", 5, table=True),
    _trimap("aAcc", 5, table=False),
    _trimap("mIoU", 20, table=False),
    _calibration("ECE", "ECE (%)", "fraction", "pct"),
    _calibration("MCE", "MCE (%)", "fraction", "pct"),
    _calibration("NLL", "NLL (nats/px)", "nats", "num"),
    _calibration("Brier", "Brier", "score", "num"),
    _per_class("IoU", "IoU (%)"),
    _per_class("Acc", "Acc (%)"),
    _per_class("Dice", "Dice (%)"),
    _per_class("Precision", "Precision (%)"),
    _per_class("Recall", "Recall (%)"),
    _per_class("BIoU", "Boundary IoU (%)"),
)

SEGMENTATION = Task("segmentation", "semantic segmentation: label maps, confusion-matrix metrics (mIoU, ...)",
                    QUANTITIES, headline="mIoU", batch_field="labels", module="harness.tasks.segmentation")


def check_compatible(model, dataset) -> None:
    """ConfigError when the model's label space is not the dataset's."""
    from harness.errors import ConfigError

    ms, ds = getattr(model, "label_set", None), getattr(dataset, "label_set", None)
    if ms and ds and ms != ds:
        raise ConfigError(f"label spaces differ: model {model.name!r} predicts {ms!r} labels "
                          f"({model.num_labels} classes) but dataset {dataset.name!r} is {ds!r} "
                          f"({dataset.num_classes} classes)")
    if not (ms and ds) and model.output_kind == "logits" and model.num_labels != dataset.num_classes:
        raise ConfigError(f"label spaces differ: model {model.name!r} has {model.num_labels} labels, "
                          f"dataset {dataset.name!r} has {dataset.num_classes} classes")


class SegmentationEngine:
    """Confusion-matrix metrics with per-image records for a bootstrap interval (see the module
    docstring), plus, in the same pass, Boundary IoU and trimap counts (``boundary``, a
    :class:`harness.boundary.BoundaryMetrics`) and calibration statistics (``calibration``, a
    :class:`harness.calibration.CalibrationMetrics`; ``calibration_note`` says why there is none
    for a model that cannot be calibrated). Every state is a sum: ``reduce`` all-reduces each."""

    def __init__(self, num_classes: int, ignore_index: int, device, seed: int = 0, boundary=None,
                 calibration=None, calibration_note: str | None = None):
        from harness.metrics import SegmentationMetrics

        self.metrics = SegmentationMetrics(num_classes, ignore_index=ignore_index, device=device, keep_per_image=True)
        self.seed = seed
        self.num_images = 0
        self._per_image: tuple[Any, Any] | None = None  # (inter, union) after a reduce over ranks
        self.boundary, self.calibration, self.calibration_note = boundary, calibration, calibration_note
        self.calibrated_images = 0

    def prepare(self, model) -> None:
        """Before the accuracy clock starts: on the CPU, load the compiled resize + argmax (and find its
        arithmetic), as the cell's first inference loads everything else."""
        if model.device.type == "cpu":
            from harness.models.resize_argmax import arithmetic

            arithmetic()

    def postprocess(self, model, outputs, sizes: list, targets: list) -> list:
        """The label maps of ``model.postprocess(outputs, sizes)``; for a calibrated model they come from
        :meth:`harness.calibration.CalibrationMetrics.update_logits` (the same label maps, from the one
        resize the calibration statistics need; each at its target's size, which is the image's)."""
        if self.calibration is None:
            return model.postprocess(outputs, sizes)
        import torch

        with torch.inference_mode():
            maps = [self.calibration.update_logits(outputs[i], target, mode=model.upsample)
                    for i, target in enumerate(targets)]
        self.calibrated_images += len(maps)
        return maps

    def update(self, preds: list, targets: list) -> None:
        """Add label maps (int64 tensors on the device) and their ground truths (arrays)."""
        import numpy as np
        import torch

        for pred, target in zip(preds, targets, strict=True):
            t = torch.from_numpy(np.asarray(target)).to(pred.device)
            self.metrics.update(pred.unsqueeze(0), t.unsqueeze(0))
            if self.boundary is not None:
                self.boundary.update(pred, t)
            self.num_images += 1

    def reduce(self, placement) -> None:
        """Sum the counts (confusion, boundary, calibration) over the placement's processes and gather
        the per-image records."""
        import numpy as np

        if placement.world_size == 1:
            return
        self.metrics.load_state_tensor(placement.sum(self.metrics.state_tensor()))
        for engine in (self.boundary, self.calibration):
            if engine is not None:
                engine.load_state_tensor(placement.sum(engine.state_tensor()))
        self.calibrated_images = placement.total(self.calibrated_images)
        inter, union = self.metrics.per_image()[:2]
        parts = [p for p in placement.gather((np.asarray(inter), np.asarray(union))) if len(p[0])]
        C = self.metrics.num_classes
        self._per_image = (np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, C)),
                           np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, C)))
        self.num_images = sum(placement.gather(self.num_images))

    def compute(self) -> dict:
        """The metrics (see :func:`harness.metrics.metrics_from_confusion`), ``num_images`` and the
        95% bootstrap interval ``mIoU_ci`` over images (or ``mIoU_ci_note`` saying why there is none)."""
        from harness.metrics import bootstrap_miou

        out = self.metrics.compute()
        out["num_images"] = self.num_images
        inter, union = self._per_image if self._per_image is not None else self.metrics.per_image()[:2]
        if self.num_images >= MIN_BOOTSTRAP_IMAGES:
            out["mIoU_ci"] = list(bootstrap_miou(inter, union, seed=self.seed))
        else:
            out["mIoU_ci_note"] = (f"no bootstrap interval: {self.num_images} image(s), fewer than the "
                                   f"{MIN_BOOTSTRAP_IMAGES} an interval over images needs")
        if self.boundary is not None:
            out.update(boundary_metrics(self.boundary.compute()))
        out.update(self._calibration_metrics())
        return out

    def _calibration_metrics(self) -> dict:
        """ECE, MCE, NLL, Brier and the reliability data, or ``calibration_note`` saying why there are none."""
        if self.calibration is None:
            return {"calibration_note": self.calibration_note} if self.calibration_note else {}
        if self.calibrated_images == 0 and self.num_images > 0:
            return {"calibration_note": PROTOCOL_CALIBRATION_NOTE}
        c = self.calibration.compute()
        return {"ECE": c["ECE"], "MCE": c["MCE"], "NLL": c["NLL"], "Brier": c["Brier"],
                "calibration": {k: c[k] for k in ("accuracy", "pixels", "n_bins", "reliability")}}


PROTOCOL_CALIBRATION_NOTE = ("not measured under this protocol: calibration reads the whole protocol's logits; "
                             "the slide and multi-scale predictions arrive as label maps")


def boundary_metrics(b: dict) -> dict:
    """A :meth:`harness.boundary.BoundaryMetrics.compute` result as the cell's metrics: ``mBIoU``, per-class
    ``BIoU``, ``boundary`` (the band settings), ``trimap`` (lists per width) and ``trimap_mIoU`` /
    ``trimap_aAcc`` keyed by the width in pixels (as text, the JSON key)."""
    trimap = b["trimap"]
    return {"mBIoU": b["mBIoU"], "BIoU": b["BIoU"],
            "boundary": {"dilation_ratio": b["dilation_ratio"], "dilation_px": b["dilation_px"]},
            "trimap": trimap,
            "trimap_mIoU": {str(w): v for w, v in zip(trimap["widths_px"], trimap["mIoU"], strict=True)},
            "trimap_aAcc": {str(w): v for w, v in zip(trimap["widths_px"], trimap["aAcc"], strict=True)}}


def calibration_unsupported(model) -> str | None:
    """Why ``model``'s confidence cannot be calibrated here (None: it can): a label-map model has no
    probabilities; a runtime with its own postprocess (e.g. LiteRT's letterbox crop) does not resize
    its logits the standard way the calibration statistics reproduce."""
    from harness.calibration import unsupported_reason
    from harness.models.base import SegmentationModel

    reason = unsupported_reason(model)
    if reason is None and type(model).postprocess is not SegmentationModel.postprocess:
        reason = (f"not measured for the {model.runtime} runtime: its postprocess is its own (not the standard "
                  "resize of the logits that calibration reads)")
    return reason


def make_engine(model, dataset, seed: int = 0, measure: dict | None = None, cell=None) -> SegmentationEngine:
    """The engine for ``model`` on ``dataset``; ``measure`` (the suite's, or the ``cell``'s; defaults when
    None) switches Boundary IoU (``boundary``, ``boundary_dilation_ratio``, ``trimap_widths``) and
    calibration (``calibration``, ``calibration_bins``) on or off."""
    if cell is not None:
        measure = cell.measure
    from harness.boundary import BoundaryMetrics
    from harness.calibration import CalibrationMetrics
    from harness.suite import DEFAULT_MEASURE

    m = {**DEFAULT_MEASURE, **(measure or {})}
    C, ignore = dataset.num_classes, dataset.ignore_index
    boundary = (BoundaryMetrics(C, ignore_index=ignore, dilation_ratio=m["boundary_dilation_ratio"],
                                trimap_widths=m["trimap_widths"], device=model.device) if m["boundary"] else None)
    note = calibration_unsupported(model) if m["calibration"] else None
    calibration = (CalibrationMetrics(C, ignore_index=ignore, n_bins=m["calibration_bins"], device=model.device)
                   if m["calibration"] and note is None else None)
    return SegmentationEngine(C, ignore, model.device, seed, boundary=boundary, calibration=calibration,
                              calibration_note=note)


def describe_dataset(dataset) -> dict:
    """Class names and, when the dataset has one, its palette (lists), for the result's provenance."""
    import numpy as np

    palette = getattr(dataset, "palette", None)
    return {"class_names": list(dataset.class_names),
            "palette": np.asarray(palette).tolist() if palette is not None else None}


def predict_with_protocol(model, image, protocol: dict):
    """A label map (H, W) on the model's device under a slide or multiscale protocol."""
    from harness.protocols import predict_with_protocol as predict

    return predict(model, image, protocol)


def _safe_name(text: str, limit: int) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:limit]


def _save_png(path: Path, array) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L").save(path)


def save_sample(run_dir: Path, cell_id: str, dataset_name: str, dataset, sample_id: str, pred, target) -> dict:
    """Write the input (once per dataset), its label and this cell's prediction; return their
    paths relative to the run directory as ``{id, image, label, pred}``."""
    import numpy as np

    safe = _safe_name(sample_id, 80)
    base = Path("samples") / _safe_name(dataset_name, 64)
    image_rel, label_rel = base / f"{safe}.jpg", base / f"{safe}.label.png"
    pred_rel = Path("samples") / cell_id / f"{safe}.png"
    if not (run_dir / image_rel).exists():
        idx = next((i for i in range(len(dataset)) if dataset.sample_id(i) == sample_id), None)
        if idx is not None:
            (run_dir / image_rel).parent.mkdir(parents=True, exist_ok=True)
            dataset.load(idx).image.convert("RGB").save(run_dir / image_rel, quality=90)
            _save_png(run_dir / label_rel, np.asarray(target))
    _save_png(run_dir / pred_rel, pred.cpu().numpy())
    return {"id": sample_id, "image": str(image_rel), "label": str(label_rel), "pred": str(pred_rel)}


def report_qualitative(runs: list) -> tuple[str, list[str]]:
    """The qualitative panel (inputs with ground-truth and prediction overlays) and the robustness
    section (:mod:`harness.report.robustness`), as HTML, and warnings."""
    from harness.report.qualitative import panel_html
    from harness.report.robustness import robustness_section

    only_mine = [_task_view(r, "segmentation") for r in runs]
    panel, warnings = panel_html(only_mine)
    robust, more = robustness_section(only_mine)
    return panel + robust, warnings + more


def _task_view(run, task: str):
    """``run`` with only its cells of ``task`` (same path and meta)."""
    from harness.results import Run

    return Run(path=run.path, meta=run.meta, cells={k: c for k, c in run.cells.items() if c.identity.task == task})


def published(cell, model) -> dict | None:
    """The reference figures of this cell: only when the reference was measured on the checkpoint the
    cell loaded (hub id, or the file's sha256) under the cell's protocol (see :mod:`harness.reference`)."""
    from harness.reference import published as lookup

    return lookup(cell.model, cell.dataset, cell.protocol, model.weights)


def published_reason(result) -> str:
    """Why a finished cell carries no published reference (shown beside "no ref.")."""
    from harness.reference import match

    ident = result.identity
    return match(str(ident.model_ref), str(ident.dataset), ident.protocol or {}, result.provenance.weights or {})[1]


def report_panels(pairs: list) -> list[dict]:
    """Per-class IoU heatmaps of the clean cells, one per dataset (see :func:`harness.report.plots.iou_heatmaps`),
    and the reliability diagrams of the calibrated clean cells (:mod:`harness.report.robustness`)."""
    from harness.report.plots import iou_heatmaps
    from harness.report.robustness import reliability_panels

    clean = [(row, cell) for row, cell in pairs if cell.identity.corruption is None]
    return iou_heatmaps(clean) + reliability_panels(clean)
