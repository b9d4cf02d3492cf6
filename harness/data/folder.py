"""A generic folder dataset for users' own data: images and masks paired by file stem.

Layout (folder names configurable)::

    root/
      images/NAME.{jpg,png,...}
      masks/NAME{mask_suffix}.png    single-channel, value i = class i
      classes.txt | codes.txt        one class name per line, line i = value i

For example CamVid as packaged by fastai: ``images_dir: images, masks_dir: labels,
mask_suffix: _P, classes_file: codes.txt``.
"""

from __future__ import annotations

from pathlib import Path

from harness.data.files import (
    IMAGE_SUFFIXES,
    PairedFilesDataset,
    generated_palette,
    pair_by_stem,
    require_dir,
    select,
)
from harness.errors import DataError

LAYOUT = """  root/
    images/NAME.jpg|png
    masks/NAME{mask_suffix}.png
    classes.txt (or codes.txt): one class name per line"""


class FolderDataset(PairedFilesDataset):
    name = "folder"
    label_set = None

    def __init__(self, root: str | Path, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None, images_dir: str = "images", masks_dir: str = "masks",
                 mask_suffix: str = "", classes_file: str | None = None, ignore_index: int = 255,
                 num_classes: int | None = None):
        root = require_dir(Path(root), "dataset folder", LAYOUT)
        img_dir = require_dir(root / images_dir, "images folder", LAYOUT)
        mask_dir = require_dir(root / masks_dir, "masks folder", LAYOUT)
        names = self._class_names(root, classes_file, num_classes)
        self.class_names = names
        self.num_classes = len(names)
        self.ignore_index = int(ignore_index)
        self.palette = generated_palette(self.num_classes)
        images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        masks = sorted(p for p in mask_dir.iterdir() if p.suffix.lower() == ".png" and p.stem.endswith(mask_suffix))
        cut = len(mask_suffix)
        pairs, unpaired = pair_by_stem(images, masks, lambda p: p.stem, lambda p: p.stem[: len(p.stem) - cut])
        if not pairs and not unpaired:
            raise DataError(f"{img_dir}: no images found. Expected layout:\n{LAYOUT}", path=str(img_dir))
        super().__init__(root, select(pairs, limit, shard), unpaired)

    @staticmethod
    def _class_names(root: Path, classes_file: str | None, num_classes: int | None) -> list[str]:
        candidates = [classes_file] if classes_file else ["classes.txt", "codes.txt"]
        for name in candidates:
            path = root / name
            if path.is_file():
                names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                if not names:
                    raise DataError(f"{path}: class list is empty", path=str(path))
                return names
        if num_classes:
            return [f"class_{i}" for i in range(int(num_classes))]
        raise DataError(f"{root}: no class list ({' or '.join(candidates)}) and no num_classes option. "
                        f"Expected layout:\n{LAYOUT}", path=str(root))
