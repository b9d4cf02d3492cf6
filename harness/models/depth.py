"""``load_depth_model``: depth registry names, hub ids, save_pretrained directories, checkpoint files.

Dispatch:

- a ``.tflite`` path, ``runtime="litert"`` or a LiteRT registry entry -> :mod:`harness.models.depth_litert`;
- a MiDaS v2.1 registry entry (or its release file ``midas_v21*.pt``) -> :mod:`harness.models.midas_v21`;
- anything else (registry name, AutoModelForDepthEstimation hub id, save_pretrained directory,
  an original DPT ``.pt`` file) -> :mod:`harness.models.depth_hf`.

Rows for ``segbench models`` come from :func:`depth_model_infos`; :func:`missing_depth_weights`
says, without loading anything, why a registry model's weights are not available here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.errors import ConfigError, UnsupportedError, WeightsError, did_you_mean
from harness.models.depth_base import DepthModel
from harness.models.depth_registry import (
    DEPTH_ALIASES,
    DEPTH_MODELS,
    DepthSpec,
    resolve_depth,
    spec_for_checkpoint,
)

__all__ = ["load_depth_model", "depth_model_infos", "missing_depth_weights", "check_depth_name", "DepthModel",
           "DEPTH_MODELS"]

RUNTIMES = ("pytorch", "litert")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
HF_OPTIONS = ("flip", "depth_kind", "max_depth")


def _checkpoint_spec(path: Path) -> DepthSpec:
    spec = spec_for_checkpoint(path)
    if spec is None:
        known = ", ".join(s.checkpoint for s in DEPTH_MODELS.values() if s.checkpoint)
        raise ConfigError(f"{path}: cannot tell which architecture this checkpoint file holds from its name (known "
                          f"release files: {known}); name the registry model and pass the file as `weights:`")
    return spec


def load_depth_model(name_or_path: str, weights: str | None = None, device: str = "cpu", precision: str = "fp32",
                     amp: str = "autocast", runtime: str = "pytorch", channels_last: bool = False,
                     compile: bool = False, attn_implementation: str | None = None, trust_remote_code: bool = False,
                     **options) -> DepthModel:
    """Build a depth model adapter ready to run on ``device`` under ``precision``.

    name_or_path: a depth registry name (see :data:`DEPTH_MODELS`), any AutoModelForDepthEstimation
        hub id, a local save_pretrained directory, an original release file (``midas_v21-*.pt``,
        ``dpt_hybrid-midas-*.pt``...) or a ``.tflite`` file.
    weights: None = the model's own pretrained weights; ``"random"`` = the architecture from its
        config, seeded (speed and memory only); a path = a save_pretrained directory or a checkpoint file.
    options: ``flip`` (ZoeDepth flip test-time augmentation, default on), ``depth_kind`` and
        ``max_depth`` (override what the output means), ``backbone`` (MiDaS v2.1: ``"auto"``,
        ``"timm"`` or ``"builtin"``), ``num_threads`` (LiteRT).
    """
    name = str(name_or_path)
    if runtime not in RUNTIMES:
        raise ConfigError(f"depth model {name!r}: runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    spec = resolve_depth(name)
    path = Path(name)
    if spec is None and path.suffix in CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise WeightsError(f"{name}: no such checkpoint file")
        spec, weights = _checkpoint_spec(path), weights or name
    if name.endswith(".tflite") or runtime == "litert" or (spec is not None and spec.builder == "litert"):
        from harness.models.depth_litert import load_litert_depth_model

        return load_litert_depth_model(name, spec, weights=weights, device=device, precision=precision, **options)
    adapter = {"device": device, "precision": precision, "amp": amp, "channels_last": channels_last,
               "compile": compile}
    if spec is not None and spec.builder == "dpt-finetuned":
        from harness.models.dpt_finetuned import load_finetuned_dpt

        if options:
            raise ConfigError(f"depth model {name!r}: unknown option(s) {', '.join(sorted(options))} (it takes none)")
        return load_finetuned_dpt(spec, weights=weights, attn_implementation=attn_implementation, **adapter)
    if spec is not None and spec.builder == "midas-v21":
        if attn_implementation:
            raise UnsupportedError(f"model {name!r} is a CNN: attn_implementation does not apply")
        from harness.models.midas_v21 import load_midas_v21

        return load_midas_v21(spec, weights=weights, **adapter, **options)
    looks_like_path = name.startswith((".", "/", "~")) or path.exists()
    if spec is None and not looks_like_path and "/" not in name:
        raise ConfigError(f"unknown depth model {name!r}{did_you_mean(name, [*DEPTH_MODELS, *DEPTH_ALIASES])}: not "
                          f"in the depth registry ({', '.join(DEPTH_MODELS)}), not a local directory and not a hub "
                          "id (owner/name)")
    if spec is None and looks_like_path and not path.is_dir():
        raise ConfigError(f"depth model {name!r}: no such directory (expected a save_pretrained directory with "
                          "config.json and preprocessor_config.json, a checkpoint file or a .tflite file)")
    unknown = sorted(set(options) - set(HF_OPTIONS))
    if unknown:
        raise ConfigError(f"depth model {name!r}: unknown option(s) {', '.join(unknown)} (allowed: "
                          f"{', '.join(HF_OPTIONS)})")
    from harness.models.depth_hf import load_hf_depth_model

    return load_hf_depth_model(name, spec, weights=weights, attn_implementation=attn_implementation,
                               trust_remote_code=trust_remote_code, **options, **adapter)


def check_depth_name(name: str) -> None:
    """ConfigError when ``name`` is neither a depth registry name or alias, a hub id (owner/name), a path
    nor a checkpoint or .tflite file name (checked before anything is loaded)."""
    looks_like_path = name.startswith((".", "/", "~")) or Path(name).exists()
    if resolve_depth(name) is None and not looks_like_path and "/" not in name \
            and not name.endswith((*CHECKPOINT_SUFFIXES, ".tflite")):
        raise ConfigError(f"unknown depth model {name!r}{did_you_mean(name, [*DEPTH_MODELS, *DEPTH_ALIASES])}: not "
                          f"in the depth registry ({', '.join(DEPTH_MODELS)}), not a local directory and not a hub "
                          "id (owner/name)")


def missing_depth_weights(name_or_path: str, weights: str | None = None) -> str | None:
    """Why the weights of a depth registry model are not available locally (None when they are or unknown).

    Nothing is loaded or downloaded: ``weights="random"`` and existing paths are available; hub
    entries are looked up in the Hugging Face cache; file-only entries need ``weights:``.
    """
    if weights == "random":
        return None
    if weights is not None:
        return None if Path(weights).exists() else f"weights path {weights} does not exist"
    spec = resolve_depth(str(name_or_path))
    if spec is None:
        return None
    if spec.builder == "litert":
        from harness.models.litert import find_weights, weights_dirs

        return None if find_weights(spec.checkpoint) else (
            f"{spec.checkpoint} not found in {', '.join(str(d) for d in weights_dirs())}; set SEGBENCH_WEIGHTS")
    if spec.hub_id is None:
        return f"{spec.name} has no hub checkpoint: set `weights: /path/to/{spec.checkpoint}` (its original release)"
    from harness.models.hub import cache_dir, cached_revision

    if cached_revision(spec.hub_id) is None:
        return (f"{spec.hub_id} is not in the Hugging Face cache ({cache_dir()}): download it on a connected machine "
                f"(`hf download {spec.hub_id}`) or set `weights: /path/to/dir`")
    return None


def depth_param_count(spec: DepthSpec) -> int | None:
    """Parameters of a registry architecture counted on the meta device (no memory, no weights); None for LiteRT."""
    if spec.builder == "litert":
        return None
    with torch.device("meta"):
        if spec.builder == "midas-v21":
            from harness.models.midas_v21 import build_midas_v21

            module = build_midas_v21(spec.name, backbone="builtin")
        else:
            from harness.models.depth_hf import build_random_depth
            from harness.models.hf import config_from_dict

            module = build_random_depth(config_from_dict(spec.config_dict(), str(spec.config_path)))
    return sum(p.numel() for p in module.parameters())


def depth_model_infos() -> list[dict]:
    """One row per depth registry model for ``segbench models``.

    Keys: name, task ("depth"), family, params (published count when known, else None), input_size
    [H, W] pixels, depth_kind, align_space, max_depth (metres), runtime, hub_id, weights_from,
    present (None when unknown), description, aliases.
    """
    aliases: dict[str, list[str]] = {}
    for alias, target in DEPTH_ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    rows = []
    for spec in DEPTH_MODELS.values():
        missing = missing_depth_weights(spec.name)
        rows.append({"name": spec.name, "task": "depth", "family": spec.family,
                     "params": int(spec.published_params_m * 1e6) if spec.published_params_m else None,
                     "input_size": list(spec.input_size), "depth_kind": spec.depth_kind,
                     "align_space": spec.align_space, "max_depth": spec.max_depth,
                     "runtime": "litert" if spec.builder == "litert" else "pytorch", "hub_id": spec.hub_id,
                     "weights_from": spec.hub_id or spec.checkpoint, "present": missing is None,
                     "description": spec.description, "aliases": aliases.get(spec.name, [])})
    return rows
