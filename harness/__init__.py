"""segbench: benchmark and evaluation harness for dense prediction (semantic segmentation, depth).

The stable Python API::

    harness.load_model(name_or_path, weights=None, device="cpu", precision="fp32", task="segmentation")
    harness.load_dataset(name, root=None, split="validation", **options)
    harness.SegmentationMetrics(num_classes, ignore_index=255)
    harness.DepthMetrics(min_depth=1e-3, max_depth=10.0, crop=None, alignment="none")
    harness.run_suite(path, out_dir)

Imports are lazy so that ``python -m harness`` starts quickly and the measuring path pulls
in nothing it does not use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_model", "load_dataset", "SegmentationMetrics", "DepthMetrics", "run_suite", "__version__"]


def __getattr__(name: str):
    if name == "load_model":
        from harness.models import load_model

        return load_model
    if name == "load_dataset":
        from harness.data import load_dataset

        return load_dataset
    if name == "SegmentationMetrics":
        from harness.metrics import SegmentationMetrics

        return SegmentationMetrics
    if name == "DepthMetrics":
        from harness.depth import DepthMetrics

        return DepthMetrics
    if name == "run_suite":
        from harness.runner import run_suite

        return run_suite
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
