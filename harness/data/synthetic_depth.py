"""Synthetic depth scenes for offline runs and CI: seeded, structured, never constant.

Each sample is a room-like scene seen by a pinhole camera: a back wall and a floor plane
(depth from the ray-plane intersection) with a few boxes in front, each box a fronto-parallel
plane at its own depth. The image is shaded from the geometry (colour per surface, darker with
distance, texture and noise), so a model could learn the mapping. A share of pixels is invalid
(0), in blobs like sensor holes. Sample i depends only on (seed, i). With ``num_classes`` > 0
each sample also has a label map (0 wall, 1 floor, 2.. boxes) for joint depth + segmentation runs.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from harness.data.depth_base import DepthDataset, DepthSample
from harness.data.files import generated_palette, select
from harness.errors import DataError


class SyntheticDepthDataset(DepthDataset):
    """Options: num_samples, image_size [H, W], max_depth (m), invalid_fraction, num_classes, seed."""

    name = "synthetic-depth"
    default_crop = None
    depth_scale_note = "generated float32 metres"

    def __init__(self, num_samples: int = 8, image_size=(240, 320), max_depth: float = 10.0,
                 invalid_fraction: float = 0.1, num_classes: int = 0, seed: int = 0, limit: int | None = None,
                 shard: tuple[int, int] | None = None):
        if not (1 <= int(num_samples) <= 100_000):
            raise DataError(f"synthetic-depth: num_samples {num_samples!r} must be in 1..100000")
        if len(image_size) != 2 or not all(isinstance(x, int) and 16 <= x <= 8192 for x in image_size):
            raise DataError(f"synthetic-depth: image_size {image_size!r} must be [height, width], 16..8192 each")
        if not (1.0 < float(max_depth) <= 1000.0):
            raise DataError(f"synthetic-depth: max_depth {max_depth!r} must be in (1, 1000] metres")
        if not (0.0 <= float(invalid_fraction) < 0.9):
            raise DataError(f"synthetic-depth: invalid_fraction {invalid_fraction!r} must be in [0, 0.9)")
        if int(num_classes) not in (0,) and not (3 <= int(num_classes) <= 255):
            raise DataError(f"synthetic-depth: num_classes {num_classes!r} must be 0 (no labels) or 3..255")
        self.size = tuple(image_size)
        self.min_depth, self.max_depth = 1e-3, float(max_depth)
        self.invalid_fraction, self.seed = float(invalid_fraction), int(seed)
        self.num_classes = int(num_classes)
        self.class_names = ["wall", "floor"] + [f"box_{i}" for i in range(self.num_classes - 2)] if self.num_classes else []
        self.palette = generated_palette(self.num_classes) if self.num_classes else None
        self.indices = select(list(range(int(num_samples))), limit, shard)
        self.excluded = []

    def __len__(self) -> int:
        return len(self.indices)

    def sample_id(self, index: int) -> str:
        return f"synthetic_depth_{self.seed}_{self.indices[index]:06d}"

    def files(self) -> list[str]:
        h, w = self.size
        return [f"{self.sample_id(i)}:{h}x{w}:{self.max_depth}:{self.invalid_fraction}:{self.num_classes}"
                for i in range(len(self))]

    def _geometry(self, rng) -> tuple[np.ndarray, np.ndarray]:
        """(depth metres, surface id) of one scene: wall, floor, then boxes drawn nearest last."""
        h, w = self.size
        f = 0.8 * w
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        wall = rng.uniform(0.55, 0.95) * self.max_depth
        depth = wall * (1 + rng.uniform(-0.1, 0.1) * (xx / w - 0.5))  # a wall not quite facing the camera
        surface = np.zeros((h, w), dtype=np.int64)
        cam_height = rng.uniform(1.0, 1.8)
        below = yy > h / 2 + 1
        floor = cam_height * f / np.maximum(yy - h / 2, 1e-6)  # ray-plane intersection with y = cam_height
        use = below & (floor < depth)
        depth[use], surface[use] = floor[use], 1
        n_boxes = int(rng.integers(2, 6))
        for b, z in enumerate(sorted(rng.uniform(0.15, 0.5, n_boxes) * self.max_depth, reverse=True)):
            cy, cx = rng.uniform(0.3, 0.8) * h, rng.uniform(0.1, 0.9) * w
            hh, hw = rng.uniform(0.08, 0.25) * h, rng.uniform(0.06, 0.2) * w
            inside = (np.abs(yy - cy) < hh) & (np.abs(xx - cx) < hw)
            depth[inside] = z * (1 + 0.02 * (xx[inside] - cx) / max(hw, 1))  # slightly slanted
            surface[inside] = 2 + b
        return depth, surface

    def load(self, index: int) -> DepthSample:
        i = self.indices[index]
        rng = np.random.default_rng([self.seed, i])
        depth, surface = self._geometry(rng)
        h, w = self.size
        colours = rng.integers(40, 230, size=(int(surface.max()) + 1, 3)).astype(np.float64)
        yy, xx = np.mgrid[0:h, 0:w]
        shade = np.clip(1.2 - depth / self.max_depth, 0.25, 1.0)[..., None]
        texture = 15.0 * np.sin(xx / (2.0 + surface % 5)) * np.cos(yy / (3.0 + surface % 3))
        img = np.clip(colours[surface] * shade + texture[..., None] + rng.normal(0, 6.0, (h, w, 3)), 1, 255)
        depth = depth.astype(np.float32)
        if self.invalid_fraction > 0:
            holes = np.zeros((h, w), dtype=bool)
            while holes.mean() < self.invalid_fraction:
                cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, max(3, min(h, w) // 8))
                holes |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            depth[holes] = 0.0
        label = None
        if self.num_classes:
            label = np.minimum(surface, self.num_classes - 1).astype(np.int64)
        return DepthSample(image=Image.fromarray(img.astype(np.uint8), mode="RGB"), depth=depth,
                           id=self.sample_id(index), label=label,
                           intrinsics={"fx": 0.8 * w, "fy": 0.8 * w, "cx": w / 2, "cy": h / 2})
