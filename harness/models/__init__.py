"""Model registry and ``load_model``: registry names, hub ids, local directories, weight files."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harness.errors import ConfigError, WeightsError, did_you_mean
from harness.models.base import SegmentationModel
from harness.models.registry import MODELS, ModelSpec

__all__ = ["load_model", "MODELS", "ModelSpec", "model_infos", "SegmentationModel"]

RANDOM_SEED = 0


def _config_from_dict(d: dict):
    from transformers import CONFIG_MAPPING

    mt = d.get("model_type")
    if mt not in CONFIG_MAPPING:
        raise ConfigError(f"config model_type {mt!r} is not known to this transformers version")
    return CONFIG_MAPPING[mt].from_dict(d)


def _module_class(config, builder: str = "auto"):
    if builder == "dpt-swin" or (config.model_type == "dpt" and getattr(config, "backbone_config", None) is not None
                                 and config.backbone_config.model_type == "swinv2"):
        from harness.models.dpt_swin import DPTSwinForSemanticSegmentation

        return DPTSwinForSemanticSegmentation
    from transformers import AutoModelForSemanticSegmentation

    return AutoModelForSemanticSegmentation


def _build_random(config, builder: str, attn: str | None):
    torch.manual_seed(RANDOM_SEED)
    cls = _module_class(config, builder)
    kwargs = {"attn_implementation": attn} if attn else {}
    if hasattr(cls, "from_config"):
        return cls.from_config(config, **kwargs)
    if attn:
        config._attn_implementation = attn
    return cls(config)


def _from_pretrained(target: str, builder: str, attn: str | None, trust_remote_code: bool, config=None):
    from harness.models.hub import load_pretrained

    kwargs = {"trust_remote_code": trust_remote_code}
    if attn:
        kwargs["attn_implementation"] = attn
    cls = _module_class(config, builder) if config is not None else None
    if cls is None:
        from transformers import AutoModelForSemanticSegmentation

        cls = AutoModelForSemanticSegmentation
    return load_pretrained(cls, target, **kwargs)


def _processor_for(path_or_id: str | None, spec: ModelSpec | None):
    """The model's preprocessing: its directory's or hub snapshot's preprocessor_config.json, else the registry's."""
    from harness.models.hf import preprocessor_from_dict

    if path_or_id is not None and Path(path_or_id).is_dir():
        pc = Path(path_or_id) / "preprocessor_config.json"
        if pc.is_file():
            return preprocessor_from_dict(json.loads(pc.read_text()), str(pc))
        if spec is None:
            raise WeightsError(f"{path_or_id}: no preprocessor_config.json; the model's own preprocessing is unknown")
    if spec is not None:
        return preprocessor_from_dict(spec.processor_dict(), str(spec.processor_path))
    from harness.models.hub import hub_file

    path = hub_file(path_or_id, "preprocessor_config.json")
    return preprocessor_from_dict(json.loads(Path(path).read_text()), f"{path_or_id}/preprocessor_config.json")


def load_model(name_or_path: str, weights: str | None = None, device: str = "cpu", precision: str = "fp32",
               amp: str = "autocast", upsample: str = "bilinear", runtime: str = "pytorch",
               channels_last: bool = False, compile: bool = False, attn_implementation: str | None = None,
               trust_remote_code: bool = False, **options) -> SegmentationModel:
    """Build a model adapter ready to run on ``device`` under ``precision``.

    weights: None = the model's own pretrained weights (hub id via the local cache, or the
    local directory itself); "random" = the architecture from its config, seeded; a path =
    a save_pretrained directory or an original DPT checkpoint file.
    """
    if str(name_or_path).endswith(".tflite") or runtime == "litert" or str(name_or_path).endswith("-litert"):
        from harness.models.litert import load_litert_model

        return load_litert_model(name_or_path, device=device, precision=precision, weights=weights, **options)
    if options:
        raise ConfigError(f"model {name_or_path!r}: unknown option(s) {', '.join(sorted(options))}")
    spec = MODELS.get(name_or_path)
    local = Path(name_or_path)
    is_dir = not spec and local.is_dir()
    if spec is None and not is_dir and ("/" not in name_or_path or name_or_path.startswith((".", "/"))):
        raise ConfigError(f"unknown model {name_or_path!r}{did_you_mean(name_or_path, MODELS)}: not in the registry "
                          f"({', '.join(MODELS)}), not a local directory and not a hub id (owner/name)")
    builder = spec.builder if spec else "auto"
    if spec and spec.family == "cnn" and attn_implementation:
        raise ConfigError(f"model {name_or_path!r} is a CNN: attn_implementation={attn_implementation!r} does not apply")

    if weights == "random":
        if spec:
            config = _config_from_dict(spec.config_dict())
        elif is_dir:
            cfg_path = local / "config.json"
            if not cfg_path.is_file():
                raise WeightsError(f"{local}: no config.json to build the architecture from")
            config = _config_from_dict(json.loads(cfg_path.read_text()))
        else:
            from transformers import AutoConfig

            from harness.models.hub import load_pretrained

            config = load_pretrained(AutoConfig, name_or_path, trust_remote_code=trust_remote_code)
        module = _build_random(config, builder, attn_implementation)
        provenance = {"source": "random", "seed": RANDOM_SEED}
        processor = _processor_for(name_or_path if is_dir else None, spec)
    else:
        from harness.models.hub import cached_revision, local_provenance

        if weights is not None:
            wpath = Path(weights)
            if wpath.is_file():
                from harness.models.dpt_original import load_original_checkpoint

                if spec is None or spec.family != "dpt":
                    raise WeightsError(f"{weights}: checkpoint files are supported for the DPT registry models; "
                                       f"use a save_pretrained directory for {name_or_path!r}")
                module = load_original_checkpoint(wpath, _config_from_dict(spec.config_dict()))
                provenance = local_provenance(wpath)
                processor = _processor_for(None, spec)
            elif wpath.is_dir():
                module = _from_pretrained(str(wpath), builder, attn_implementation, trust_remote_code,
                                          config=_config_from_dict(spec.config_dict()) if spec else None)
                provenance = local_provenance(wpath)
                processor = _processor_for(str(wpath), spec)
            else:
                raise WeightsError(f"weights {weights!r} for {name_or_path!r}: no such file or directory")
        elif spec is not None:
            if spec.hub_id is None:
                raise WeightsError(f"{spec.name!r} has no published checkpoint in transformers format; give "
                                   f"`weights: /path/to/checkpoint` (an original DPT .pt file or a save_pretrained "
                                   f"directory) or `weights: random`")
            module = _from_pretrained(spec.hub_id, builder, attn_implementation, trust_remote_code,
                                      config=_config_from_dict(spec.config_dict()))
            provenance = {"source": "hub", "id": spec.hub_id, "revision": cached_revision(spec.hub_id)}
            processor = _processor_for(None, spec)
        elif is_dir:
            module = _from_pretrained(str(local), "auto", attn_implementation, trust_remote_code)
            provenance = local_provenance(local)
            processor = _processor_for(str(local), None)
        else:
            module = _from_pretrained(name_or_path, "auto", attn_implementation, trust_remote_code)
            provenance = {"source": "hub", "id": name_or_path, "revision": cached_revision(name_or_path)}
            processor = _processor_for(name_or_path, None)
    if trust_remote_code:
        provenance["trust_remote_code"] = True

    from harness.models.hf import HFSegmentationModel

    model = HFSegmentationModel(module, processor, name=name_or_path, weights=provenance,
                                label_set=spec.label_set if spec else None, family=spec.family if spec else None,
                                device=device, precision=precision, amp=amp, upsample=upsample,
                                channels_last=channels_last, compile=compile)
    if runtime == "onnxruntime":
        from harness.models.onnx import load_onnx_model

        return load_onnx_model(model)
    return model


def _weights_present(spec: ModelSpec) -> bool | None:
    if spec.hub_id is None:
        return None
    from harness.models.hub import cached_revision

    return cached_revision(spec.hub_id) is not None


def model_infos() -> list[dict]:
    """One row per registered model for ``segbench models``."""
    rows = []
    for spec in MODELS.values():
        rows.append({"name": spec.name, "family": spec.family, "params": _param_count(spec),
                     "input_size": list(spec.input_size), "label_set": spec.label_set, "runtime": "pytorch",
                     "weights_from": spec.hub_id or "checkpoint file", "present": _weights_present(spec),
                     "description": spec.description})
    try:
        from harness.models.litert import litert_model_infos

        rows.extend(litert_model_infos())
    except ImportError:
        pass
    return rows


def _param_count(spec: ModelSpec) -> int:
    """Parameters of the architecture, counted on the meta device (no memory, no weights)."""
    config = _config_from_dict(spec.config_dict())
    with torch.device("meta"):
        module = _build_random(config, spec.builder, None)
    return sum(p.numel() for p in module.parameters())
