"""``glass_blur`` of imagecorruptions 1.1.2, byte for byte, about 30x faster.

The package blurs (Gaussian, sigma), then for each of ``iterations`` passes visits every pixel
``(h, w)`` from ``(H - delta, W - delta)`` down to ``(delta + 1, delta + 1)`` (rows, then columns,
descending), draws ``dx, dy = np.random.randint(-delta, delta, size=2)`` and writes
``x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]`` on a numpy array, and blurs again. The
right-hand side holds views, so the statement copies pixel ``(h + dy, w + dx)`` into ``(h, w)``
and leaves the source as it was: it is a copy, not a swap, applied in order (a source may already
have been overwritten). Each pixel's draw is a separate ``randint`` call; numpy's legacy
generator gives the same numbers when all of a pass's draws come from one call.

Here a pass is one ``randint`` call and a loop over a flat list of packed RGB values, which
is what the package's cost is spent on otherwise (two numpy calls and two views per pixel).
``tests/test_corruptions.py`` checks the result equals the package's own function, every severity.
"""

from __future__ import annotations

import numpy as np

# per severity: (Gaussian sigma, largest displacement delta in pixels, passes) -- the package's table
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))


def copy_pass(x: np.ndarray, delta: int) -> None:
    """One pass of the package's pixel copies on ``x`` (H, W, C) uint8, in place, drawing from numpy's
    global generator exactly as the package does."""
    h, w = x.shape[:2]
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    n = len(rows) * len(cols)
    if n == 0:
        return
    draws = np.random.randint(-delta, delta, size=(n, 2))  # (dx, dy) per visited pixel, in visiting order
    offsets = (draws[:, 1] * w + draws[:, 0]).tolist()
    packed = np.zeros((h, w), dtype=np.int64)
    for c in range(x.shape[2]):
        packed = (packed << 8) | x[:, :, c]
    flat = packed.ravel().tolist()
    k = 0
    for r in rows:
        base = r * w
        for q in range(base + cols.start, base + cols.stop, -1):
            flat[q] = flat[q + offsets[k]]
            k += 1
    packed = np.array(flat, dtype=np.int64).reshape(h, w)
    for c in range(x.shape[2] - 1, -1, -1):
        x[:, :, c] = packed & 0xFF
        packed = packed >> 8


def make_glass_blur(gaussian):
    """The package's ``glass_blur(x, severity)``, using ``gaussian`` (its module's, adapted) for the blurs."""

    def glass_blur(x, severity=1):
        sigma, delta, passes = GLASS_BLUR[severity - 1]
        img = np.uint8(gaussian(np.array(x) / 255.0, sigma=sigma, multichannel=True) * 255)
        for _ in range(passes):
            copy_pass(img, delta)
        return np.clip(gaussian(img / 255.0, sigma=sigma, multichannel=True), 0, 1) * 255

    return glass_blur
