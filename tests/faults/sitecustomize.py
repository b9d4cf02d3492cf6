"""Fault injection for runner tests, loaded into cell processes through PYTHONPATH.

When SEGBENCH_TEST_FAULTS=1, cells whose model name starts with ``fault-`` misbehave on
purpose (crash, hang, exit, raise, run out of memory) and every cell gets a tiny in-process
model and dataset, so the runner's isolation is tested without any real architecture.
"""

import os

if os.environ.get("SEGBENCH_TEST_FAULTS") == "1":
    import signal
    import time

    import fault_names
    import numpy as np
    import torch
    from PIL import Image

    import harness.cell as _cell
    from harness.data.base import SegmentationDataset
    from harness.models.base import SegmentationModel

    class _Pre:
        def __call__(self, images):
            arr = [torch.from_numpy(np.asarray(im.resize((32, 32)), dtype=np.float32) / 255.0) for im in images]
            return torch.stack(arr).permute(0, 3, 1, 2).contiguous()

    class TinyModel(SegmentationModel):
        family = "cnn"
        num_labels = 3
        input_size = (32, 32)
        weights = {"source": "random"}

        def __init__(self, name, fail_after=None, **kw):
            super().__init__(**kw)
            torch.manual_seed(0)
            self.name = name
            self.module = torch.nn.Conv2d(3, 3, 3, padding=1).eval()
            self.preprocessor = _Pre()
            self.calls = 0
            self.fail_after = fail_after

        def _run(self, x):
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise RuntimeError("injected failure during timing")
            return self.module(x)

    class TinyData(SegmentationDataset):
        name = "tiny"
        num_classes = 3
        class_names = ["a", "b", "c"]

        def __len__(self):
            return 3

        def sample_id(self, i):
            return f"s{i}"

        def load(self, i):
            rng = np.random.default_rng(i)
            img = Image.fromarray(rng.integers(1, 255, (24, 40, 3), dtype=np.uint8))
            return _Sample(img, rng.integers(0, 3, (24, 40)).astype(np.int64), f"s{i}")

        def files(self):
            return [f"s{i}" for i in range(3)]

    from harness.data.base import Sample as _Sample

    def _load_model(name, weights=None, device="cpu", precision="fp32", amp="autocast", upsample="bilinear",
                    **_):
        if name == "fault-oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        if name == "fault-raise":
            raise RuntimeError("injected error while loading")
        fail_after = 4 if name == "fault-late" else None
        return TinyModel(name, fail_after=fail_after, device=device, precision=precision, amp=amp,
                         upsample=upsample)

    def _load_dataset(name, **_):
        return TinyData()

    _orig = _cell.run_cell

    def run_cell(cell, run_dir, load_model=None, load_dataset=None):
        if cell.model == "fault-crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if cell.model == "fault-hang":
            time.sleep(3600)
        if cell.model == "fault-exit":
            os._exit(3)
        if cell.model == "fault-slow":
            time.sleep(float(os.environ.get("SEGBENCH_TEST_SLOW_S", "2")))
        if cell.model == "fault-oom-big" and cell.batch_size > 2:
            return _orig(cell, run_dir, load_model=lambda *a, **k: _load_model("fault-oom"),
                         load_dataset=_load_dataset)
        return _orig(cell, run_dir, load_model=_load_model, load_dataset=_load_dataset)

    _cell.run_cell = run_cell
    fault_names.accept()
