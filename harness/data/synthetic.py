"""Synthetic segmentation data for offline runs and CI: seeded, structured, never all zeros.

Each sample is a background class with rectangles and ellipses of other classes drawn on
it; the image colours each region with its class colour plus a texture and noise, so a
model could learn the mapping. A thin band around each shape is ignored, like annotation
boundaries. Sample i depends only on (seed, i): identical across runs and processes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from harness.data.base import Sample, SegmentationDataset
from harness.data.files import generated_palette, select
from harness.errors import ConfigError


class SyntheticDataset(SegmentationDataset):
    """Options: num_samples, image_size [H, W] or a list of sizes (cycled), num_classes,
    ignore_index, ignore_fraction (share of pixels on region borders that are ignored), seed."""

    name = "synthetic"
    label_set = None

    def __init__(self, num_samples: int = 8, image_size=(512, 512), num_classes: int = 150,
                 ignore_index: int = 255, ignore_fraction: float = 0.05, seed: int = 0,
                 limit: int | None = None, shard: tuple[int, int] | None = None):
        sizes = self.check_options(num_samples=num_samples, image_size=image_size, num_classes=num_classes,
                                   ignore_fraction=ignore_fraction)
        self.sizes = [tuple(s) for s in sizes]
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.ignore_fraction = float(ignore_fraction)
        self.seed = int(seed)
        self.class_names = [f"class_{i}" for i in range(self.num_classes)]
        self.palette = generated_palette(self.num_classes)
        self.indices = select(list(range(int(num_samples))), limit, shard)

    @staticmethod
    def check_options(num_samples: int = 8, image_size=(512, 512), num_classes: int = 150, ignore_index: int = 255,
                      ignore_fraction: float = 0.05, seed: int = 0) -> list[tuple[int, int]]:
        """ConfigError naming the option for a bad value; returns the image sizes (a list of [H, W])."""
        def integer(value, key: str, lo: int, hi: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"synthetic: {key} {value!r} must be an integer in {lo}..{hi}")

        integer(num_samples, "num_samples", 1, 100_000)
        integer(num_classes, "num_classes", 1, 1000)
        integer(ignore_index, "ignore_index", -(2**31), 2**31 - 1)
        integer(seed, "seed", 0, 2**63 - 1)
        if isinstance(ignore_fraction, bool) or not isinstance(ignore_fraction, (int, float)) \
                or not 0 <= ignore_fraction <= 1:
            raise ConfigError(f"synthetic: ignore_fraction {ignore_fraction!r} must be a number in 0..1")
        if not isinstance(image_size, (list, tuple)) or not image_size:
            raise ConfigError(f"synthetic: image_size {image_size!r} must be [height, width] or a list of them")
        sizes = [image_size] if not isinstance(image_size[0], (list, tuple)) else list(image_size)
        for size in sizes:
            if (not isinstance(size, (list, tuple)) or len(size) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) and 8 <= x <= 8192 for x in size)):
                raise ConfigError(f"synthetic: image_size {size!r} must be [height, width] with 8..8192 pixels each")
        return [tuple(size) for size in sizes]

    def __len__(self) -> int:
        return len(self.indices)

    def sample_id(self, index: int) -> str:
        return f"synthetic_{self.seed}_{self.indices[index]:06d}"

    def files(self) -> list[str]:
        h = ",".join(f"{a}x{b}" for a, b in self.sizes)
        return [f"{self.sample_id(i)}:{h}:{self.num_classes}:{self.ignore_fraction}" for i in range(len(self))]

    def load(self, index: int) -> Sample:
        i = self.indices[index]
        rng = np.random.default_rng([self.seed, i])
        h, w = self.sizes[i % len(self.sizes)]
        C = self.num_classes
        label = np.full((h, w), rng.integers(0, C), dtype=np.int64)
        border = np.zeros((h, w), dtype=bool)
        yy, xx = np.mgrid[0:h, 0:w]
        for _ in range(int(rng.integers(3, 9))):
            cls = int(rng.integers(0, C))
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            ry, rx = rng.integers(max(2, h // 16), max(3, h // 3)), rng.integers(max(2, w // 16), max(3, w // 3))
            if rng.random() < 0.5:
                inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
                edge = inside & ~((np.abs(yy - cy) <= ry - 2) & (np.abs(xx - cx) <= rx - 2))
            else:
                d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
                inside, edge = d <= 1.0, (d <= 1.0) & (d > 0.85)
            label[inside] = cls
            border |= edge
        # The image is painted from the regions before any pixel is ignored, so the ignored band
        # looks like its surroundings (as in real annotations) instead of giving itself away.
        colours = self.palette[label].astype(np.float32)
        texture = 20.0 * np.sin(xx / (3.0 + (label % 7))) * np.cos(yy / (4.0 + (label % 5)))
        noise = rng.normal(0.0, 12.0, (h, w, 3))
        img = np.clip(colours + texture[..., None] + noise, 1, 255).astype(np.uint8)
        if self.ignore_fraction > 0:
            drop = border & (rng.random((h, w)) < min(1.0, self.ignore_fraction * 10))
            label[drop] = self.ignore_index
        return Sample(image=Image.fromarray(img, mode="RGB"), label=label, id=self.sample_id(index))
