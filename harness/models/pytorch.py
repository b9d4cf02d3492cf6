"""The ``pytorch`` runtime: registry names, hub ids and local directories as PyTorch adapters.

A torchvision registry entry goes to :mod:`harness.models.torchvision_models` (the ``vision``
extra); anything else (registry name, hub id, save_pretrained directory, original checkpoint
file given as ``weights``) to :mod:`harness.models.hf`; ``task="depth"`` to
:func:`harness.models.depth.load_depth_model`. See :mod:`harness.runtimes` for the functions
every runtime module provides.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from harness.errors import ConfigError, did_you_mean
from harness.models.base import SegmentationModel
from harness.models.registry import ALIASES, MODELS, ModelSpec, resolve


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is written as a path (./, /, ~) or names something that exists."""
    return name.startswith((".", "/", "~")) or Path(name).exists()


def check_name(name: str, task: str = "segmentation") -> None:
    """ConfigError when ``name`` is neither a registry name (of the task), a hub id (owner/name) nor a path."""
    if task == "depth":
        from harness.models.depth import check_depth_name

        return check_depth_name(name)
    if resolve(name) is None and not looks_like_path(name) and "/" not in name:
        raise ConfigError(f"unknown model {name!r}{did_you_mean(name, [*MODELS, *ALIASES])}: not in the registry "
                          f"({', '.join(MODELS)}), not a local directory and not a hub id (owner/name)")


OPTIONS = ("preprocessing",)


def load(name_or_path: str, weights: str | None = None, device: str = "cpu", precision: str = "fp32",
         amp: str = "autocast", upsample: str = "bilinear", channels_last: bool = False, compile: bool = False,
         attn_implementation: str | None = None, trust_remote_code: bool = False, task: str = "segmentation",
         **options) -> SegmentationModel:
    """A PyTorch adapter for ``name_or_path`` (see :func:`harness.models.load_model` for the arguments).

    Option ``preprocessing``: ``processor`` (the model's own image processor, default) or, for DPT,
    ``dpt-original`` (the original inference transform: aspect kept, 480, multiple of 32, bicubic).
    ``task="depth"``: a depth adapter; ``upsample`` does not apply (a depth model resizes its prediction
    as its own post-processing does) and ``options`` are the depth loader's."""
    if task == "depth":
        from harness.models.depth import load_depth_model

        return load_depth_model(name_or_path, weights=weights, device=device, precision=precision, amp=amp,
                                runtime="pytorch", channels_last=channels_last, compile=compile,
                                attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
                                **options)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"model {name_or_path!r}: unknown option(s) {', '.join(unknown)} (the PyTorch runtime "
                          f"takes {', '.join(OPTIONS)}; other options are for the onnxruntime and litert runtimes)")
    check_name(name_or_path)
    spec = resolve(name_or_path)
    if spec is None and looks_like_path(name_or_path) and not Path(name_or_path).is_dir():
        raise ConfigError(f"model {name_or_path!r}: no such directory (expected a save_pretrained directory "
                          f"with config.json and preprocessor_config.json, or a .tflite file)")
    adapter = {"device": device, "precision": precision, "amp": amp, "upsample": upsample,
               "channels_last": channels_last, "compile": compile}
    if spec is not None and spec.kind == "torchvision":
        from harness.models.torchvision_models import load_torchvision_model

        if options:
            raise ConfigError(f"model {name_or_path!r}: option(s) {', '.join(sorted(options))} apply to "
                              "transformers models only")
        return load_torchvision_model(spec, weights=weights, attn_implementation=attn_implementation,
                                      name=name_or_path, **adapter)
    from harness.models.hf import load_hf_model

    return load_hf_model(name_or_path, spec, weights=weights, attn_implementation=attn_implementation,
                         trust_remote_code=trust_remote_code, **adapter, **options)


def _weights_present(spec: ModelSpec) -> bool | None:
    """Whether the spec's pretrained weights are in the local cache (None when it has no hub id)."""
    if spec.kind == "torchvision":
        from harness.models.torchvision_models import weights_present

        return weights_present(spec.name)
    if spec.hub_id is None:
        return None
    from harness.models.hub import cached_revision

    return cached_revision(spec.hub_id) is not None


def _registry_missing(spec: ModelSpec) -> str | None:
    """Why a registry model's pretrained weights are not available locally."""
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


def missing_weights(name_or_path: str, weights: str | None = None, task: str = "segmentation") -> str | None:
    """Why the weights of ``name_or_path`` are not available locally (None when they are).

    For preflight checks: nothing is loaded and nothing is downloaded. ``weights="random"`` or an
    existing path is always available; an unknown name gives None (the load reports it). Depth
    models: :func:`harness.models.depth.missing_depth_weights` (hub ids not in the depth registry
    are looked up in the cache as here).
    """
    if task == "depth":
        from harness.models.depth import missing_depth_weights
        from harness.models.depth_registry import resolve_depth

        if resolve_depth(name_or_path) is not None or weights is not None:
            return missing_depth_weights(name_or_path, weights)
    if weights == "random":
        return None
    if weights is not None:
        return None if Path(weights).exists() else f"weights path {weights} does not exist"
    spec = resolve(name_or_path) if task != "depth" else None
    if spec is not None:
        return _registry_missing(spec)
    if Path(name_or_path).is_dir() or "/" not in name_or_path or name_or_path.startswith((".", "/")):
        return None  # a local directory, or an unknown name the cell itself will report
    from harness.models.hub import cache_dir, cached_revision

    if cached_revision(name_or_path) is None:
        return f"{name_or_path} is neither a local directory nor in the Hugging Face cache ({cache_dir()})"
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
    """One row per registered PyTorch model for ``segbench models``.

    Keys: name, task, family, params (count), input_size [H, W] pixels, label_set, runtime,
    weights_from (hub id or where weights come from), present (weights in the local cache;
    None when unknown), description, aliases; then the depth registry's PyTorch models
    (:func:`harness.models.depth.depth_model_infos`).
    """
    aliases: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    rows = []
    for spec in MODELS.values():
        source = "torchvision (vision extra)" if spec.kind == "torchvision" else spec.hub_id or "checkpoint file"
        rows.append({"name": spec.name, "task": "segmentation", "family": spec.family, "params": param_count(spec.name),
                     "input_size": list(spec.input_size), "label_set": spec.label_set, "runtime": "pytorch",
                     "hub_id": spec.hub_id, "weights_from": source, "present": _weights_present(spec),
                     "description": spec.description, "aliases": aliases.get(spec.name, [])})
    from harness.models.depth import depth_model_infos

    return rows + [r for r in depth_model_infos() if r["runtime"] == "pytorch"]
