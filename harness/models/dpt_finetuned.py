"""The DPT paper's metric-depth checkpoints: DPT-Hybrid fine-tuned on NYU-Depth-v2 and on KITTI.

``dpt_hybrid_nyu-2ce69ec7.pt`` and ``dpt_hybrid_kitti-cb926ef4.pt`` (isl-org/DPT's releases) hold a
``DPTDepthModel`` with the DPT-Hybrid architecture of ``dpt_hybrid-midas`` (same keys, loaded
through :mod:`harness.models.dpt_depth_original`), run as the original ``run_monodepth.py`` runs
them, which was read for this:

- input: the original ``Resize(net_w, net_h, keep_aspect_ratio=True, ensure_multiple_of=32,
  resize_method="minimal", INTER_CUBIC)`` + ``NormalizeImage(0.5, 0.5)`` (segbench's ``midas``
  preprocessing kind), 640x480 for NYU and 1216x352 for KITTI (after the dataset's 352x1216 kb
  crop): NYU's 640x480 images and the kb crop are not resized at all;
- network: the hybrid encoder at that size, its position embeddings resized bilinearly to the
  patch grid (as the original ``_resize_pos_embed``), tokens reassembled on the real (not
  square) grid: :class:`harness.models.dpt.DPTAnySizeForDepthEstimation`, the depth sibling of
  the segmentation DPT that runs at any size (transformers' hybrid refuses other sizes and
  reassembles tokens on a square grid);
- output: ``DPTDepthModel(invert=True)``: depth = 1 / max(scale * x + shift, 1e-8) in metres with
  (scale, shift) = (0.000305, 0.1378) for NYU and (0.00006016, 0.00579) for KITTI, resized to the
  image bicubically (``align_corners=False``), as ``run_monodepth.py`` does before writing
  ``depth * 1000`` (NYU) or ``* 256`` (KITTI) to its PNGs; segbench keeps metres.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.errors import WeightsError
from harness.models.depth_hf import HFDepthModel, build_random_depth, depth_processor
from harness.models.hf import RANDOM_SEED

# registry name -> (scale, shift) of the original DPTDepthModel(invert=True) in run_monodepth.py
INVERSE_DEPTH = {"dpt-hybrid-nyu": (0.000305, 0.1378), "dpt-hybrid-kitti": (0.00006016, 0.00579)}
MIN_INVERSE = 1e-8  # depth[depth < 1e-8] = 1e-8 before 1 / depth


class FineTunedDPTDepthModel(HFDepthModel):
    """A DPT fine-tuned for metric depth with the original inverted output (see the module docstring)."""

    def __init__(self, *args, scale: float, shift: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale, self.shift = float(scale), float(shift)

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        inverse = super()._run(pixel_values)
        return 1.0 / torch.clamp(self.scale * inverse + self.shift, min=MIN_INVERSE)

    def protocol_extra(self) -> dict:
        return {"output": f"1 / max({self.scale:g} * x + {self.shift:g}, {MIN_INVERSE:g}) (DPTDepthModel invert)"}


def load_finetuned_dpt(spec, weights: str | None = None, attn_implementation: str | None = None,
                       **adapter) -> FineTunedDPTDepthModel:
    """Registry entry ``spec`` (``dpt-hybrid-nyu`` / ``dpt-hybrid-kitti``) with the weights of its original
    release file: ``weights``, or when None ``spec.checkpoint`` found in the checkpoint folders
    (:func:`harness.models.midas_v21.checkpoint_dirs`); ``"random"``: seeded weights (speed and memory only)."""
    from harness.models import hub
    from harness.models.dpt import depth_at_any_size
    from harness.models.dpt_depth_original import load_original_depth_checkpoint, original_depth_config
    from harness.models.midas_v21 import checkpoint_dirs, find_checkpoint

    if weights == "random":
        module = build_random_depth(original_depth_config(spec, Path(spec.checkpoint), attn_implementation))
        provenance = {"source": "random", "seed": RANDOM_SEED}
    else:
        path = Path(weights).expanduser() if weights is not None else find_checkpoint(spec.checkpoint)
        if path is None or not path.is_file():
            where = f"{path} does not exist" if path is not None else \
                f"{spec.checkpoint} is not in {', '.join(str(d) for d in checkpoint_dirs())}"
            raise WeightsError(f"{spec.name}: {where}; it has no checkpoint in transformers format: download its "
                               f"original release (isl-org/DPT) and set `weights: /path/to/{spec.checkpoint}` (or "
                               "SEGBENCH_WEIGHTS), or `weights: random`")
        module = load_original_depth_checkpoint(path, original_depth_config(spec, path, attn_implementation))
        provenance = hub.local_provenance(path)
    scale, shift = INVERSE_DEPTH[spec.name]
    return FineTunedDPTDepthModel(depth_at_any_size(module), depth_processor(None, spec, None), name=spec.name,
                                  weights=provenance, family=spec.family, depth_kind="metric",
                                  max_depth=spec.max_depth, scale=scale, shift=shift, **adapter)
