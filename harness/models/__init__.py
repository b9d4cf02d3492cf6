"""Model registry and ``load_model``: registry names, hub ids, local directories, weight files.

``load_model`` dispatches on what it is given:

- a path ending in ``.tflite`` (or ``runtime="litert"``) -> :func:`harness.models.litert.load_litert_model`;
- a torchvision registry entry -> :mod:`harness.models.torchvision_models` (the ``vision`` extra);
- anything else (registry name, hub id, save_pretrained directory) -> :mod:`harness.models.hf`;
- ``runtime="onnxruntime"`` then wraps the PyTorch adapter with
  :func:`harness.models.onnx.load_onnx_model`.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

import torch

from harness.errors import ConfigError, UnsupportedError, did_you_mean
from harness.models.base import SegmentationModel
from harness.models.registry import ALIASES, MODELS, ModelSpec, resolve

__all__ = ["load_model", "MODELS", "ALIASES", "ModelSpec", "model_infos", "missing_weights", "count_params",
           "SegmentationModel"]

RUNTIMES = ("pytorch", "onnxruntime", "litert")


def _runtime_module(module: str, what: str):
    """Import ``harness.models.<module>`` lazily; ConfigError saying what is missing when it is absent."""
    try:
        return importlib.import_module(f"harness.models.{module}")
    except ModuleNotFoundError as e:
        raise ConfigError(f"{what} is not available in this installation: {e} (harness/models/{module}.py "
                          f"or its dependencies are missing)") from e


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists()


def load_model(name_or_path: str, weights: str | None = None, device: str = "cpu", precision: str = "fp32",
               amp: str = "autocast", upsample: str = "bilinear", runtime: str = "pytorch",
               channels_last: bool = False, compile: bool = False, attn_implementation: str | None = None,
               trust_remote_code: bool = False, **options) -> SegmentationModel:
    """Build a model adapter ready to run on ``device`` under ``precision``.

    name_or_path: a registry name (see :data:`MODELS`), any AutoModelForSemanticSegmentation
        hub id (``owner/name``), a local save_pretrained directory, or a ``.tflite`` file.
    weights: None = the model's own pretrained weights (hub id via the local cache, or the local
        directory itself); ``"random"`` = the architecture from its config, seeded; a path = a
        save_pretrained directory or an original-format checkpoint file.
    precision/amp: ``fp32|tf32|fp16|bf16``; ``amp="cast"`` casts the module to fp16/bf16,
        ``"autocast"`` runs fp32 weights under autocast.
    options: runtime-specific options (ONNX Runtime and LiteRT adapters); none for PyTorch.
    """
    name_or_path = str(name_or_path)
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if name_or_path.endswith(".tflite") or runtime == "litert" or name_or_path.endswith("-litert"):
        litert = _runtime_module("litert", "the LiteRT runtime")
        extra = {"weights": weights} if weights is not None else {}
        return litert.load_litert_model(name_or_path, device=device, precision=precision, upsample=upsample,
                                        **extra, **options)
    if runtime == "pytorch" and options:
        raise ConfigError(f"model {name_or_path!r}: unknown option(s) {', '.join(sorted(options))} "
                          "(the PyTorch runtime takes none; options are for the onnxruntime and litert runtimes)")
    if runtime == "onnxruntime" and compile:
        raise UnsupportedError(f"model {name_or_path!r}: compile=True does not apply to the onnxruntime runtime")
    spec = resolve(name_or_path)
    if spec is None and not _looks_like_path(name_or_path) and "/" not in name_or_path:
        raise ConfigError(f"unknown model {name_or_path!r}{did_you_mean(name_or_path, [*MODELS, *ALIASES])}: not "
                          f"in the registry ({', '.join(MODELS)}), not a local directory and not a hub id "
                          f"(owner/name)")
    if spec is None and _looks_like_path(name_or_path) and not Path(name_or_path).is_dir():
        raise ConfigError(f"model {name_or_path!r}: no such directory (expected a save_pretrained directory "
                          f"with config.json and preprocessor_config.json, or a .tflite file)")
    adapter = {"device": device, "precision": precision, "amp": amp, "upsample": upsample,
               "channels_last": channels_last, "compile": compile}
    if spec is not None and spec.kind == "torchvision":
        from harness.models.torchvision_models import load_torchvision_model

        model = load_torchvision_model(spec, weights=weights, attn_implementation=attn_implementation,
                                       name=name_or_path, **adapter)
    else:
        from harness.models.hf import load_hf_model

        model = load_hf_model(name_or_path, spec, weights=weights, attn_implementation=attn_implementation,
                              trust_remote_code=trust_remote_code, **adapter)
    if runtime == "onnxruntime":
        onnx = _runtime_module("onnx", "the onnxruntime runtime")
        return onnx.load_onnx_model(model, **options)
    return model


def _weights_present(spec: ModelSpec) -> bool | None:
    """Whether the spec's pretrained weights are in the local cache (None when it has no hub id)."""
    if spec.kind == "torchvision":
        from harness.models.torchvision_models import weights_present

        return weights_present(spec.name)
    if spec.hub_id is None:
        return None
    from harness.models.hub import cached_revision

    return cached_revision(spec.hub_id) is not None


def missing_weights(name_or_path: str, weights: str | None = None) -> str | None:
    """Why the pretrained weights of a registry model are not available locally (None when they are).

    For preflight checks: nothing is loaded and nothing is downloaded. ``weights="random"`` or an
    existing path is always available; names outside the registry give None (the load reports them).
    """
    if weights == "random":
        return None
    if weights is not None:
        return None if Path(weights).exists() else f"weights path {weights} does not exist"
    spec = resolve(name_or_path)
    if spec is None:
        return None
    if spec.kind == "torchvision":
        from harness.models import torchvision_models as tv

        path = tv.checkpoint_path(spec.name)
        if path is None:
            return f"{spec.name} needs torchvision: {tv.INSTALL_HINT}"
        return None if path.is_file() else (f"{path.name} is not in torch.hub's checkpoint folder {path.parent}; "
                                            f"copy it there or set `weights: /path/to/file.pth`")
    if spec.hub_id is None:
        return (f"{spec.name} has no checkpoint in transformers format: set `weights:` to an original DPT "
                "checkpoint file or a save_pretrained directory")
    from harness.models.hub import cache_dir, cached_revision

    if cached_revision(spec.hub_id) is None:
        return (f"{spec.hub_id} is not in the Hugging Face cache ({cache_dir()}): download it on a connected "
                f"machine (`hf download {spec.hub_id}`) or set `weights: /path/to/dir`")
    return None


def param_count(name: str) -> int | None:
    """Parameters of a registry architecture: the spec's exact count, else counted on the meta device."""
    spec = MODELS[name]
    return spec.params if spec.params is not None else count_params(name)


@cache
def count_params(name: str) -> int | None:
    """Parameters of a registry architecture, counted on the meta device (no memory, no weights).

    Falls back to the published figure when the architecture cannot be built here (torchvision absent).
    """
    spec = MODELS[name]
    if spec.kind == "torchvision":
        from harness.models.torchvision_models import meta_param_count

        counted = meta_param_count(name)
        if counted is None and spec.published_params_m:
            return int(round(spec.published_params_m * 1e6))
        return counted
    from harness.models.hf import build_random, config_from_dict

    config = config_from_dict(spec.config_dict(), str(spec.config_path))
    with torch.device("meta"):
        module = build_random(config)
    return sum(p.numel() for p in module.parameters())


def model_infos() -> list[dict]:
    """One row per registered model for ``segbench models``.

    Keys: name, family, params (count), input_size [H, W] pixels, label_set, runtime,
    weights_from (hub id or where weights come from), present (weights in the local cache;
    None when unknown), description, aliases.
    """
    aliases: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    rows = []
    for spec in MODELS.values():
        if spec.kind == "torchvision":
            source = "torchvision (vision extra)"
        else:
            source = spec.hub_id or "checkpoint file"
        rows.append({"name": spec.name, "family": spec.family, "params": param_count(spec.name),
                     "input_size": list(spec.input_size), "label_set": spec.label_set, "runtime": "pytorch",
                     "hub_id": spec.hub_id, "weights_from": source, "present": _weights_present(spec),
                     "description": spec.description, "aliases": aliases.get(spec.name, [])})
    try:
        from harness.models.litert import litert_model_infos

        rows.extend(litert_model_infos())
    except ImportError:
        pass
    return rows
