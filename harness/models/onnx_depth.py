"""ONNX Runtime for depth models: the PyTorch depth adapter's network exported and run by a session.

What is exported is the adapter's ``_run``: pixel values (N, 3, H, W) -> the raw prediction
(N, h, w) at the network's resolution, in the model's output space (ZoeDepth's flip test-time
augmentation included, as its adapter runs it). Preprocessing and postprocessing (the resize to
each image's size, ZoeDepth's padding removal) stay the PyTorch adapter's, so a depth cell on
ONNX Runtime differs from the PyTorch one only in the network's arithmetic. Export, cache and
exporters are :mod:`harness.models.onnx`'s; parity is checked against PyTorch fp32 before anything
is measured, relative to the prediction's scale (depth and disparity values have no fixed range).
The export has a fixed image size, so models whose preprocessing keeps the aspect ratio or pads
(DPT with BEiT/Swin, Depth Anything, ZoeDepth, GLPN in their own processors' settings) are refused
with the reason, as is Depth Pro, whose adapter reads a second output (the field of view).
"""

from __future__ import annotations

import numpy as np
import torch

from harness.errors import UnsupportedError
from harness.models import onnx
from harness.models.depth_base import DepthModel

PARITY_RTOL = 1e-4  # max |ONNX - PyTorch| / max |PyTorch| of a passing export


class _Prediction(torch.nn.Module):
    """The adapter's ``_run`` as a module (its network registered, so the export sees the weights)."""

    def __init__(self, adapter: DepthModel):
        super().__init__()
        self.module = adapter.module
        self._adapter = adapter

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._adapter._run(pixel_values)


class OnnxDepthModel(DepthModel):
    """A depth adapter whose network runs in an ONNX Runtime session; pre- and postprocessing are the
    PyTorch adapter's (kept, without its network).

    Attributes:
        parity: ``{max_abs_diff, max_rel_diff, rtol, passed, inputs}`` against PyTorch fp32.
        providers: the session's execution providers, in order.
    """

    runtime = "onnxruntime"

    def __init__(self, adapter: DepthModel, export: onnx.Export, parity: dict):
        super().__init__(device=str(adapter.device), precision="fp32")
        for attr in ("name", "family", "input_size", "depth_kind", "align_space", "max_depth", "resize_mode",
                     "preprocessor"):
            setattr(self, attr, getattr(adapter, attr))
        self._adapter = adapter
        self.export, self._bytes = export, export.bytes()
        self.weights = export.provenance(adapter.weights)
        self._params = adapter.params()
        self.session, self.parity, self.providers = export.session, parity, export.session.get_providers()

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.export.run(pixel_values, self.device)

    def postprocess(self, outputs, sizes):
        """The PyTorch adapter's own postprocessing (resize to each image; ZoeDepth's padding removal)."""
        return self._adapter.postprocess(outputs, sizes)

    def protocol_extra(self) -> dict:
        return self._adapter.protocol_extra()

    def params(self) -> int:
        """Parameters of the PyTorch network that was exported."""
        return self._params

    def weight_bytes(self) -> int:
        """Bytes of the exported files (graph and weights)."""
        return self._bytes


def check_parity(adapter: DepthModel, session, rtol: float = PARITY_RTOL) -> dict:
    """Max |ONNX - PyTorch| of the raw predictions on :data:`harness.models.onnx.PARITY_BATCH` seeded
    inputs in [-1, 1), absolute and relative to max |PyTorch|; ``passed`` when the relative one <= rtol."""
    h, w = adapter.input_size
    x = torch.rand((onnx.PARITY_BATCH, 3, h, w), generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        ref = _Prediction(adapter).float().cpu()(x).numpy()
    got = session.run(["logits"], {"pixel_values": x.numpy()})[0]
    inputs = f"{onnx.PARITY_BATCH} seeded random images at {h}x{w}"
    if got.shape != ref.shape:
        return {"max_abs_diff": None, "max_rel_diff": None, "rtol": rtol, "passed": False,
                "inputs": f"shape {list(got.shape)} vs PyTorch {list(ref.shape)}"}
    diff = float(np.abs(got.astype(np.float64) - ref).max())
    scale = float(np.abs(ref).max())
    rel = diff / scale if scale > 0 else diff
    return {"max_abs_diff": diff, "max_rel_diff": rel, "rtol": rtol, "passed": bool(rel <= rtol), "inputs": inputs}


# image shapes (height, width) whose network inputs must all be the nominal size for a fixed-size export
PROBE_SHAPES = ((480, 640), (640, 480), (375, 1242))


def _network_input_sizes(adapter: DepthModel) -> set[tuple[int, int]]:
    """The network input sizes the adapter's preprocessing gives :data:`PROBE_SHAPES`."""
    output_size = getattr(adapter.preprocessor, "output_size", None)
    if not callable(output_size):
        return {tuple(adapter.input_size)}
    return {tuple(output_size(h, w)) for h, w in PROBE_SHAPES}


def load_onnx_depth_model(adapter: DepthModel, opset: int = 17, cache_dir: str | None = None,
                          providers: list[str] | None = None, parity_rtol: float = PARITY_RTOL,
                          exporter: str = "auto", **options) -> OnnxDepthModel:
    """Export (or reuse the cached export of) ``adapter``'s network and wrap a session around it."""
    from harness.errors import ConfigError

    if options:
        raise ConfigError(f"onnxruntime: unknown option(s) {', '.join(sorted(options))} for a depth model; "
                          "allowed: opset, cache_dir, providers, parity_rtol, exporter")
    if adapter.module is None:
        raise UnsupportedError(f"{adapter.name}: only PyTorch depth models can be exported to ONNX")
    if type(adapter).__name__ == "DepthProModel":
        raise UnsupportedError(f"{adapter.name}: Depth Pro reads its field-of-view output beside the depth; "
                               "the ONNX export carries one output (run it on the pytorch runtime)")
    sizes = _network_input_sizes(adapter)
    if sizes != {tuple(adapter.input_size)}:
        raise UnsupportedError(f"{adapter.name}: its preprocessing gives network inputs of several sizes "
                               f"({', '.join(f'{h}x{w}' for h, w in sorted(sizes))} for three image shapes), and the "
                               "ONNX export has a fixed image size (run it on the pytorch runtime)")
    export = onnx.open_export(adapter, lambda: _Prediction(adapter), opset, cache_dir, providers, exporter)
    parity = check_parity(adapter, export.session, parity_rtol)
    model = OnnxDepthModel(adapter, export, parity)
    adapter.module = adapter._call = None  # the PyTorch weights are not needed any more; free them
    return model
