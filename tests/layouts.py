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
