"""The depth model registry: names users write in suites for task ``depth``, and what each stands for.

Each :class:`DepthSpec` names its published checkpoint (a hub id, or the file name of an
original release), what its output means (``depth_kind``, ``align_space``, ``max_depth``) and,
for transformers architectures, the offline config files ``configs/depth/<name>.json`` and
``configs/depth/<name>.preprocessor.json`` (written by ``scripts/make_depth_configs.py`` from
the published checkpoints' conversion settings) so that ``weights="random"`` builds the same
architecture without the hub.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "depth"
BUILDERS = ("hf", "midas-v21", "litert")


@dataclass(frozen=True)
class DepthSpec:
    """A registered depth model.

    builder: ``"hf"`` (transformers AutoModelForDepthEstimation; original DPT ``.pt`` files load
    into it through :mod:`harness.models.dpt_depth_original`), ``"dpt-finetuned"`` (the DPT paper's
    metric fine-tunes, :mod:`harness.models.dpt_finetuned`), ``"midas-v21"`` (the MiDaS v2.1
    CNNs of :mod:`harness.models.midas_v21`) or ``"litert"`` (:mod:`harness.models.depth_litert`).
    arch: the entry whose config (architecture) this one shares, when not its own.
    input_size: nominal (height, width) in pixels; checkpoint: the file name of the original
    release (for ``weights: /path/to/file``); published_params_m: the parameter count in
    millions its authors give.
    """

    name: str
    family: str  # "dpt" | "cnn" | "transformer"
    hub_id: str | None
    input_size: tuple[int, int]
    depth_kind: str  # "metric" | "relative" | "disparity"
    description: str
    builder: str = "hf"
    max_depth: float | None = None
    checkpoint: str | None = None
    published_params_m: float | None = None
    arch: str | None = None

    @property
    def align_space(self) -> str:
        """``"none"`` for metric models, ``"disparity"`` for inverse-depth ones, else ``"depth"``."""
        return {"metric": "none", "disparity": "disparity"}.get(self.depth_kind, "depth")

    @property
    def config_path(self) -> Path:
        return CONFIG_DIR / f"{self.arch or self.name}.json"

    @property
    def processor_path(self) -> Path:
        return CONFIG_DIR / f"{self.name}.preprocessor.json"

    def config_dict(self) -> dict:
        return json.loads(_read(str(self.config_path)))

    def processor_dict(self) -> dict:
        return json.loads(_read(str(self.processor_path)))


@cache
def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def _da(size: str, params: float) -> list[DepthSpec]:
    cap = size.capitalize()
    rows = [DepthSpec(f"depth-anything-v2-{size}", "dpt", f"depth-anything/Depth-Anything-V2-{cap}-hf", (518, 518),
                      "disparity", f"Depth Anything V2 {cap} (DINOv2 + DPT head), relative inverse depth",
                      published_params_m=params)]
    for scene, max_depth in (("indoor", 20.0), ("outdoor", 80.0)):
        rows.append(DepthSpec(f"depth-anything-v2-metric-{scene}-{size}", "dpt",
                              f"depth-anything/Depth-Anything-V2-Metric-{scene.capitalize()}-{cap}-hf", (518, 518),
                              "metric", f"Depth Anything V2 {cap} fine-tuned for metric depth "
                              f"({'Hypersim' if scene == 'indoor' else 'Virtual KITTI 2'}, 0-{max_depth:g} m)",
                              max_depth=max_depth, published_params_m=params))
    return rows


_SPECS = [
    DepthSpec("dpt-large-midas", "dpt", "Intel/dpt-large", (384, 384), "disparity",
              "DPT-Large (ViT-L/16) trained on MIX 6 (MiDaS v3.0), relative inverse depth",
              checkpoint="dpt_large-midas-2f21e586.pt", published_params_m=344),
    DepthSpec("dpt-hybrid-midas", "dpt", "Intel/dpt-hybrid-midas", (384, 384), "disparity",
              "DPT-Hybrid (ViT-B/16 on a ResNet-50 stem) trained on MIX 6 (MiDaS v3.0), relative inverse depth",
              checkpoint="dpt_hybrid-midas-501f0c75.pt", published_params_m=123),
    *[DepthSpec(f"dpt-hybrid-{data}", "dpt", None, size, "metric",
                f"DPT-Hybrid fine-tuned on {label} (the DPT paper's release), metric depth, original inverted output",
                builder="dpt-finetuned", max_depth=top, checkpoint=f"dpt_hybrid_{data}-{digest}.pt",
                published_params_m=123, arch="dpt-hybrid-midas")
      for data, size, label, top, digest in (("nyu", (480, 640), "NYU-Depth-v2", 10.0, "2ce69ec7"),
                                             ("kitti", (352, 1216), "KITTI (Eigen split)", 80.0, "cb926ef4"))],
    *[DepthSpec(f"dpt-{backbone}-{size}", "dpt", f"Intel/dpt-{backbone}-{size}", (int(size), int(size)), "disparity",
                f"MiDaS v3.1 DPT with a {label} backbone at {size}", published_params_m=params)
      for backbone, size, label, params in (
          ("beit-large", "512", "BEiT-L/16", 345), ("beit-large", "384", "BEiT-L/16", 344),
          ("beit-base", "384", "BEiT-B/16", 112), ("swinv2-tiny", "256", "Swin V2 Tiny", 42),
          ("swinv2-base", "384", "Swin V2 Base", 102), ("swinv2-large", "384", "Swin V2 Large", 213))],
    DepthSpec("midas-v21", "cnn", None, (384, 384), "disparity",
              "MiDaS v2.1 (ResNeXt-101 32x8d WSL encoder, RefineNet decoder), the CNN the DPT paper compares to",
              builder="midas-v21", checkpoint="midas_v21-f6b98070.pt", published_params_m=105),
    DepthSpec("midas-v21-small", "cnn", None, (256, 256), "disparity",
              "MiDaS v2.1 small (EfficientNet-Lite3 encoder)", builder="midas-v21",
              checkpoint="midas_v21_small-70d6b9c8.pt", published_params_m=21),
    *_da("small", 24.8), *_da("base", 97.5), *_da("large", 335.3),
    DepthSpec("zoedepth-nyu", "dpt", "Intel/zoedepth-nyu", (384, 512), "metric",
              "ZoeDepth-N (BEiT-L DPT + metric bins head) fine-tuned on NYU-Depth-v2", max_depth=10.0),
    DepthSpec("zoedepth-kitti", "dpt", "Intel/zoedepth-kitti", (384, 512), "metric",
              "ZoeDepth-K fine-tuned on KITTI", max_depth=80.0),
    DepthSpec("zoedepth-nyu-kitti", "dpt", "Intel/zoedepth-nyu-kitti", (384, 512), "metric",
              "ZoeDepth-NK: one head per domain (NYU 10 m, KITTI 80 m), routed by a classifier", max_depth=80.0),
    DepthSpec("glpn-nyu", "transformer", "vinvino02/glpn-nyu", (480, 640), "metric",
              "GLPN (hierarchical transformer encoder) fine-tuned on NYU-Depth-v2", max_depth=10.0),
    DepthSpec("glpn-kitti", "transformer", "vinvino02/glpn-kitti", (352, 1216), "metric",
              "GLPN fine-tuned on KITTI", max_depth=80.0),
    DepthSpec("depth-pro", "transformer", "apple/DepthPro-hf", (1536, 1536), "metric",
              "Depth Pro (multi-scale ViT encoders, field-of-view head), metric depth"),
    DepthSpec("pydnet-plusplus-litert", "cnn", None, (448, 640), "relative",
              "PyDNet++ (mobilePydnet, trained on Matterport), float32 LiteRT; depth-like at an arbitrary scale",
              builder="litert", checkpoint="pydnet_plusplus_depth.tflite"),
]

DEPTH_MODELS: dict[str, DepthSpec] = {s.name: s for s in _SPECS}
# other names accepted (name -> registry name)
DEPTH_ALIASES: dict[str, str] = {"dpt-large": "dpt-large-midas", "dpt-hybrid": "dpt-hybrid-midas",
                                 "midas-v21-large": "midas-v21", "pydnet": "pydnet-plusplus-litert",
                                 "zoedepth": "zoedepth-nyu-kitti"}


def resolve_depth(name: str) -> DepthSpec | None:
    """The spec registered under ``name`` or one of its aliases, else None."""
    return DEPTH_MODELS.get(DEPTH_ALIASES.get(name, name))


# file names the MiDaS v3.1 repository gives the same releases (weights/<name>)
CHECKPOINT_ALIASES = {"midas_v21_384.pt": "midas-v21", "midas_v21_small_256.pt": "midas-v21-small",
                      "dpt_large_384.pt": "dpt-large-midas", "dpt_hybrid_384.pt": "dpt-hybrid-midas"}


def spec_for_checkpoint(path: str | Path) -> DepthSpec | None:
    """The registry entry whose original release file is ``path``'s name (e.g. ``midas_v21-f6b98070.pt``).

    Matches the exact file name first, then the name without its hash suffix
    (``dpt_hybrid-midas-<hash>.pt``), so renamed hashes still find their architecture.
    """
    name = Path(path).name
    if name in CHECKPOINT_ALIASES:
        return DEPTH_MODELS[CHECKPOINT_ALIASES[name]]
    for spec in DEPTH_MODELS.values():
        if spec.checkpoint == name:
            return spec
    stem = name.rsplit(".", 1)[0]
    for spec in DEPTH_MODELS.values():
        if spec.checkpoint and stem.rsplit("-", 1)[0] == spec.checkpoint.rsplit(".", 1)[0].rsplit("-", 1)[0]:
            return spec
    return None
