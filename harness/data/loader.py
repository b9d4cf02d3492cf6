"""Batches for evaluation: decoding (and the model's preprocessing) in DataLoader workers.

A broken sample either stops the run with a DataError naming the file
(``on_bad_sample="error"``) or is skipped and recorded in ``Batch.skipped``
(``on_bad_sample="skip"``), never dropped silently. Order is the dataset's order.

A ``corruption`` (``{name, severity, seed}``, see :mod:`harness.robustness.corruptions`) is applied
to each input image in the worker, after decoding and before the model's preprocessing; labels are
untouched. Each corrupted image is seeded by its sample id, so every model, process and run sees
the same bytes; ``Batch.input_digests`` holds their sha256 so a run can show it.

Label and depth maps cross from a worker as tensors in shared memory (pickling them through the
worker's pipe cost the main thread 10-17 ms per batch of four ADE20K maps) and reach the caller as
numpy arrays again, as the dataset returned them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from harness.data.base import SegmentationDataset
from harness.errors import ConfigError, DataError
from harness.pipeline import PipelinePlan, WorkerInit, worker_context

POLICIES = ("error", "skip")


@dataclass
class Batch:
    """One batch. ``pixel_values`` when a preprocess function was given, else ``images``."""

    pixel_values: torch.Tensor | None
    images: list[Image.Image] | None
    labels: list[np.ndarray]
    ids: list[str]
    sizes: list[tuple[int, int]]
    skipped: list[dict] = field(default_factory=list)
    # depth datasets (harness.data.depth_base.DepthSample): float32 metres and optional intrinsics;
    # ``labels`` then holds each sample's segmentation map or None
    depths: list[np.ndarray] | None = None
    intrinsics: list[dict | None] | None = None
    input_digests: list[str] | None = None  # sha256 of each corrupted input image (RGB bytes)
    cpu_s: float = 0.0  # CPU seconds spent decoding (and preprocessing) this batch's samples

    def pin_memory(self) -> Batch:
        if self.pixel_values is not None:
            self.pixel_values = self.pixel_values.pin_memory()
        return self


class CorruptedView:
    """``dataset`` whose samples' images are corrupted at ``corruption`` = ``{name, severity, seed}``
    (labels untouched); every other attribute is the dataset's."""

    def __init__(self, dataset, corruption: dict):
        from harness.robustness.corruptions import CorruptionPoint

        self.dataset, self.corruption = dataset, dict(corruption)
        self.point = CorruptionPoint(corruption["name"], int(corruption["severity"]))

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, i: int):
        from harness.robustness.corruptions import corrupt_sample

        return corrupt_sample(self.dataset.load(i), self.point, int(self.corruption.get("seed", 0)))

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def corrupted_view(dataset, corruption: dict | None):
    """``dataset`` itself when ``corruption`` is None, else its :class:`CorruptedView`; the
    imagecorruptions package is checked here, so a missing install fails before any worker starts."""
    if corruption is None:
        return dataset
    from harness.robustness.corruptions import check_point, ensure_installed

    check_point(corruption["name"], corruption["severity"])
    ensure_installed()
    return CorruptedView(dataset, corruption)


def image_digest(image: Image.Image) -> str:
    """sha256 (hex) of an image's RGB pixel bytes and size."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()


class _Items(torch.utils.data.Dataset):
    """Wraps a dataset so workers return either a decoded (and preprocessed) sample or an error record."""

    def __init__(self, dataset: SegmentationDataset, preprocess, policy: str):
        self.dataset, self.preprocess, self.policy = dataset, preprocess, policy

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        c0 = time.process_time()
        try:
            s = self.dataset.load(i)
        except DataError as e:
            # Returned, not raised: a worker's exception would reach the caller re-wrapped, without
            # the file and sample it names; the main process raises it (policy "error") or records it.
            return {"skip": {"id": e.sample_id or self.dataset.sample_id(i), "path": e.path, "reason": str(e)}}
        px = self.preprocess([s.image]) if self.preprocess is not None else None
        digest = image_digest(s.image) if isinstance(self.dataset, CorruptedView) else None
        return {"sample": s, "pixel_values": px, "digest": digest, "cpu_s": time.process_time() - c0}


def _shared(a: np.ndarray | None) -> torch.Tensor | None:
    """A label or depth map as a tensor, so a worker hands it over in shared memory (not pickled)."""
    return None if a is None else torch.from_numpy(np.require(a, requirements=["C", "W"]))


def _arrays(maps: list | None) -> list | None:
    """The maps a batch carries, back as numpy arrays (views of the tensors :func:`_shared` made)."""
    return None if maps is None else [m.numpy() if isinstance(m, torch.Tensor) else m for m in maps]


def _collate(items: list[dict]) -> Batch:
    good = [it for it in items if "sample" in it]
    px = [it["pixel_values"] for it in good]
    return Batch(
        pixel_values=torch.cat(px) if good and px[0] is not None else None,
        images=[it["sample"].image for it in good] if good and px[0] is None else None,
        labels=[_shared(it["sample"].label) for it in good],
        ids=[it["sample"].id for it in good],
        sizes=[(it["sample"].image.height, it["sample"].image.width) for it in good],
        skipped=[it["skip"] for it in items if "skip" in it],
        depths=[_shared(it["sample"].depth) for it in good] if good and hasattr(good[0]["sample"], "depth") else None,
        intrinsics=[it["sample"].intrinsics for it in good] if good and hasattr(good[0]["sample"], "depth") else None,
        input_digests=[it["digest"] for it in good] if good and good[0]["digest"] is not None else None,
        cpu_s=sum(it["cpu_s"] for it in good),
    )


def make_loader(dataset: SegmentationDataset, batch_size: int = 1, num_workers: int = 0,
                preprocess: Callable[[list[Image.Image]], torch.Tensor] | None = None,
                on_bad_sample: str = "error", corruption: dict | None = None,
                plan: PipelinePlan | None = None) -> Iterator[Batch]:
    """Iterate over ``dataset`` in batches; see the module docstring for the bad-sample policy and
    ``corruption``. ``plan`` (:mod:`harness.pipeline`) says how the workers start, their priority and
    threads (default: DataLoader's own defaults).

    ``batch_size`` counts samples, skipped ones included (a batch may hold fewer images, or
    none). With ``num_workers > 0`` decoding and ``preprocess`` run in worker processes;
    ``pixel_values`` are pinned when CUDA is available. Problems a dataset found while listing
    that belong to no sample (``dataset.unpaired`` records) are raised at once under "error"
    and reported in the first batch under "skip".
    """
    if on_bad_sample not in POLICIES:
        raise ConfigError(f"on_bad_sample {on_bad_sample!r} is not one of {', '.join(POLICIES)}")
    dataset = corrupted_view(dataset, corruption)
    unpaired = list(getattr(dataset, "unpaired", []) or [])
    if unpaired and on_bad_sample == "error":
        first = unpaired[0]
        raise DataError(f"{first['path']}: {first['reason']}" + (f" (and {len(unpaired) - 1} more)" if len(unpaired) > 1 else "")
                        + "; set measure.on_bad_sample: skip to evaluate the rest", path=first["path"],
                        sample_id=first["id"])
    workers = {}
    if num_workers and plan is not None:
        workers = {"multiprocessing_context": worker_context(plan),
                   "worker_init_fn": WorkerInit(plan.worker_nice or 0, plan.worker_threads or 1)}
    loader = torch.utils.data.DataLoader(
        _Items(dataset, preprocess, on_bad_sample), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=_collate, pin_memory=torch.cuda.is_available() and preprocess is not None,
        persistent_workers=False, **workers)
    first = True
    for batch in loader:
        batch.labels, batch.depths = _arrays(batch.labels), _arrays(batch.depths)
        if on_bad_sample == "error" and batch.skipped:
            bad = batch.skipped[0]
            raise DataError(bad["reason"], path=bad["path"], sample_id=bad["id"])
        if first and unpaired:
            batch.skipped = unpaired + batch.skipped
        first = False
        yield batch
    if first and unpaired:  # an empty dataset still reports what it skipped
        yield Batch(None, None, [], [], [], skipped=unpaired)
