"""Model registry and ``load_model``: registry names, hub ids, local directories, weight files.

``load_model`` asks :mod:`harness.runtimes` which runtime runs the model (the one that owns its
name or file, e.g. ``.tflite`` -> litert, else the requested one), checks that the runtime
supports the task, device, precision and weights, and calls that runtime's module to load it.
``task="depth"`` gives a :class:`harness.models.depth_base.DepthModel` (see docs/DEPTH_MODELS.md).
"""

from __future__ import annotations

from harness.models.base import SegmentationModel
from harness.models.pytorch import count_params, missing_weights, param_count
from harness.models.registry import ALIASES, MODELS, ModelSpec
from harness.runtimes import RUNTIMES, runtime_for

__all__ = ["load_model", "MODELS", "ALIASES", "ModelSpec", "model_infos", "missing_weights", "count_params",
           "param_count", "SegmentationModel"]


def load_model(name_or_path: str, weights: str | None = None, device: str = "cpu", precision: str = "fp32",
               amp: str = "autocast", upsample: str = "bilinear", runtime: str = "pytorch",
               channels_last: bool = False, compile: bool = False, attn_implementation: str | None = None,
               trust_remote_code: bool = False, task: str = "segmentation", **options) -> SegmentationModel:
    """Build a model adapter ready to run on ``device`` under ``precision``.

    name_or_path: a registry name (see :data:`MODELS`; for ``task="depth"`` the depth registry,
        :data:`harness.models.depth_registry.DEPTH_MODELS`), any AutoModelForSemanticSegmentation
        (AutoModelForDepthEstimation) hub id (``owner/name``), a local save_pretrained directory, an
        original checkpoint file or a ``.tflite`` file.
    weights: None = the model's own pretrained weights (hub id via the local cache, or the local
        directory itself); ``"random"`` = the architecture from its config, seeded; a path = a
        save_pretrained directory or an original-format checkpoint file.
    precision/amp: ``fp32|tf32|fp16|bf16``; ``amp="cast"`` casts the module to fp16/bf16,
        ``"autocast"`` runs fp32 weights under autocast.
    runtime: ``pytorch``, ``onnxruntime`` or ``litert`` (see :data:`harness.runtimes.RUNTIMES`).
    task: ``segmentation`` or ``depth`` (see :data:`harness.tasks.TASKS`); a depth model's ``predict``
        gives float32 maps, one per image at its size, in the model's declared output space.
    options: runtime-specific options (ONNX Runtime and LiteRT adapters; for depth models ``flip``,
        ``depth_kind``, ``max_depth``, ``backbone``, ``num_threads``...); none for PyTorch segmentation.
    """
    from harness.tasks import get_task

    name_or_path = str(name_or_path)
    task = get_task(task).name
    rt = runtime_for(name_or_path, runtime)
    rt.check(device=device, precision=precision, weights=weights, compile=compile, task=task)
    return rt.implementation().load(name_or_path, weights=weights, device=device, precision=precision, amp=amp,
                                    upsample=upsample, channels_last=channels_last, compile=compile,
                                    attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
                                    task=task, **options)


def model_infos() -> list[dict]:
    """One row per registered model of every installed runtime, for ``segbench models``.

    Keys: name, task, family, params (count), input_size [H, W] pixels, label_set (segmentation) or
    depth_kind (depth), runtime, weights_from (hub id or where weights come from), present (weights
    found locally; None when unknown), description, aliases.
    """
    rows = []
    for rt in RUNTIMES.values():
        try:
            rows.extend(rt.implementation().model_infos())
        except ImportError:  # a runtime whose extra is not installed lists nothing
            continue
    return rows
