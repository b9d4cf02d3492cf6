"""Adapter for transformers semantic-segmentation models: the network plus its own image processor.

The preprocessing is resolved through the model's own image-processor class (PIL backend):
the class is built from the preprocessor_config.json dict, so absent keys take that class's
defaults (DPT resizes bicubically unless told otherwise, SegFormer bilinearly...), and the
resolved values drive :class:`harness.models.preprocess.ResizeNormalize`, a picklable
callable that holds no reference to the network or to transformers.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch

from harness.errors import ConfigError, WeightsError
from harness.models.base import SegmentationModel
from harness.models.cnn import check_attention_setting, family_of
from harness.models.preprocess import OriginalDPTTransform, ResizeNormalize

RANDOM_SEED = 0

# image-processor type stem -> (module, PIL-backend class). The PIL classes are imported from
# their modules: the top-level names need torchvision for some of them in transformers 5.
PROCESSOR_CLASSES = {
    "DPT": ("transformers.models.dpt.image_processing_pil_dpt", "DPTImageProcessorPil"),
    "Segformer": ("transformers.models.segformer.image_processing_pil_segformer", "SegformerImageProcessorPil"),
    "MobileNetV2": ("transformers.models.mobilenet_v2.image_processing_pil_mobilenet_v2",
                    "MobileNetV2ImageProcessorPil"),
    "Beit": ("transformers.models.beit.image_processing_pil_beit", "BeitImageProcessorPil"),
}
# options of the processors that ResizeNormalize does not reproduce, with their neutral values
UNSUPPORTED = {"do_pad": False, "size_divisor": None}
# DPTImageProcessor's resize options, reproduced by ResizeNormalize (harness.models.preprocess.keep_aspect_size)
ASPECT_OPTIONS = ("keep_aspect_ratio", "ensure_multiple_of")
# A segbench processor type (not a transformers class): the original DPT repository's inference
# transform, harness.models.preprocess.OriginalDPTTransform.
ORIGINAL_DPT_TRANSFORM = "DPTOriginalTransform"
PREPROCESSING = ("processor", "dpt-original")
ORIGINAL_DPT_SIZE = 480  # net_w = net_h = 480 in isl-org/DPT run_segmentation.py


def _stem(d: dict) -> str | None:
    kind = d.get("image_processor_type") or d.get("feature_extractor_type")
    if not kind:
        return None
    for suffix in ("Pil", "Fast", "ImageProcessor", "FeatureExtractor"):
        kind = kind.removesuffix(suffix)
    return kind


def processor_class(d: dict):
    """The transformers PIL image-processor class named by a processor config dict, or None if unknown."""
    entry = PROCESSOR_CLASSES.get(_stem(d) or "")
    if entry is None:
        return None
    try:
        return getattr(importlib.import_module(entry[0]), entry[1])
    except (ImportError, AttributeError):
        return None


def _plain(size) -> dict | None:
    if size is None:
        return None
    if isinstance(size, int):
        return {"height": size, "width": size}
    items = size.items() if isinstance(size, dict) else vars(size).items()
    return {k: int(v) for k, v in items if v is not None}


def resolved_processor_options(d: dict, source: str) -> dict:
    """The processor's effective options (the class's defaults filled in) from a processor config dict."""
    cls = processor_class(d)
    if cls is None:
        opts = dict(d)
        missing = [k for k in ("size", "image_mean", "image_std", "resample") if k not in opts]
        if missing:
            raise ConfigError(f"{source}: image processor type {d.get('image_processor_type')!r} is not known to "
                              f"segbench ({', '.join(PROCESSOR_CLASSES)}), so its defaults are unknown; the file "
                              f"must then give {', '.join(missing)} explicitly")
    else:
        known = {k: v for k, v in d.items() if k not in ("image_processor_type", "feature_extractor_type",
                                                          "processor_class", "auto_map")}
        try:
            proc = cls(**known)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: {cls.__name__} refuses this configuration: {e}") from e
        opts = {k: getattr(proc, k, None) for k in ("size", "image_mean", "image_std", "resample", "do_resize",
                                                    "do_rescale", "rescale_factor", "do_normalize",
                                                    "do_center_crop", "crop_size", *UNSUPPORTED, *ASPECT_OPTIONS)}
    for key, neutral in UNSUPPORTED.items():
        value = opts.get(key)
        if value is not None and value != neutral and not (key == "size_divisor" and not opts.get("do_pad")):
            raise ConfigError(f"{source}: image processor option {key}={value!r} is not supported (segbench "
                              f"reproduces resize (with keep_aspect_ratio and ensure_multiple_of), center crop, "
                              f"rescale and normalise; expected {neutral!r})")
    size = _plain(opts.get("size"))
    if not size or not ({"height", "width"} <= set(size) or set(size) == {"shortest_edge"}):
        raise ConfigError(f"{source}: image processor size {opts.get('size')!r} is not supported "
                          "(expected {height, width} or {shortest_edge})")
    out = {"size": size, "image_mean": [float(x) for x in opts["image_mean"]],
           "image_std": [float(x) for x in opts["image_std"]], "resample": int(opts["resample"])}
    for key in ("do_resize", "do_rescale", "rescale_factor", "do_normalize", "do_center_crop", *ASPECT_OPTIONS):
        if opts.get(key) is not None:
            out[key] = opts[key]
    if (out.get("keep_aspect_ratio") or (out.get("ensure_multiple_of") or 1) > 1) and "height" not in size:
        raise ConfigError(f"{source}: keep_aspect_ratio / ensure_multiple_of need size {{height, width}}, "
                          f"got {size!r}")
    if opts.get("crop_size") is not None:
        out["crop_size"] = _plain(opts["crop_size"])
    return out


def preprocessor_from_dict(d: dict, source: str) -> ResizeNormalize | OriginalDPTTransform:
    """The model's preprocessing from its processor config dict (the content of preprocessor_config.json).

    ``image_processor_type: DPTOriginalTransform`` (keys ``size``, ``ensure_multiple_of``,
    ``image_mean``, ``image_std``) selects the original DPT repository's inference transform.
    """
    if d.get("image_processor_type") == ORIGINAL_DPT_TRANSFORM:
        return OriginalDPTTransform.from_dict(d)
    return ResizeNormalize.from_processor_dict(resolved_processor_options(d, source))


def original_dpt_transform(processor) -> OriginalDPTTransform:
    """The original DPT inference transform (isl-org/DPT ``run_segmentation.py``: 480, multiple of 32,
    bicubic, aspect kept) with the mean and std of the model's own ``processor``."""
    return OriginalDPTTransform(size=ORIGINAL_DPT_SIZE, ensure_multiple_of=32, image_mean=processor.image_mean,
                                image_std=processor.image_std)


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; WeightsError naming the file when it is unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: cannot read a JSON object ({e})") from e
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def config_from_dict(d: dict, source: str = "config"):
    """A transformers config from a config.json dict (its ``model_type`` picks the class)."""
    from transformers import CONFIG_MAPPING

    model_type = d.get("model_type")
    if model_type not in CONFIG_MAPPING:
        hint = (" (its config names custom code in auto_map: segbench never runs code shipped with a model "
                "unless the suite sets `trust_remote_code: true` for it)" if d.get("auto_map") else "")
        raise ConfigError(f"{source}: model_type {model_type!r} is not known to this transformers version{hint}")
    return CONFIG_MAPPING[model_type].from_dict(d)


def module_class(config):
    """The class that builds ``config`` for semantic segmentation."""
    if getattr(config, "model_type", "") == "dpt":
        from harness.models.dpt import dpt_module_class

        return dpt_module_class(config)
    from transformers import AutoModelForSemanticSegmentation

    return AutoModelForSemanticSegmentation


def build_random(config, attn_implementation: str | None = None, seed: int = RANDOM_SEED) -> torch.nn.Module:
    """The architecture of ``config`` with its own initialisation, seeded (same seed, same weights)."""
    torch.manual_seed(seed)
    cls = module_class(config)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        if hasattr(cls, "from_config"):
            return cls.from_config(config, **kwargs)
        if attn_implementation:
            config._attn_implementation = attn_implementation
        return cls(config)
    except ValueError as e:
        raise ConfigError(f"cannot build {config.model_type!r} with attn_implementation="
                          f"{attn_implementation!r}: {e}") from e


def load_pretrained_module(target: str, config=None, attn_implementation: str | None = None,
                           trust_remote_code: bool = False) -> torch.nn.Module:
    """``from_pretrained`` on a local directory or hub id (cache first, fast WeightsError when absent)."""
    from harness.models.hub import load_pretrained

    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if config is None and Path(target).is_dir():
        config = config_from_dict(read_json(Path(target) / "config.json"), f"{target}/config.json")
    cls = module_class(config) if config is not None else None
    if cls is None:
        from transformers import AutoModelForSemanticSegmentation

        cls = AutoModelForSemanticSegmentation
    try:
        return load_pretrained(cls, target, **kwargs)
    except ValueError as e:
        raise ConfigError(f"{target}: {e}") from e


class HFSegmentationModel(SegmentationModel):
    """A transformers (or transformers-composed) model whose forward returns ``.logits`` (N, C, h, w)."""

    def __init__(self, module: torch.nn.Module, processor: ResizeNormalize, name: str, weights: dict,
                 label_set: str | None, family: str | None = None, device: str = "cpu", precision: str = "fp32",
                 amp: str = "autocast", upsample: str = "bilinear", channels_last: bool = False,
                 compile: bool = False):
        super().__init__(device=device, precision=precision, amp=amp, upsample=upsample)
        config = module.config
        self.name = name
        self.family = family or family_of(config)
        self.weights = weights
        self.label_set = label_set
        self.num_labels = int(config.num_labels)
        self.id2label = {int(k): v for k, v in (config.id2label or {}).items()}
        self.preprocessor = processor
        self.input_size = processor.output_size
        self.image_mean = tuple(float(x) for x in processor.image_mean)
        self.image_std = tuple(float(x) for x in processor.image_std)
        self.place_module(module, channels_last=channels_last, compile=compile)

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._call(pixel_values=self.channels_last_input(pixel_values)).logits


def load_hf_model(name_or_path: str, spec=None, weights: str | None = None, attn_implementation: str | None = None,
                  trust_remote_code: bool = False, preprocessing: str = "processor",
                  **adapter_kwargs) -> HFSegmentationModel:
    """Build the adapter of a registry spec, a local save_pretrained directory or a hub id.

    weights: None (pretrained: the spec's hub id, the directory itself or the hub id),
    ``"random"`` (the architecture from the spec's or directory's config.json, seeded) or a
    path (a save_pretrained directory, or an original DPT checkpoint file for DPT specs).
    preprocessing: ``"processor"`` (the model's own image processor) or, for ViT DPT models,
    ``"dpt-original"`` (:class:`harness.models.preprocess.OriginalDPTTransform`, the original
    repository's inference transform).
    ``adapter_kwargs`` go to :class:`HFSegmentationModel` (device, precision, amp, upsample,
    channels_last, compile).
    """
    if preprocessing not in PREPROCESSING:
        raise ConfigError(f"{name_or_path}: preprocessing {preprocessing!r} is not one of {', '.join(PREPROCESSING)}")
    local = Path(name_or_path)
    is_dir = spec is None and local.is_dir()
    spec_config = config_from_dict(spec.config_dict(), str(spec.config_path)) if spec else None
    build = _random_module if weights == "random" else _pretrained_module
    module, provenance, processor = build(name_or_path, spec, spec_config, weights, local if is_dir else None,
                                          attn_implementation, trust_remote_code)
    if trust_remote_code:
        provenance["trust_remote_code"] = True
    processor = _chosen_preprocessing(module.config, processor, preprocessing, name_or_path)
    return HFSegmentationModel(module, processor, name=name_or_path, weights=provenance,
                               label_set=spec.label_set if spec else None, family=spec.family if spec else None,
                               **adapter_kwargs)


def _random_module(name_or_path: str, spec, spec_config, weights, local: Path | None, attn_implementation,
                   trust_remote_code: bool):
    """(module, provenance, processor) of the architecture with seeded random weights, from the spec's
    config, the local directory's config.json or the hub id's config."""
    from harness.models import hub

    if spec_config is not None:
        config = spec_config
    elif local is not None:
        config = config_from_dict(read_json(local / "config.json"), str(local / "config.json")) \
            if (local / "config.json").is_file() else _no_config(local)
    else:
        from transformers import AutoConfig

        config = hub.load_pretrained(AutoConfig, name_or_path, trust_remote_code=trust_remote_code)
    check_attention_setting(name_or_path, spec.family if spec else family_of(config), attn_implementation)
    return (build_random(config, attn_implementation), {"source": "random", "seed": RANDOM_SEED},
            _processor(local, spec, None))


def _pretrained_module(name_or_path: str, spec, spec_config, weights, local: Path | None, attn_implementation,
                       trust_remote_code: bool):
    """(module, provenance, processor) with trained weights: a ``weights`` path (checkpoint file or
    save_pretrained directory), the spec's hub id, the local directory itself, or the hub id."""
    from harness.models import hub

    family = spec.family if spec else None
    if spec is not None:
        check_attention_setting(name_or_path, family, attn_implementation)
    if weights is not None:
        wpath = Path(weights)
        if wpath.is_file():
            module = _load_checkpoint_file(name_or_path, spec, spec_config, wpath, attn_implementation)
            processor = _processor(None, spec, None)
        elif wpath.is_dir():
            module = _load_dir(wpath, spec_config, family, name_or_path, attn_implementation, trust_remote_code)
            processor = _processor(wpath, spec, None)
        else:
            raise WeightsError(f"weights {weights!r} for {name_or_path!r}: no such file or directory")
        provenance = hub.local_provenance(wpath)
        if getattr(module, "original_numerics", None):
            provenance.update(format="original-dpt", numerics=module.original_numerics)
        return module, provenance, processor
    if spec is not None:
        if spec.hub_id is None:
            raise WeightsError(f"{spec.name!r} has no published checkpoint in transformers format; give "
                               f"`weights: /path/to/checkpoint` (an original DPT .pt file or a save_pretrained "
                               f"directory) or `weights: random`")
        module = load_pretrained_module(spec.hub_id, spec_config, attn_implementation, trust_remote_code)
        return (module, {"source": "hub", "id": spec.hub_id, "revision": hub.cached_revision(spec.hub_id)},
                _processor(None, spec, spec.hub_id))
    if local is not None:
        module = _load_dir(local, None, None, name_or_path, attn_implementation, trust_remote_code)
        return module, hub.local_provenance(local), _processor(local, None, None)
    module = load_pretrained_module(name_or_path, None, attn_implementation, trust_remote_code)
    check_attention_setting(name_or_path, family_of(module.config), attn_implementation)
    return (module, {"source": "hub", "id": name_or_path, "revision": hub.cached_revision(name_or_path)},
            _processor(None, None, name_or_path))


def _chosen_preprocessing(config, processor, preprocessing: str, source: str):
    """The model's processor, or the original DPT transform in its place; DPT sizes checked."""
    if getattr(config, "model_type", "") != "dpt":
        if preprocessing != "processor":
            raise ConfigError(f"{source}: preprocessing {preprocessing!r} applies to DPT models only")
        return processor
    from harness.models.dpt import check_input_size, is_dpt_swin

    if preprocessing == "dpt-original":
        if is_dpt_swin(config):
            raise ConfigError(f"{source}: preprocessing 'dpt-original' applies to the ViT DPT models "
                              "(DPT-Large, DPT-Hybrid), not to DPT on a Swin backbone")
        processor = original_dpt_transform(processor)
    check_input_size(config, processor.output_size, source)
    return processor


def _no_config(path: Path):
    raise WeightsError(f"{path}: no config.json to build the architecture from (expected a save_pretrained "
                       f"directory holding config.json and preprocessor_config.json)")


def _load_dir(path: Path, spec_config, family: str | None, name: str, attn_implementation: str | None,
              trust_remote_code: bool) -> torch.nn.Module:
    if not (path / "config.json").is_file():
        _no_config(path)
    config = config_from_dict(read_json(path / "config.json"), str(path / "config.json"))
    check_attention_setting(name, family or family_of(config), attn_implementation)
    if spec_config is not None and config.model_type != spec_config.model_type:
        raise WeightsError(f"{path}/config.json: model_type {config.model_type!r} does not match the registry "
                           f"architecture of {name!r} ({spec_config.model_type!r})")
    return load_pretrained_module(str(path), config, attn_implementation, trust_remote_code)


def _load_checkpoint_file(name: str, spec, spec_config, path: Path, attn_implementation: str | None):
    if spec is None or spec.family != "dpt" or spec.builder != "auto":
        raise WeightsError(f"{path}: checkpoint files are read for the DPT registry models (dpt-large, dpt-hybrid) "
                           f"in the original repository's format; for {name!r} give a save_pretrained directory")
    from harness.models.dpt_original import load_original_checkpoint

    if attn_implementation:
        spec_config._attn_implementation = attn_implementation
    return load_original_checkpoint(path, spec_config)


def _processor(directory: Path | None, spec, hub_id: str | None) -> ResizeNormalize:
    """The model's preprocessing: the directory's or the hub snapshot's preprocessor_config.json, else the spec's."""
    if directory is not None:
        pc = Path(directory) / "preprocessor_config.json"
        if pc.is_file():
            return preprocessor_from_dict(read_json(pc), str(pc))
        if spec is None:
            raise WeightsError(f"{directory}: no preprocessor_config.json, so the model's own preprocessing is "
                               f"unknown (save the image processor with save_pretrained next to the model)")
    if hub_id is not None:
        from harness.models import hub

        cached = hub.cached_file(hub_id, "preprocessor_config.json")
        if cached is None and spec is None:
            cached = hub.hub_file(hub_id, "preprocessor_config.json")
        if cached is not None:
            return preprocessor_from_dict(read_json(cached), f"{hub_id}/preprocessor_config.json")
    return preprocessor_from_dict(spec.processor_dict(), str(spec.processor_path))
