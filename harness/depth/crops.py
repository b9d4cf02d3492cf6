"""Evaluation crops of monocular depth benchmarks, as boxes of pixel rows and columns.

A crop is a box ``(top, bottom, left, right)`` of a ground-truth map of height H and width W
(rows ``top:bottom``, columns ``left:right``, Python slice bounds). Only pixels inside it are
evaluated. The names and numbers are those of the evaluation code of BTS
(``utils/eval_with_pngs.py``), ZoeDepth (``zoedepth/utils/misc.py: compute_metrics``) and
Marigold (``src/dataset/kitti_dataset.py``, ``nyu_dataset.py``), which all agree:

- ``eigen``: the NYU-Depth-v2 crop of Eigen et al. (NIPS 2014), fixed pixel bounds rows 45:471,
  columns 41:601, defined on 480x640 maps. The references apply the same bounds to any size
  (ZoeDepth does so on DIODE indoor, iBims and SUN RGB-D); so does this module, and a map
  smaller than 471x601 is an error.
- ``eigen_kitti``: Eigen's KITTI crop as fractions: rows int(0.3324324 H):int(0.91351351 H),
  columns int(0.0359477 W):int(0.96405229 W).
- ``garg``: Garg et al. (ECCV 2016) KITTI crop: rows int(0.40810811 H):int(0.99189189 H),
  columns int(0.03594771 W):int(0.96405229 W).
- ``kb``: the KITTI benchmark's 352x1216 box at the bottom centre: rows H-352:H, columns
  int((W-1216)/2) plus 1216. BTS, ZoeDepth and Marigold crop the *input* image (and, in
  ZoeDepth and Marigold, the ground truth) to it before inference: see :func:`kb_crop`.

``int()`` truncates, as in the references. A custom crop is a sequence of four integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CROPS = ("eigen", "eigen_kitti", "garg", "kb")
Box = tuple[int, int, int, int]

NYU_EIGEN_BOX: Box = (45, 471, 41, 601)
KB_HEIGHT, KB_WIDTH = 352, 1216


def _fraction_box(height: int, width: int, rows: tuple[float, float], cols: tuple[float, float]) -> Box:
    return (int(rows[0] * height), int(rows[1] * height), int(cols[0] * width), int(cols[1] * width))


def kb_box(height: int, width: int) -> Box:
    """The KITTI benchmark box (352 rows at the bottom, 1216 centred columns) of an H x W map."""
    if height < KB_HEIGHT or width < KB_WIDTH:
        raise ValueError(f"kb crop needs a map of at least {KB_HEIGHT}x{KB_WIDTH} (height x width), "
                         f"got {height}x{width}")
    top, left = int(height - KB_HEIGHT), int((width - KB_WIDTH) / 2)
    return (top, top + KB_HEIGHT, left, left + KB_WIDTH)


def crop_box(crop: str | Sequence[int] | None, height: int, width: int) -> Box:
    """The box ``(top, bottom, left, right)`` of crop ``crop`` on an ``height`` x ``width`` map.

    ``crop`` is None (the whole map), one of :data:`CROPS`, or four integers. Raises ValueError
    for an unknown name, a box outside the map or an empty box.
    """
    if crop is None:
        return (0, height, 0, width)
    if isinstance(crop, str):
        if crop == "eigen":
            box = NYU_EIGEN_BOX
            if height < box[1] or width < box[3]:
                raise ValueError(f"eigen crop (rows 45:471, columns 41:601, defined on 480x640 NYU maps) "
                                 f"does not fit a {height}x{width} map (height x width)")
        elif crop == "eigen_kitti":
            box = _fraction_box(height, width, (0.3324324, 0.91351351), (0.0359477, 0.96405229))
        elif crop == "garg":
            box = _fraction_box(height, width, (0.40810811, 0.99189189), (0.03594771, 0.96405229))
        elif crop == "kb":
            box = kb_box(height, width)
        else:
            raise ValueError(f"unknown crop {crop!r}; expected one of {', '.join(CROPS)}, None or "
                             "[top, bottom, left, right]")
    else:
        box = _custom_box(crop)
        if box[1] > height or box[3] > width:
            raise ValueError(f"crop {list(box)} does not fit a {height}x{width} map (height x width)")
    if not (0 <= box[0] < box[1] <= height and 0 <= box[2] < box[3] <= width):
        raise ValueError(f"crop {crop!r} gives the empty or out-of-map box {list(box)} on a {height}x{width} map")
    return tuple(int(v) for v in box)


def _custom_box(crop) -> Box:
    try:
        values = [v for v in crop]
    except TypeError:
        raise ValueError(f"crop {crop!r}: expected a name ({', '.join(CROPS)}), None or four integers "
                         "[top, bottom, left, right]") from None
    if len(values) != 4 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"crop {crop!r}: expected four integers [top, bottom, left, right]")
    return tuple(int(v) for v in values)


def check_crop(crop) -> None:
    """Raise ValueError now for a crop value that can never be valid (checked again per map size)."""
    if crop is None:
        return
    if isinstance(crop, str):
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}; expected one of {', '.join(CROPS)}, None or "
                             "[top, bottom, left, right]")
        return
    top, bottom, left, right = _custom_box(crop)
    if not (0 <= top < bottom and 0 <= left < right):
        raise ValueError(f"crop {list(crop)}: expected 0 <= top < bottom and 0 <= left < right")


def crop_mask(crop, height: int, width: int) -> np.ndarray:
    """Boolean (H, W) map, True inside the crop."""
    top, bottom, left, right = crop_box(crop, height, width)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def kb_crop(array: np.ndarray) -> np.ndarray:
    """The KITTI benchmark crop of an (H, W) or (H, W, C) array (a view)."""
    top, bottom, left, right = kb_box(array.shape[0], array.shape[1])
    return array[top:bottom, left:right]


def paste(pred: np.ndarray, box: Box, height: int, width: int, fill: float = float("nan")) -> np.ndarray:
    """A ``height`` x ``width`` float32 map holding ``pred`` inside ``box`` and ``fill`` elsewhere.

    The BTS / DPT KITTI evaluation predicts on the kb-cropped image and pastes the prediction into
    a full-size map before cropping with ``garg``; pixels outside the box are then outside the
    evaluated crop as well (``garg`` and ``eigen_kitti`` lie inside ``kb`` on KITTI's 375x1242).
    """
    top, bottom, left, right = box
    if pred.shape[-2:] != (bottom - top, right - left):
        raise ValueError(f"prediction of shape {pred.shape} does not fit box {list(box)} "
                         f"({bottom - top}x{right - left})")
    out = np.full(pred.shape[:-2] + (height, width), fill, dtype=np.float32)
    out[..., top:bottom, left:right] = pred
    return out
