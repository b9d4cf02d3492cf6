"""Bounded-memory postprocessing: resizing logits channel-chunk by channel-chunk with a running
argmax gives exactly the label map of resizing everything at once (ties included)."""

from __future__ import annotations

import pytest
import torch

from harness.models.base import upsample_argmax


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("max_bytes", [1, 5 * 300 * 411 * 4, 10**10])
def test_chunked_equals_whole(mode, max_bytes):
    g = torch.Generator().manual_seed(0)
    x = torch.randn((150, 64, 86), generator=g)
    x[:, :6, :6] = 0.25  # an area where every class ties
    x[3, 40:50, 40:50] = x[7, 40:50, 40:50]  # two classes tied elsewhere
    ref = torch.nn.functional.interpolate(x[None], size=(300, 411), mode=mode, align_corners=False)[0].argmax(0)
    assert torch.equal(upsample_argmax(x, (300, 411), mode, max_bytes=max_bytes), ref)


def test_ties_go_to_the_first_class():
    x = torch.zeros((5, 4, 4))
    assert upsample_argmax(x, (8, 8), "bilinear", max_bytes=1).eq(0).all()
