"""Qualitative panel: input, ground truth and each model's prediction as palette overlays.

A cell lists ``samples: [{"id", "image", "label", "pred"}]`` with paths relative to its run
directory; labels and predictions are mode-L PNGs of class indices (255 = ignore). Each picture
is blended with its class colours at 0.5 and embedded as a base64 PNG data URI, so the report
stays one offline file. A path that is absolute, climbs out with ``..`` or resolves (through a
symlink) outside the run directory is never opened: it becomes a warning in the report.
"""

from __future__ import annotations

import base64
import colorsys
import io
import json
import warnings as _warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

THUMB_WIDTH = 320  # px: pictures are scaled down to this width before blending
MAX_PIXELS = 40_000_000  # an image larger than this (pixels) is refused rather than decoded
MAX_SAMPLES = 12  # (dataset, sample id) pairs shown at most
IGNORE = 255
ALPHA = 0.5


@dataclass
class PanelItem:
    """One sample: its input, ground-truth overlay and one overlay per cell (data URIs)."""

    dataset: str
    sample_id: str
    input: str
    truth: str | None
    preds: list[tuple[str, str]] = field(default_factory=list)  # (cell label, data URI)


@lru_cache(maxsize=1)
def ade20k_palette() -> np.ndarray:
    """The ADE20K colour map of the 150 evaluated classes, (150, 3) uint8."""
    path = Path(__file__).with_name("templates") / "ade20k_palette.json"
    return np.asarray(json.loads(path.read_text(encoding="utf-8"))["palette"], dtype=np.uint8)


def generated_palette(n: int) -> np.ndarray:
    """A deterministic palette of ``n`` distinct colours (golden-ratio hues), (n, 3) uint8."""
    out = np.empty((max(n, 1), 3), dtype=np.uint8)
    for i in range(max(n, 1)):
        hue = (i * 0.618033988749895) % 1.0
        sat = 0.65 + 0.35 * ((i // 7) % 2)
        val = 0.95 - 0.25 * ((i // 3) % 2)
        out[i] = [round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)]
    return out


def palette_for(cell) -> np.ndarray:
    """The cell's own ``palette`` (list of [r, g, b]) when valid, else ADE20K's for ADE20K, else a generated one."""
    pal = cell.provenance.palette
    if isinstance(pal, list) and pal:
        try:
            arr = np.asarray(pal, dtype=np.int64)
            if arr.ndim == 2 and arr.shape[1] == 3 and arr.min() >= 0 and arr.max() <= 255:
                return arr.astype(np.uint8)
        except (TypeError, ValueError):
            pass
    if str(cell.identity.dataset or "").lower().startswith("ade20k"):
        return ade20k_palette()
    return generated_palette(len(cell.provenance.class_names or []) or 256)


def resolve_inside(run_dir: Path, rel: object) -> tuple[Path | None, str | None]:
    """``(path, None)`` for a file inside ``run_dir``, else ``(None, reason)``.

    Refused: non-string or empty values, absolute paths, ``..`` components, and paths whose
    resolved target (after symlinks) is not inside the resolved run directory.
    """
    if not isinstance(rel, str) or not rel:
        return None, "no path given"
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or Path(rel).is_absolute() or ".." in pure.parts:
        return None, f"path {rel!r} leaves the run directory"
    root = run_dir.resolve()
    try:
        target = (run_dir / pure).resolve()
        target.relative_to(root)
    except ValueError:
        return None, f"path {rel!r} resolves outside the run directory"
    except OSError as e:
        return None, f"path {rel!r} cannot be resolved ({e.strerror})"
    if not target.is_file():
        return None, f"file {rel!r} is missing"
    return target, None


def _open(path: Path, mode: str):
    """Open an image with PIL, refusing oversized images; returns a loaded image in ``mode``."""
    from PIL import Image

    with _warnings.catch_warnings():
        _warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ValueError(f"{im.width}x{im.height} pixels is more than the {MAX_PIXELS} allowed")
            return im.convert(mode) if mode == "RGB" else im.copy()


def _thumb_size(w: int, h: int) -> tuple[int, int]:
    if w <= THUMB_WIDTH:
        return w, h
    return THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))


def overlay(image: np.ndarray, label: np.ndarray | None, palette: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Blend class colours over ``image`` (H, W, 3 uint8) at ``alpha``.

    ``label`` holds class indices of the same H, W; 255 (ignore) and indices outside the
    palette leave the pixel as it is. Returns an (H, W, 3) uint8 array.
    """
    base = image.astype(np.float32)
    if label is None:
        return image
    lab = label.astype(np.int64)
    valid = (lab != IGNORE) & (lab >= 0) & (lab < len(palette))
    colours = palette[np.where(valid, lab, 0)].astype(np.float32)
    out = np.where(valid[..., None], (1 - alpha) * base + alpha * colours, base)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def data_uri(array: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of an (H, W, 3) uint8 array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label_array(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Class indices of a label/prediction PNG, resized (nearest) to ``size`` = (W, H)."""
    from PIL import Image

    im = _open(path, "L")
    if im.mode not in ("L", "P", "I", "I;16"):
        raise ValueError(f"mode {im.mode} is not a class-index image (expected L)")
    if im.size != size:
        im = im.resize(size, Image.NEAREST)
    return np.asarray(im)


def cell_label(cell, run_id: str | None = None) -> str:
    """How a cell is named under its prediction: model · precision [· batch] [· run]."""
    parts = [str(cell.identity.model), str(cell.identity.precision)]
    if cell.identity.amp == "cast":
        parts[-1] += " cast"
    if run_id:
        parts.append(str(run_id))
    return " · ".join(parts)


def panel_items(runs, max_samples: int = MAX_SAMPLES) -> tuple[list[PanelItem], list[str]]:
    """The panel's items, one per (dataset, sample id) in first-seen order, and the warnings met.

    ``runs`` are ``harness.results.Run`` objects; a cell label includes the run id when several
    runs are shown. Broken, missing or escaping files become warnings naming the run and path.
    """
    from PIL import Image, UnidentifiedImageError

    items: dict[tuple[str, str], PanelItem] = {}
    bases: dict[tuple[str, str], np.ndarray] = {}
    warns: list[str] = []
    several = len(runs) > 1
    for run in runs:
        run_id = run.run_id
        for cell in run.cells.values():
            samples = cell.samples
            palette = None
            for s in samples:
                if not isinstance(s, dict):
                    continue
                tag = cell.corruption_tag
                key = (str(cell.identity.dataset) + (f" · {tag}" if tag else ""), str(s.get("id")))
                if key not in items and len(items) >= max_samples:
                    continue
                paths = {}
                for k in ("image", "label", "pred"):
                    p, why = resolve_inside(run.path, s.get(k))
                    if why and not (k == "label" and s.get(k) is None):
                        warns.append(f"{run_id}/{cell.cell_id}: sample {s.get('id')!r} {k}: {why}; not shown")
                    paths[k] = p
                if paths["image"] is None or paths["pred"] is None:
                    continue
                palette = palette if palette is not None else palette_for(cell)
                try:
                    if key not in items:
                        image = _open(paths["image"], "RGB")
                        image = image.resize(_thumb_size(*image.size), Image.BILINEAR)
                        base = np.asarray(image)
                        truth = None
                        if paths["label"] is not None:
                            lab = _label_array(paths["label"], image.size)
                            truth = data_uri(overlay(base, lab, palette))
                        items[key] = PanelItem(key[0], key[1], data_uri(base), truth)
                        bases[key] = base
                    base = bases[key]
                    pred = _label_array(paths["pred"], (base.shape[1], base.shape[0]))
                    items[key].preds.append((cell_label(cell, run_id if several else None),
                                             data_uri(overlay(base, pred, palette))))
                except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombWarning) as e:
                    warns.append(f"{run_id}/{cell.cell_id}: sample {s.get('id')!r} could not be read "
                                 f"({type(e).__name__}: {e}); not shown")
    return list(items.values()), warns


def panel_html(runs) -> tuple[str, list[str]]:
    """The segmentation panel as HTML (inputs, ground-truth and prediction overlays), and the warnings."""
    from html import escape as E

    items, warnings = panel_items(runs)
    if not items:
        return "", warnings
    blocks = []
    for it in items:
        figs = [f'<figure><img alt="input" src="{E(it.input)}"><figcaption>input</figcaption></figure>']
        if it.truth:
            figs.append(f'<figure><img alt="ground truth" src="{E(it.truth)}"><figcaption>ground truth</figcaption>'
                        "</figure>")
        for name, uri in it.preds:
            figs.append(f'<figure><img alt="{E(name)}" src="{E(uri)}"><figcaption>{E(name)}</figcaption></figure>')
        blocks.append(f"<h4>{E(it.dataset)} / {E(it.sample_id)}</h4><div class=qual>{''.join(figs)}</div>")
    return ("<h2 id=predictions>Predictions</h2><p>Class colours blended at 0.5 over the input; "
            "ignored pixels (255) keep the input's colour.</p>" + "".join(blocks)), warnings
