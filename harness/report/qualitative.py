"""Qualitative panel: input, ground truth and each model's prediction as palette overlays."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.files import generated_palette

THUMB_WIDTH = 320  # px


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves inside ``root`` (symlinks and '..' that escape are refused)."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def safe_open(run_dir: Path, rel: str | None) -> Path | None:
    """The file ``rel`` of a run directory, or None when absent or when it would leave the run directory."""
    if not rel or Path(rel).is_absolute():
        return None
    p = run_dir / rel
    if not inside(p, run_dir) or not p.is_file():
        return None
    return p


def overlay(image: Image.Image, label: np.ndarray | None, palette: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Blend class colours over ``image`` at ``alpha``; 255 (ignore) and out-of-palette pixels stay as they are."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if label is None:
        return image
    if label.shape != base.shape[:2]:
        label = np.asarray(Image.fromarray(label.astype(np.uint8)).resize((base.shape[1], base.shape[0]), Image.NEAREST))
    valid = label < len(palette)
    colours = palette[np.where(valid, label, 0)].astype(np.float32)
    out = np.where(valid[..., None], (1 - alpha) * base + alpha * colours, base)
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def data_uri(image: Image.Image) -> str:
    if image.width > THUMB_WIDTH:
        image = image.resize((THUMB_WIDTH, max(1, round(image.height * THUMB_WIDTH / image.width))), Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def panel_items(runs) -> tuple[list[dict], list[str]]:
    """Per (dataset, sample id): input and ground-truth overlays and each cell's prediction overlay.

    Returns (items, warnings); a sample path that leaves its run directory is skipped with a warning.
    """
    by_sample: dict[tuple, dict] = {}
    warnings = []
    for run in runs:
        for cell in run.cells.values():
            palette = np.asarray(cell.get("palette") or generated_palette(max(1, len(cell.get("class_names") or [0]))),
                                 dtype=np.uint8)
            for s in cell.get("samples") or []:
                img_p, lab_p, pred_p = (safe_open(run.path, s.get(k)) for k in ("image", "label", "pred"))
                for k in ("image", "label", "pred"):
                    if s.get(k) and safe_open(run.path, s.get(k)) is None and not inside(run.path / str(s.get(k)), run.path):
                        warnings.append(f"{run.path.name}: sample path {s.get(k)!r} leaves the run directory; ignored")
                if img_p is None or pred_p is None:
                    continue
                key = (cell.get("dataset"), s.get("id"))
                if key not in by_sample:
                    image = Image.open(img_p).convert("RGB")
                    label = np.asarray(Image.open(lab_p)) if lab_p else None
                    by_sample[key] = {"dataset": key[0], "id": key[1], "input": data_uri(image),
                                      "truth": data_uri(overlay(image, label, palette)) if label is not None else None,
                                      "preds": [], "_image": image}
                item = by_sample[key]
                pred = np.asarray(Image.open(pred_p))
                name = f"{cell.get('model')} · {cell.get('precision')}"
                item["preds"].append((name, data_uri(overlay(item["_image"], pred, palette))))
    items = list(by_sample.values())
    for it in items:
        it.pop("_image", None)
    return items, warnings
