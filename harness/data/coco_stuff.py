"""COCO-Stuff 164k (171 classes: 80 things + 91 stuff) in the layout the common converters produce
(mmsegmentation's ``tools/dataset_converters/coco_stuff164k.py`` writes ``*_labelTrainIds.png``).

Layout::

    coco_stuff164k/
      images/{train2017,val2017}/*.jpg
      annotations/{train2017,val2017}/*_labelTrainIds.png   mode L: 0..170 = classes, 255 = unlabeled

Labels are already train ids; 255 is ignored.
"""

from __future__ import annotations

from pathlib import Path

from harness.data.files import PairedFilesDataset, require_dir, select, split_folder_pairs
from harness.data.palettes import COCO_STUFF_171_PALETTE

LAYOUT = """  coco_stuff164k/
    images/{train2017,val2017}/*.jpg
    annotations/{train2017,val2017}/*_labelTrainIds.png   (mode L: 0..170, 255 = unlabeled)"""
SPLITS = {"validation": "val2017", "val": "val2017", "val2017": "val2017", "train": "train2017",
          "training": "train2017", "train2017": "train2017"}
SUFFIX = "_labelTrainIds.png"
THINGS = ("person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
          "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
          "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
          "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
          "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
          "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
          "hair_drier toothbrush").split()
STUFF = ("banner blanket branch bridge building-other bush cabinet cage cardboard carpet ceiling-other ceiling-tile "
         "cloth clothes clouds counter cupboard curtain desk-stuff dirt door-stuff fence floor-marble floor-other "
         "floor-stone floor-tile floor-wood flower fog food-other fruit furniture-other grass gravel ground-other "
         "hill house leaves light mat metal mirror-stuff moss mountain mud napkin net paper pavement pillow "
         "plant-other plastic platform playingfield railing railroad river road rock roof rug salad sand sea shelf "
         "sky-other skyscraper snow solid-other stairs stone straw structural-other table tent textile-other towel "
         "tree vegetable wall-brick wall-concrete wall-other wall-panel wall-stone wall-tile wall-wood water-other "
         "waterdrops window-blind window-other wood").split()
CLASSES = [n.replace("_", " ") for n in THINGS] + STUFF


class COCOStuff164kDataset(PairedFilesDataset):
    name = "coco-stuff-164k"
    label_set = "coco_stuff_171"
    num_classes = 171
    ignore_index = 255
    class_names = CLASSES

    def __init__(self, root: str | Path, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None):
        root = require_dir(Path(root), "COCO-Stuff 164k root", LAYOUT)
        pairs, unpaired = split_folder_pairs(root, split, SPLITS, "coco-stuff-164k", LAYOUT,
                                             ("images", ".jpg", "COCO-Stuff images"),
                                             ("annotations", SUFFIX, "COCO-Stuff labels"))
        super().__init__(root, select(pairs, limit, shard), unpaired)
        self.palette = COCO_STUFF_171_PALETTE
