"""Write small datasets in their official on-disk layouts (modes, palettes, naming as the real files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _image(rng, h: int, w: int) -> Image.Image:
    return Image.fromarray(rng.integers(1, 255, (h, w, 3), dtype=np.uint8))


def _regions(rng, h: int, w: int, values: list[int]) -> np.ndarray:
    lab = np.full((h, w), values[0], dtype=np.uint8)
    for v in values[1:]:
        y, x = rng.integers(0, h), rng.integers(0, w)
        lab[y:y + h // 3, x:x + w // 3] = v
    return lab


def write_ade20k(root: Path, n: int = 3, split: str = "validation", seed: int = 0,
                 sizes: list[tuple[int, int]] | None = None) -> Path:
    """ADEChallengeData2016/images/{split}/ADE_val_*.jpg + annotations/{split}/*.png (mode L, 0..150)."""
    rng = np.random.default_rng(seed)
    root = Path(root) / "ADEChallengeData2016"
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    prefix = "ADE_val" if split == "validation" else "ADE_train"
    for i in range(n):
        h, w = (sizes[i % len(sizes)] if sizes else (48 + 8 * i, 64))
        stem = f"{prefix}_{i + 1:08d}"
        _image(rng, h, w).save(root / "images" / split / f"{stem}.jpg", quality=95)
        values = [int(v) for v in rng.choice(np.arange(0, 151), size=4, replace=False)]
        Image.fromarray(_regions(rng, h, w, values), mode="L").save(root / "annotations" / split / f"{stem}.png")
    return root


def write_cityscapes(root: Path, split: str = "val", cities=("frankfurt", "lindau"), per_city: int = 2,
                     seed: int = 0) -> Path:
    """leftImg8bit/{split}/{city}/*_leftImg8bit.png + gtFine/{split}/{city}/*_gtFine_labelIds.png (mode L)."""
    rng = np.random.default_rng(seed)
    root = Path(root) / "cityscapes"
    for city in cities:
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for i in range(per_city):
            stem = f"{city}_000000_{i:06d}"
            _image(rng, 32, 64).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            ids = [int(v) for v in rng.choice([0, 1, 4, 7, 8, 11, 21, 23, 24, 26, 33], size=4, replace=False)]
            Image.fromarray(_regions(rng, 32, 64, ids), mode="L").save(
                root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
    return root


def write_voc(root: Path, n: int = 3, split: str = "val", seed: int = 0) -> Path:
    """VOCdevkit/VOC2012 with JPEGImages, SegmentationClass (mode P, VOC palette, 255 borders) and the split file."""
    from harness.data.files import voc_palette

    rng = np.random.default_rng(seed)
    root = Path(root) / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = [f"2007_{i:06d}" for i in range(n)]
    pal = voc_palette(256).flatten().tolist()
    for sid in ids:
        _image(rng, 40, 50).save(root / "JPEGImages" / f"{sid}.jpg", quality=95)
        lab = _regions(rng, 40, 50, [0] + [int(v) for v in rng.choice(np.arange(1, 21), size=2, replace=False)])
        lab[::7, :] = 255  # boundary pixels
        im = Image.fromarray(lab, mode="P")
        im.putpalette(pal)
        im.save(root / "SegmentationClass" / f"{sid}.png")
    (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def write_folder(root: Path, n: int = 3, classes=("sky", "road", "car"), seed: int = 0, mask_suffix: str = "") -> Path:
    """images/NAME.png + masks/NAME{suffix}.png + classes.txt."""
    rng = np.random.default_rng(seed)
    root = Path(root) / "mydata"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for i in range(n):
        _image(rng, 30, 40).save(root / "images" / f"img{i}.png")
        Image.fromarray(_regions(rng, 30, 40, list(range(len(classes)))), mode="L").save(
            root / "masks" / f"img{i}{mask_suffix}.png")
    return root


def write_pascal_context(root: Path, n: int = 3, split: str = "val", seed: int = 0) -> Path:
    """VOCdevkit/VOC2010 with JPEGImages, SegmentationClassContext (mode L, 0..59) and the split file."""
    rng = np.random.default_rng(seed)
    root = Path(root) / "VOCdevkit" / "VOC2010"
    for d in ("JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = [f"2008_{i:06d}" for i in range(n)]
    for sid in ids:
        _image(rng, 36, 48).save(root / "JPEGImages" / f"{sid}.jpg", quality=95)
        values = [0] + [int(v) for v in rng.choice(np.arange(1, 60), size=3, replace=False)]
        Image.fromarray(_regions(rng, 36, 48, values), mode="L").save(root / "SegmentationClassContext" / f"{sid}.png")
    (root / "ImageSets" / "SegmentationContext" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def write_coco_stuff(root: Path, n: int = 3, seed: int = 0) -> Path:
    """coco_stuff164k/images/val2017/*.jpg + annotations/val2017/*_labelTrainIds.png (mode L, 0..170, 255)."""
    rng = np.random.default_rng(seed)
    root = Path(root) / "coco_stuff164k"
    (root / "images" / "val2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "val2017").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = f"{139 + i:012d}"
        _image(rng, 30, 44).save(root / "images" / "val2017" / f"{stem}.jpg", quality=95)
        values = [255] + [int(v) for v in rng.choice(np.arange(0, 171), size=3, replace=False)]
        Image.fromarray(_regions(rng, 30, 44, values), mode="L").save(
            root / "annotations" / "val2017" / f"{stem}_labelTrainIds.png")
    return root
