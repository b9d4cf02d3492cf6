"""ONNX Runtime beside PyTorch: export a PyTorch registry model to ONNX (dynamic batch axis), cache the
export by model + weights provenance + opset + input size, and check parity against PyTorch fp32 before
anything is measured. A model whose parity check fails still gets speed and memory; its accuracy is
not shown (the runner reads :attr:`OnnxModel.parity`).

Exporters (torch 2.13): the dynamo exporter (``torch.export`` + onnxscript) handles every registry
architecture, UperNet's adaptive pooling included; the TorchScript exporter is faster on small models
but cannot express UperNet. ``exporter="auto"`` tries dynamo first and falls back to TorchScript.

Cache layout: ``<cache root>/<key>/model.onnx`` (+ ``model.onnx.data`` for external weights) and
``meta.json`` (exporter, opset, export seconds); each entry is written in a temporary folder and
renamed into place, so concurrent cells never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import ConfigError, UnsupportedError
from harness.models.base import SegmentationModel
from harness.runtimes import RUNTIMES

EXPORT_BATCH = 2  # example batch of the export (torch.export specialises a batch of 1)
PARITY_BATCH = 3  # parity runs at a batch size the export never saw
EXPORTERS = ("auto", "dynamo", "torchscript")
DYNAMO_MIN_OPSET = 18
INSTALL_HINT = "pip install 'segbench[onnx]'"


def cache_root(cache_dir: str | None = None) -> Path:
    """Where exports are kept: ``cache_dir``, $SEGBENCH_CACHE/onnx, or ~/.cache/segbench/onnx."""
    if cache_dir:
        return Path(cache_dir)
    base = os.environ.get("SEGBENCH_CACHE")
    return Path(base) / "onnx" if base else Path.home() / ".cache" / "segbench" / "onnx"


def cache_key(model: SegmentationModel, opset: int, exporter: str = "auto") -> str:
    """24 hex digits over the model's name, weights provenance, input size, opset, exporter and torch version."""
    ident = {"name": model.name, "weights": model.weights, "opset": opset, "input_size": list(model.input_size),
             "exporter": exporter, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def logits_of(output) -> torch.Tensor:
    """The logits tensor of a segmentation module's output: ``.logits`` (transformers), ``["out"]``
    (torchvision) or the tensor itself."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "out" in output:
        return output["out"]
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise UnsupportedError(f"cannot find logits in a {type(output).__name__} output (expected .logits, "
                           "['out'] or a tensor)")


class _Logits(torch.nn.Module):
    """The network as a plain ``pixel_values -> logits`` function, for export."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return logits_of(self.module(pixel_values))


def _export_once(wrapper: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, dynamo: bool) -> int:
    """One export attempt into ``path``; returns the opset written."""
    names = {"input_names": ["pixel_values"], "output_names": ["logits"]}
    with torch.no_grad():
        if dynamo:
            opset = max(opset, DYNAMO_MIN_OPSET)
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.onnx.export(wrapper, (example,), str(path), dynamic_shapes=({0: batch},), opset_version=opset,
                              dynamo=True, verbose=False, **names)
        else:
            torch.onnx.export(wrapper, (example,), str(path), opset_version=opset, dynamo=False,
                              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, **names)
    return opset


def read_meta(directory: Path) -> dict:
    """The meta data of a cached export."""
    return json.loads((directory / "meta.json").read_text())


def export_module(wrapper: torch.nn.Module, input_size: tuple[int, int], name: str, directory: Path, opset: int,
                  exporter: str = "auto") -> dict:
    """Export ``wrapper`` (``pixel_values -> one tensor``, fp32 on the CPU) into ``directory/model.onnx``.

    The files are written in a temporary sibling folder that is renamed to ``directory`` at the end.
    Raises ConfigError with each exporter's error when none succeeds.
    """
    wrapper = wrapper.float().cpu().eval()
    h, w = input_size
    example = torch.rand((EXPORT_BATCH, 3, h, w), generator=torch.Generator().manual_seed(0)) + 0.1
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{directory.name}.tmp-", dir=directory.parent))
    errors = []
    try:
        for dynamo in {"auto": (True, False), "dynamo": (True,), "torchscript": (False,)}[exporter]:
            name = "dynamo" if dynamo else "torchscript"
            t0 = time.perf_counter()
            try:
                written = _export_once(wrapper, example, tmp / "model.onnx", opset, dynamo)
            except Exception as e:  # noqa: BLE001  each exporter fails in its own way
                errors.append(f"{name} exporter: {type(e).__name__}: {str(e)[:300]}")
                for f in tmp.iterdir():
                    f.unlink()
                continue
            finally:
                wrapper.eval()  # the exporters restore the wrapper's mode, which could leave it training
            meta = {"exporter": name, "opset": written, "export_s": round(time.perf_counter() - t0, 3),
                    "torch": torch.__version__}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            try:
                os.replace(tmp, directory)
            except OSError:  # another process finished the same entry first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
                return read_meta(directory)
            return meta
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    raise ConfigError(f"{name}: ONNX export failed: " + " | ".join(errors))


@dataclass
class Export:
    """A cached export (``directory/model.onnx``, its meta data) and the ONNX Runtime session running it."""

    session: object
    directory: Path
    meta: dict
    cached: bool

    def bytes(self) -> int:
        """Bytes of the exported files (graph and weights)."""
        return sum(f.stat().st_size for f in self.directory.iterdir() if f.name != "meta.json")

    def provenance(self, weights: dict) -> dict:
        """The PyTorch model's weights provenance with the export's: path, exporter, opset, cache hit, bytes."""
        return {**weights, "onnx": {"path": str(self.directory / "model.onnx"), "exporter": self.meta.get("exporter"),
                                    "opset": self.meta.get("opset"), "cached": self.cached, "bytes": self.bytes()}}

    def run(self, pixel_values: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The session's output for ``pixel_values`` (fp32 on the CPU in, a tensor on ``device`` out)."""
        out = self.session.run(["logits"], {"pixel_values": pixel_values.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out).to(device)


def open_export(model, wrapper: Callable[[], torch.nn.Module], opset: int, cache_dir: str | None,
                providers: list[str] | None, exporter: str) -> Export:
    """The cached export of ``model`` (keyed by :func:`cache_key`), made from ``wrapper()`` (a
    ``pixel_values -> one tensor`` module) when missing, and a session on it with
    ``torch.get_num_threads()`` intra-op threads."""
    if exporter not in EXPORTERS:
        raise ConfigError(f"onnxruntime: exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(f"the onnxruntime runtime needs onnx and onnxruntime: {INSTALL_HINT}") from None
    providers = providers or providers_for(model.device, ort)
    directory = cache_root(cache_dir) / cache_key(model, opset, exporter)
    cached = (directory / "model.onnx").is_file() and (directory / "meta.json").is_file()
    meta = (read_meta(directory) if cached
            else export_module(wrapper(), model.input_size, model.name, directory, opset, exporter))
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(directory / "model.onnx"), sess_options=session_options, providers=providers)
    return Export(session, directory, meta, cached)


class OnnxModel(SegmentationModel):
    """A registry model run by an ONNX Runtime session; pre- and postprocessing as the PyTorch model.

    Attributes:
        parity: ``{max_abs_diff, label_agreement, atol, passed, inputs}`` against PyTorch fp32.
        providers: the session's execution providers, in order.
    """

    runtime = "onnxruntime"

    def __init__(self, torch_model: SegmentationModel, export: Export, parity: dict):
        super().__init__(device=str(torch_model.device), precision="fp32", upsample=torch_model.upsample)
        for attr in ("name", "family", "num_labels", "id2label", "input_size", "label_set", "preprocessor",
                     "image_mean", "image_std"):
            setattr(self, attr, getattr(torch_model, attr))
        self.export, self._bytes = export, export.bytes()
        self.weights = export.provenance(torch_model.weights)
        self._params = torch_model.params()
        self.session = export.session
        self.parity = parity
        self.providers = export.session.get_providers()

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.export.run(pixel_values, self.device)

    def params(self) -> int:
        """Parameters of the PyTorch model that was exported."""
        return self._params

    def weight_bytes(self) -> int:
        """Bytes of the exported files (graph and weights)."""
        return self._bytes


def check_parity(torch_model: SegmentationModel, session, atol: float) -> dict:
    """Max |logit difference| and argmax agreement (fraction of equal pixels) of ONNX Runtime vs PyTorch
    fp32 on :data:`PARITY_BATCH` seeded non-zero inputs in [-1, 1); ``passed`` when the difference <= atol."""
    h, w = torch_model.input_size
    x = torch.rand((PARITY_BATCH, 3, h, w), generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        ref = logits_of(torch_model.module.float().cpu()(x)).numpy()
    got = session.run(["logits"], {"pixel_values": x.numpy()})[0]
    if got.shape != ref.shape:
        return {"max_abs_diff": None, "label_agreement": None, "atol": atol, "passed": False,
                "inputs": f"shape {list(got.shape)} vs PyTorch {list(ref.shape)}"}
    diff = float(np.abs(got.astype(np.float64) - ref).max())
    agreement = float(np.mean(got.argmax(1) == ref.argmax(1)))
    return {"max_abs_diff": diff, "label_agreement": agreement, "atol": atol, "passed": bool(diff <= atol),
            "inputs": f"{PARITY_BATCH} seeded random images at {h}x{w}"}


def providers_for(device: torch.device, ort) -> list[str]:
    """CPU, or CUDA then CPU for a cuda model; UnsupportedError when this onnxruntime has no CUDA."""
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UnsupportedError("CUDAExecutionProvider is not available in this onnxruntime build "
                               f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def load_onnx_model(torch_model: SegmentationModel, opset: int = 17, cache_dir: str | None = None,
                    providers: list[str] | None = None, parity_atol: float = 1e-3, exporter: str = "auto",
                    **options) -> OnnxModel:
    """Export (or reuse the cached export of) ``torch_model`` and wrap an ONNX Runtime session around it.

    The session uses ``torch.get_num_threads()`` intra-op threads. Parity against the PyTorch model
    is checked before returning; the PyTorch module is released afterwards.
    """
    if options:
        raise ConfigError(f"onnxruntime: unknown option(s) {', '.join(sorted(options))}; "
                          "allowed: opset, cache_dir, providers, parity_atol, exporter")
    RUNTIMES["onnxruntime"].check(device=str(torch_model.device), precision=torch_model.precision)
    if torch_model.module is None:
        raise UnsupportedError(f"{torch_model.name}: only PyTorch models can be exported to ONNX")
    export = open_export(torch_model, lambda: _Logits(torch_model.module), opset, cache_dir, providers, exporter)
    parity = check_parity(torch_model, export.session, parity_atol)
    model = OnnxModel(torch_model, export, parity)
    torch_model.module = None  # the PyTorch weights are not needed any more; free them
    return model


def load(name_or_path: str, weights: str | None = None, device: str = "cpu", precision: str = "fp32",
         amp: str = "autocast", upsample: str = "bilinear", channels_last: bool = False, compile: bool = False,
         attn_implementation: str | None = None, trust_remote_code: bool = False, task: str = "segmentation",
         **options) -> OnnxModel:
    """The runtime entry (see :mod:`harness.runtimes`): the PyTorch adapter, exported; ``options``
    go to :func:`load_onnx_model`, or for ``task="depth"`` to
    :func:`harness.models.onnx_depth.load_onnx_depth_model` (the depth loader's own options first)."""
    from harness.models import pytorch
    from harness.runtimes import RUNTIMES

    RUNTIMES["onnxruntime"].check(task=task, device=device, precision=precision)
    if task == "depth":
        from harness.models.depth import HF_OPTIONS
        from harness.models.onnx_depth import load_onnx_depth_model

        depth_options = {k: options.pop(k) for k in list(options) if k in HF_OPTIONS}
        adapter = pytorch.load(name_or_path, weights=weights, device=device, precision=precision, amp=amp,
                               channels_last=channels_last, attn_implementation=attn_implementation,
                               trust_remote_code=trust_remote_code, task="depth", **depth_options)
        return load_onnx_depth_model(adapter, **options)
    torch_model = pytorch.load(name_or_path, weights=weights, device=device, precision=precision, amp=amp,
                               upsample=upsample, channels_last=channels_last,
                               attn_implementation=attn_implementation, trust_remote_code=trust_remote_code)
    return load_onnx_model(torch_model, **options)


def model_infos() -> list[dict]:
    """No model of its own: the onnxruntime runtime exports the PyTorch registry's models."""
    return []


def check_name(name: str, task: str = "segmentation") -> None:
    """The names the PyTorch runtime accepts."""
    from harness.models.pytorch import check_name as pytorch_check

    pytorch_check(name, task)


def missing_weights(name: str, weights: str | None = None, task: str = "segmentation") -> str | None:
    """The PyTorch model's weights, which the export is made from."""
    from harness.models.pytorch import missing_weights as pytorch_missing

    return pytorch_missing(name, weights, task)
