"""transformers depth models (AutoModelForDepthEstimation): DPT (ViT, hybrid, BEiT, Swin V2),
Depth Anything (V1/V2, relative and metric), ZoeDepth, GLPN, Depth Pro -- the network plus its
own image processor, reproduced by :mod:`harness.models.depth_preprocess`.

Post-processing equals each model's own ``post_process_depth_estimation``:

- DPT, Depth Anything, GLPN: ``F.interpolate(bicubic, align_corners=False)`` to the image size;
- ZoeDepth: optional flip test-time augmentation (the network also runs on the mirrored
  input; the two predictions are averaged, as the processor does with ``outputs_flipped`` and
  the original ``infer(with_flip_aug=True)``), bicubic resize to the padded size, the reflect
  padding cropped off, then resized to the image size (an identity when it already is);
- Depth Pro: the canonical inverse depth times ``2 tan(fov / 2)`` (the processor's
  ``width / focal_length``), bilinear resize, then ``1 / clamp(x, 1e-4, 1e4)`` -> metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from harness.errors import ConfigError, UnsupportedError, WeightsError
from harness.models.cnn import check_attention_setting, family_of
from harness.models.depth_base import DepthModel, check_semantics, resize_map
from harness.models.depth_preprocess import DepthPreprocess, depth_preprocess_from_dict, zoe_pad
from harness.models.hf import RANDOM_SEED, config_from_dict, read_json

DPT_LIKE = frozenset({"dpt", "depth_anything", "zoedepth", "prompt_depth_anything"})
TRANSFORMER_LIKE = frozenset({"glpn", "depth_pro"})


def depth_family(config) -> str:
    """``"dpt"`` for DPT-decoder models (DPT, Depth Anything, ZoeDepth), ``"transformer"`` for GLPN and
    Depth Pro, else the segmentation family rule of :func:`harness.models.cnn.family_of`."""
    model_type = getattr(config, "model_type", "")
    if model_type in DPT_LIKE:
        return "dpt"
    if model_type in TRANSFORMER_LIKE:
        return "transformer"
    return family_of(config)


def depth_semantics(config, source: str) -> tuple[str, float | None]:
    """(depth_kind, max_depth in metres) of a transformers depth config.

    DPT: MiDaS-trained relative inverse depth; Depth Anything: ``depth_estimation_type``
    (``relative`` -> disparity, ``metric`` -> metres up to ``max_depth``); ZoeDepth: metres up to its
    largest bin range; GLPN: metres up to ``max_depth``; Depth Pro: metres with its field-of-view
    head, relative depth without it.
    """
    model_type = getattr(config, "model_type", "")
    if model_type == "dpt":
        return "disparity", None
    if model_type == "depth_anything":
        if getattr(config, "depth_estimation_type", "relative") == "metric":
            return "metric", float(config.max_depth)
        return "disparity", None
    if model_type == "zoedepth":
        return "metric", max(float(b["max_depth"]) for b in config.bin_configurations)
    if model_type == "glpn":
        return "metric", float(config.max_depth)
    if model_type == "depth_pro":
        return ("metric", None) if getattr(config, "use_fov_model", False) else ("relative", None)
    if model_type == "prompt_depth_anything":
        raise UnsupportedError(f"{source}: Prompt Depth Anything needs a LiDAR prompt beside the image, which "
                               "segbench's depth protocol does not provide")
    raise ConfigError(f"{source}: model_type {model_type!r}: segbench does not know whether it predicts metric depth, "
                      "relative depth or disparity; pass depth_kind (and max_depth for a metric head)")


class HFDepthModel(DepthModel):
    """A transformers depth model whose forward returns ``.predicted_depth`` (N, h, w)."""

    def __init__(self, module: torch.nn.Module, processor: DepthPreprocess, name: str, weights: dict,
                 family: str | None = None, depth_kind: str | None = None, max_depth: float | None = None,
                 device: str = "cpu", precision: str = "fp32", amp: str = "autocast", channels_last: bool = False,
                 compile: bool = False):
        super().__init__(device=device, precision=precision, amp=amp)
        config = module.config
        try:
            kind, default_max = depth_semantics(config, name)
        except UnsupportedError:
            raise
        except ConfigError:
            if depth_kind is None:
                raise
            kind, default_max = depth_kind, None  # an architecture segbench has no rule for, declared by the user
        self.name = name
        self.family = family or depth_family(config)
        self.weights = weights
        self.depth_kind = depth_kind or kind
        self.align_space = {"metric": "none", "disparity": "disparity"}.get(self.depth_kind, "depth")
        check_semantics(name, self.depth_kind, self.align_space)
        self.max_depth = max_depth if max_depth is not None else (default_max if self.depth_kind == "metric" else None)
        self.preprocessor = processor
        self.input_size = processor.input_size
        self.place_module(module, channels_last=channels_last, compile=compile)

    def _predict(self, pixel_values: torch.Tensor):
        return self._call(pixel_values=self.channels_last_input(pixel_values))

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._predict(pixel_values).predicted_depth


class ZoeDepthModel(HFDepthModel):
    """ZoeDepth: flip test-time augmentation (default on) and removal of the processor's reflect padding."""

    def __init__(self, *args, flip: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.flip = bool(flip)

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        depth = super()._run(pixel_values)
        if self.flip:
            flipped = super()._run(torch.flip(pixel_values, dims=[3]))
            depth = (depth + torch.flip(flipped, dims=[-1])) / 2
        return depth

    @torch.inference_mode()
    def postprocess(self, outputs: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Per image: bicubic to its padded size, padding cropped, bicubic to its size (float32)."""
        pad = self.preprocessor.do_pad
        maps = []
        for i, (h, w) in enumerate(sizes):
            ph, pw = (zoe_pad(h), zoe_pad(w)) if pad else (0, 0)
            d = resize_map(outputs[i], (h + 2 * ph, w + 2 * pw), "bicubic")
            d = d[ph:d.shape[0] - ph, pw:d.shape[1] - pw]
            maps.append(resize_map(d, (h, w), "bicubic"))
        return maps

    def protocol_extra(self) -> dict:
        return {"flip": self.flip, "remove_padding": self.preprocessor.do_pad}


class DepthProModel(HFDepthModel):
    """Depth Pro: depth scaled by its predicted field of view, resized, inverted to metres.

    ``field_of_view`` holds the last batch's predicted horizontal field of view (degrees, one per
    image) for reporting; :meth:`predict_details` returns it with each map and the focal length.
    """

    field_of_view: torch.Tensor | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resize_mode = "bicubic" if self.preprocessor.resample == 3 else "bilinear"

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self._predict(pixel_values)
        depth, fov = out.predicted_depth, out.field_of_view
        self.field_of_view = None if fov is None else fov.detach().float()
        if fov is not None:
            depth = depth * (2 * torch.tan(0.5 * torch.deg2rad(fov)))[:, None, None]
        return depth

    @torch.inference_mode()
    def postprocess(self, outputs: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Per image: resize (the processor's resample mode), then ``1 / clamp(x, 1e-4, 1e4)`` (metres)."""
        return [1.0 / torch.clamp(m, min=1e-4, max=1e4) for m in super().postprocess(outputs, sizes)]

    def predict_details(self, images) -> list[dict]:
        """Per image: ``{"depth": (H, W) float32 metres, "field_of_view": degrees, "focal_length": pixels}``."""
        rows = []
        for im in images:
            depth = self.predict([im])[0]
            fov = None if self.field_of_view is None else float(self.field_of_view[0])
            focal = None if fov is None else float(0.5 * im.width / torch.tan(torch.deg2rad(torch.tensor(fov)) / 2))
            rows.append({"depth": depth, "field_of_view": fov, "focal_length": focal})
        return rows


ADAPTERS = {"zoedepth": ZoeDepthModel, "depth_pro": DepthProModel}


def build_random_depth(config, attn_implementation: str | None = None, seed: int = RANDOM_SEED) -> torch.nn.Module:
    """The depth architecture of ``config`` with its own initialisation, seeded (same seed, same weights)."""
    from transformers import AutoModelForDepthEstimation

    torch.manual_seed(seed)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        return AutoModelForDepthEstimation.from_config(config, **kwargs)
    except ValueError as e:
        raise ConfigError(f"cannot build a depth model for {config.model_type!r}: {e}") from e


def load_pretrained_depth(target: str, attn_implementation: str | None = None,
                          trust_remote_code: bool = False) -> torch.nn.Module:
    """``AutoModelForDepthEstimation.from_pretrained`` on a directory or hub id (cache first, clear errors)."""
    from transformers import AutoModelForDepthEstimation

    from harness.models.hub import load_pretrained

    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        return load_pretrained(AutoModelForDepthEstimation, target, **kwargs)
    except ValueError as e:
        raise ConfigError(f"{target}: not a depth-estimation model transformers can load: {e}") from e


def depth_processor(directory: Path | None, spec, hub_id: str | None) -> DepthPreprocess:
    """The preprocessing: the directory's or the cached hub snapshot's preprocessor_config.json, else the spec's."""
    from harness.models import hub

    if directory is not None:
        pc = Path(directory) / "preprocessor_config.json"
        if pc.is_file():
            return depth_preprocess_from_dict(read_json(pc), str(pc))
        if spec is None:
            raise WeightsError(f"{directory}: no preprocessor_config.json, so the model's own preprocessing is "
                               "unknown (save the image processor with save_pretrained next to the model)")
    if hub_id is not None:
        cached = hub.cached_file(hub_id, "preprocessor_config.json")
        if cached is None and spec is None:
            cached = hub.hub_file(hub_id, "preprocessor_config.json")
        if cached is not None:
            return depth_preprocess_from_dict(read_json(cached), f"{hub_id}/preprocessor_config.json")
    return depth_preprocess_from_dict(spec.processor_dict(), str(spec.processor_path))


def check_depth_input(config, processor: DepthPreprocess, source: str) -> None:
    """ConfigError when a DPT config cannot run the inputs its processor makes.

    transformers' plain-ViT DPT reshapes tokens into a square grid and its hybrid embedding does
    not interpolate position embeddings, so both need fixed square inputs (``keep_aspect_ratio``
    off, size = ``config.image_size`` for the hybrid).
    """
    hybrid = bool(getattr(config, "is_hybrid", False))
    plain_vit = getattr(config, "backbone_config", None) is None
    if getattr(config, "model_type", "") != "dpt" or not (hybrid or plain_vit):
        return  # BEiT / Swin V2 backbones take any multiple of their patch size
    if processor.keep_aspect_ratio or processor.size.get("height") != processor.size.get("width"):
        raise ConfigError(f"{source}: transformers' ViT DPT runs square inputs only, but the preprocessing keeps "
                          f"the aspect ratio or is not square ({processor.describe()['size']}); set "
                          "keep_aspect_ratio false and a square size")
    from harness.models.dpt import check_input_size

    check_input_size(config, processor.input_size, source)


def _config_of(local: Path, spec, name: str, trust_remote_code: bool):
    """The config for ``weights="random"``: the spec's, the directory's config.json, or the hub id's."""
    if spec is not None:
        return config_from_dict(spec.config_dict(), str(spec.config_path))
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise WeightsError(f"{local}: no config.json to build the architecture from (expected a save_pretrained "
                               "directory holding config.json and preprocessor_config.json)")
        return config_from_dict(read_json(local / "config.json"), str(local / "config.json"))
    from transformers import AutoConfig

    from harness.models import hub

    return hub.load_pretrained(AutoConfig, name, trust_remote_code=trust_remote_code)


def _module_and_processor(name_or_path: str, spec, weights: str | None, attn_implementation: str | None,
                          trust_remote_code: bool) -> tuple[torch.nn.Module, dict, DepthPreprocess]:
    """(network, weights provenance, preprocessing) for the weights setting (see :func:`load_hf_depth_model`)."""
    from harness.models import hub

    local = Path(name_or_path)
    is_dir = spec is None and local.is_dir()
    if weights == "random":
        module = build_random_depth(_config_of(local, spec, name_or_path, trust_remote_code), attn_implementation)
        processor = depth_processor(local if is_dir else None, spec, None if (spec or is_dir) else name_or_path)
        return module, {"source": "random", "seed": RANDOM_SEED}, processor
    if weights is not None:
        wpath = Path(weights)
        if wpath.is_file():
            from harness.models.dpt_depth_original import (
                load_original_depth_checkpoint,
                original_depth_config,
            )

            module = load_original_depth_checkpoint(wpath, original_depth_config(spec, wpath, attn_implementation))
            return module, hub.local_provenance(wpath), depth_processor(None, spec, None)
        if wpath.is_dir():
            module = load_pretrained_depth(str(wpath), attn_implementation, trust_remote_code)
            return module, hub.local_provenance(wpath), depth_processor(wpath, spec, None)
        raise WeightsError(f"weights {weights!r} for {name_or_path!r}: no such file or directory")
    target = spec.hub_id if spec is not None else name_or_path
    if spec is not None and target is None:
        raise WeightsError(f"{spec.name!r} has no checkpoint in transformers format; give `weights: "
                           f"/path/to/{spec.checkpoint}` (its original release) or `weights: random`")
    module = load_pretrained_depth(target, attn_implementation, trust_remote_code)
    if is_dir:
        return module, hub.local_provenance(local), depth_processor(local, None, None)
    provenance = {"source": "hub", "id": target, "revision": hub.cached_revision(target)}
    return module, provenance, depth_processor(None, spec, target)


def load_hf_depth_model(name_or_path: str, spec=None, weights: str | None = None,
                        attn_implementation: str | None = None, trust_remote_code: bool = False,
                        flip: bool | None = None, depth_kind: str | None = None, max_depth: float | None = None,
                        **adapter) -> HFDepthModel:
    """Build the adapter of a depth registry spec, a save_pretrained directory or a hub id.

    weights: None (pretrained: the spec's hub id, the directory itself or the hub id), ``"random"``
    (the architecture from the spec's or directory's config, seeded), a save_pretrained directory,
    or an original DPT ``.pt`` file (for the DPT registry entries). ``flip`` applies to ZoeDepth;
    ``depth_kind``/``max_depth`` override what the config says the output is. ``adapter``: device,
    precision, amp, channels_last, compile.
    """
    module, provenance, processor = _module_and_processor(name_or_path, spec, weights, attn_implementation,
                                                          trust_remote_code)
    if trust_remote_code:
        provenance["trust_remote_code"] = True
    family = spec.family if spec is not None else depth_family(module.config)
    check_attention_setting(name_or_path, family, attn_implementation)
    check_depth_input(module.config, processor, name_or_path)
    cls = ADAPTERS.get(module.config.model_type, HFDepthModel)
    if flip is not None and cls is not ZoeDepthModel:
        raise ConfigError(f"model {name_or_path!r}: flip applies to ZoeDepth models only")
    extra = {"flip": True if flip is None else flip} if cls is ZoeDepthModel else {}
    kind = depth_kind or (spec.depth_kind if spec is not None else None)
    top = max_depth if max_depth is not None else (spec.max_depth if spec is not None else None)
    return cls(module, processor, name=name_or_path, weights=provenance, family=family, depth_kind=kind,
               max_depth=top, **extra, **adapter)
