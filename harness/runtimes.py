"""Runtimes, each declared once: how its models are recognised, what it supports, how it loads.

A runtime executes a model's network: ``pytorch`` (the adapters of harness.models.hf and
harness.models.torchvision_models), ``onnxruntime`` (an ONNX export of a PyTorch adapter) and
``litert`` (TFLite files through ai-edge-litert). The suite validator, preflight, the cell's
skip checks, ``load_model`` and ``segbench models`` all read :data:`RUNTIMES`; none of them
names a runtime of its own.

Each runtime's module (``harness.models.<module>``, imported only when it is used) provides:

- ``load(name_or_path, *, weights, device, precision, amp, upsample, channels_last, compile,
  attn_implementation, trust_remote_code, task="segmentation", **options)`` -> a model adapter of
  the task (a :class:`harness.models.base.SegmentationModel`, or a
  :class:`harness.models.depth_base.DepthModel` for ``task="depth"``);
- ``missing_weights(name_or_path, weights, task="segmentation")`` -> why the weights are not
  available locally, or None;
- ``model_infos()`` -> rows for ``segbench models`` (may be empty), each with its ``task``;
- ``check_name(name_or_path, task="segmentation")`` -> raise ConfigError when the name can be
  neither a registered model of the task, a hub id nor a path (used by the suite validator,
  before anything is loaded).

Adding a runtime: its module, and one :class:`Runtime` entry below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from harness.errors import ConfigError, UnsupportedError, did_you_mean
from harness.settings import PRECISIONS

PROTOCOL_MODES = ("whole", "slide", "multiscale")
DEVICE_TYPES = ("cpu", "cuda", "mps")
_DEVICE_NAMES = {"cpu": "the CPU", "cuda": "CUDA", "mps": "MPS"}


@dataclass(frozen=True)
class Runtime:
    """What a runtime is and supports. Unsupported combinations are skipped (not failed) with a reason.

    ``tasks``: the tasks whose models it runs (a cell of another task is skipped with the reason).
    ``file_suffixes`` / ``name_suffixes``: a model path or registry name ending so belongs to this
    runtime whatever the suite's ``runtimes`` axis says. ``precision_note`` says what the runtime
    runs when it refuses a precision; ``protocol_note`` why it refuses resizing protocols.
    """

    name: str
    label: str
    description: str
    module: str
    extra: str | None
    tasks: tuple[str, ...] = ("segmentation", "depth")
    devices: tuple[str, ...] = DEVICE_TYPES
    precisions: tuple[str, ...] = PRECISIONS
    protocols: tuple[str, ...] = PROTOCOL_MODES
    file_suffixes: tuple[str, ...] = ()
    name_suffixes: tuple[str, ...] = ()
    random_weights: bool = True
    compile: bool = True
    applies_precision: bool = False  # the adapter applies autocast/cast (PyTorch modules only)
    precision_note: str = ""
    protocol_note: str = ""

    def owns(self, name_or_path: str) -> bool:
        """Whether ``name_or_path`` (a registry name or a weights path) belongs to this runtime."""
        suffixes = self.file_suffixes + self.name_suffixes
        return bool(suffixes) and name_or_path.endswith(suffixes)

    def unsupported(self, device: str = "cpu", precision: str = "fp32", protocol_mode: str = "whole",
                    weights: str | None = None, compile: bool = False, task: str = "segmentation") -> str | None:
        """Why this runtime cannot run the combination (a sentence), or None when it can."""
        if task not in self.tasks:
            return f"{self.label} runs {' and '.join(self.tasks)} models; task {task!r} is not supported"
        device_type = device.split(":")[0]
        if device_type not in self.devices:
            where = " and ".join(_DEVICE_NAMES[d] for d in self.devices)
            return f"{self.label} runs on {where} only; device {device!r} is not supported"
        if precision not in self.precisions:
            return (f"{self.label} runs {self.precision_note}; precision {precision!r} does not apply: use "
                    f"{' or '.join(self.precisions)} for {self.name} cells")
        if protocol_mode not in self.protocols:
            return f"protocol {protocol_mode!r} is not supported by {self.label}: {self.protocol_note}"
        if weights == "random" and not self.random_weights:
            return f"{self.label} models carry their weights; `weights: random` does not apply"
        if compile and not self.compile:
            return f"compile=True does not apply to the {self.name} runtime"
        return None

    def check(self, **combination) -> None:
        """Raise :class:`UnsupportedError` when :meth:`unsupported` gives a reason."""
        reason = self.unsupported(**combination)
        if reason:
            raise UnsupportedError(reason)

    def implementation(self) -> ModuleType:
        """The runtime's module, imported now; ConfigError saying what to install when it is missing."""
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as e:
            hint = f" (pip install 'segbench[{self.extra}]')" if self.extra else ""
            raise ConfigError(f"the {self.name} runtime is not available in this installation: {e}{hint}") from e


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("pytorch", "PyTorch", "transformers and torchvision modules run eagerly (or compiled)",
            "harness.models.pytorch", None, applies_precision=True),
    Runtime("onnxruntime", "ONNX Runtime", "an ONNX export of the PyTorch model, cached, parity-checked",
            "harness.models.onnx", "onnx", tasks=("segmentation", "depth"), devices=("cpu", "cuda"), precisions=("fp32",),
            protocols=("whole",),
            compile=False, precision_note="the fp32 export",
            protocol_note="the ONNX export has a fixed image size (only the batch axis is dynamic)"),
    Runtime("litert", "LiteRT", "TFLite files through ai-edge-litert (quantized segmentation models, depth networks)",
            "harness.models.litert", "litert", devices=("cpu",), precisions=("fp32",), protocols=("whole",),
            file_suffixes=(".tflite",), name_suffixes=("-litert",), random_weights=False, compile=False,
            precision_note="the model as stored (quantized)",
            protocol_note="its models output label maps (the argmax is inside the model) and run their own "
                          "letterbox protocol"),
)}


def get_runtime(name: str) -> Runtime:
    """The runtime declared as ``name``; ConfigError listing the declared ones otherwise."""
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ConfigError(f"runtime {name!r} is not one of {', '.join(RUNTIMES)}"
                          f"{did_you_mean(str(name), RUNTIMES)}") from None


def runtime_for(name_or_path: str, requested: str = "pytorch") -> Runtime:
    """The runtime a model runs on: the one that owns its name or file, else ``requested``."""
    return next((r for r in RUNTIMES.values() if r.owns(name_or_path)), None) or get_runtime(requested)
