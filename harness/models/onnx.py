"""ONNX Runtime beside PyTorch: export a registry model to ONNX (dynamic batch axis), cache the
file by model + weights + opset + input size, and check parity against PyTorch fp32 before any
measurement. A model whose parity check fails still gets speed and memory; its accuracy is not shown.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from harness.errors import ConfigError, UnsupportedError
from harness.models.base import SegmentationModel

PARITY_BATCH = 2


def cache_root(cache_dir: str | None = None) -> Path:
    """Where exported files are kept: ``cache_dir``, $SEGBENCH_CACHE/onnx, or ~/.cache/segbench/onnx."""
    if cache_dir:
        return Path(cache_dir)
    base = os.environ.get("SEGBENCH_CACHE")
    return Path(base) / "onnx" if base else Path.home() / ".cache" / "segbench" / "onnx"


def cache_key(model: SegmentationModel, opset: int) -> str:
    ident = {"name": model.name, "weights": model.weights, "opset": opset, "input_size": list(model.input_size),
             "torch": torch.__version__}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


class _Logits(torch.nn.Module):
    """The network as a plain tensor -> logits function, for export."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.module(pixel_values=pixel_values).logits


def export(model: SegmentationModel, path: Path, opset: int) -> str:
    """Export ``model`` (fp32, CPU) with a dynamic batch axis; returns the exporter used."""
    wrapper = _Logits(model.module.float().cpu()).eval()
    h, w = model.input_size
    example = torch.rand((PARITY_BATCH, 3, h, w), generator=torch.Generator().manual_seed(0)) + 0.1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    errors = []
    for dynamo in (False, True):  # the TorchScript exporter first (fast); the dynamo exporter when it cannot
        try:
            with torch.no_grad():
                if dynamo:
                    batch = torch.export.Dim("batch", min=1, max=1024)
                    torch.onnx.export(wrapper, (example,), str(tmp), input_names=["pixel_values"],
                                      output_names=["logits"], dynamic_shapes=({0: batch},), opset_version=max(opset, 18),
                                      dynamo=True)
                else:
                    torch.onnx.export(wrapper, (example,), str(tmp), input_names=["pixel_values"],
                                      output_names=["logits"], opset_version=opset, dynamo=False,
                                      dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
            wrapper.eval()  # the exporter restores the wrapper's mode, which would put the network in training
            os.replace(tmp, path)
            return "dynamo" if dynamo else "torchscript"
        except Exception as e:  # noqa: BLE001  each exporter fails differently
            wrapper.eval()
            errors.append(f"{'dynamo' if dynamo else 'torchscript'} exporter: {type(e).__name__}: {str(e)[:300]}")
    raise ConfigError(f"{model.name}: ONNX export failed: " + " | ".join(errors))


class OnnxModel(SegmentationModel):
    """A registry model run by an ONNX Runtime session; pre- and postprocessing as the PyTorch model."""

    runtime = "onnxruntime"

    def __init__(self, torch_model: SegmentationModel, session, path: Path, exporter: str, parity: dict):
        super().__init__(device=str(torch_model.device), precision="fp32", upsample=torch_model.upsample)
        for attr in ("name", "family", "num_labels", "id2label", "input_size", "label_set", "preprocessor",
                     "image_mean", "image_std"):
            setattr(self, attr, getattr(torch_model, attr))
        self.weights = {**torch_model.weights, "onnx": {"path": str(path), "exporter": exporter}}
        self._params = torch_model.params()
        self._bytes = path.stat().st_size
        self.session = session
        self.parity = parity
        self.providers = session.get_providers()

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.session.run(["logits"], {"pixel_values": pixel_values.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out).to(self.device)

    def params(self) -> int:
        return self._params

    def weight_bytes(self) -> int:
        return self._bytes


def check_parity(torch_model: SegmentationModel, session, atol: float) -> dict:
    """Max |logit difference| and argmax agreement between ONNX Runtime and PyTorch fp32 on seeded inputs."""
    h, w = torch_model.input_size
    g = torch.Generator().manual_seed(1)
    x = torch.rand((PARITY_BATCH + 1, 3, h, w), generator=g) * 2 - 1  # a batch size the export never saw
    with torch.inference_mode():
        ref = torch_model.module.float().cpu()(pixel_values=x).logits.numpy()
    got = session.run(["logits"], {"pixel_values": x.numpy()})[0]
    diff = float(np.abs(got - ref).max())
    agreement = float(np.mean(got.argmax(1) == ref.argmax(1)))
    return {"max_abs_diff": diff, "label_agreement": agreement, "atol": atol, "passed": diff <= atol,
            "inputs": f"{PARITY_BATCH + 1} seeded random images at {h}x{w}"}


def load_onnx_model(torch_model: SegmentationModel, opset: int = 17, cache_dir: str | None = None,
                    providers: list[str] | None = None, parity_atol: float = 1e-3, **options) -> OnnxModel:
    """Export (or reuse the cached export of) ``torch_model`` and wrap an ONNX Runtime session around it."""
    if options:
        raise ConfigError(f"onnxruntime: unknown option(s) {', '.join(sorted(options))}; "
                          "allowed: opset, cache_dir, providers, parity_atol")
    if torch_model.precision != "fp32":
        raise UnsupportedError(f"{torch_model.name}: the onnxruntime runtime runs the fp32 export; "
                               f"precision {torch_model.precision!r} does not apply")
    if torch_model.module is None:
        raise UnsupportedError(f"{torch_model.name}: only PyTorch models can be exported to ONNX")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("the onnxruntime runtime needs onnx and onnxruntime: pip install 'segbench[onnx]'") from None
    path = cache_root(cache_dir) / f"{cache_key(torch_model, opset)}.onnx"
    exporter = "cached"
    if not path.is_file():
        exporter = export(torch_model, path, opset)
    if providers is None:
        providers = ["CPUExecutionProvider"]
        if torch_model.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif torch_model.device.type == "cuda":
            raise UnsupportedError("CUDAExecutionProvider is not available in this onnxruntime build")
    session = ort.InferenceSession(str(path), providers=providers)
    parity = check_parity(torch_model, session, parity_atol)
    model = OnnxModel(torch_model, session, path, exporter, parity)
    torch_model.module = None  # the PyTorch weights are not needed any more; free them
    return model
