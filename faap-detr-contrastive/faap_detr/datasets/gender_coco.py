"""Gender-split COCO detection data (`gender_{women,men}_{split}.json` + `{women,men}_split/{split}/` images)."""
from pathlib import Path

import numpy as np
import torch
from common_utils.data import DataFormatError, load_image, read_coco_json
from torch.utils.data import Dataset

GENDERS = ("men", "women")  # gender index: 0 = male, 1 = female (common_utils convention)


def gt_json_path(root, gender, split):
    return Path(root) / f"gender_{gender}_{split}.json"


def read_gender_json(path):
    """Read and validate one gender COCO JSON -> dict (images, annotations, categories, info).

    Schema checks and their errors (file + JSON path, e.g. ``annotations[12].bbox``): common_utils.data.read_coco_json.
    """
    return read_coco_json(path)


def resize_shape(h, w, size, max_size=None):
    """DETR's resize rule: shorter side -> size unless the longer side would exceed max_size."""
    if max_size is not None:
        lo, hi = min(h, w), max(h, w)
        if hi / lo * size > max_size:
            size = int(round(max_size * lo / hi))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


class GenderCocoDataset(Dataset):
    """Items: (pixels [3,h,w] float in [0,1], target dict).

    target: labels [n] int64 (COCO category ids), boxes [n,4] normalised cxcywh, image_id, orig_size (h, w),
    gender (0 male / 1 female). Crowd and degenerate boxes are dropped, as DETR does."""

    def __init__(self, root, split, genders=GENDERS, image_size=800, max_size=1333):
        self.root = Path(root)
        self.image_size, self.max_size = image_size, max_size
        self.items = []
        self.coco = {}
        for gender in genders:
            if gender not in GENDERS:
                raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
            path = gt_json_path(root, gender, split)
            data = read_gender_json(path)
            self.coco[gender] = data
            anns = {}
            for ann in data["annotations"]:
                anns.setdefault(ann["image_id"], []).append(ann)
            img_dir = self.root / f"{gender}_split" / split
            for im in data["images"]:
                file = img_dir / im["file_name"]
                if not file.is_file():
                    raise DataFormatError(path, f"image file not found: {file}", key=f"images[id={im['id']}]")
                self.items.append((file, im, anns.get(im["id"], []), GENDERS.index(gender)))

    def __len__(self):
        return len(self.items)

    @property
    def genders(self):
        """[N] gender index per item (for balanced sampling)."""
        return [g for *_, g in self.items]

    def __getitem__(self, i):
        file, im, anns, gender = self.items[i]
        img = load_image(file)
        w0, h0 = img.size
        h, w = resize_shape(h0, w0, self.image_size, self.max_size)
        if (h, w) != (h0, w0):
            img = img.resize((w, h), resample=2)  # bilinear
        pixels = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        boxes, labels = [], []
        for ann in anns:
            if ann.get("iscrowd", 0):
                continue
            x, y, bw, bh = ann["bbox"]
            x0, y0 = min(max(x, 0), w0), min(max(y, 0), h0)
            x1, y1 = min(max(x + bw, 0), w0), min(max(y + bh, 0), h0)
            if x1 > x0 and y1 > y0:
                boxes.append([(x0 + x1) / 2 / w0, (y0 + y1) / 2 / h0, (x1 - x0) / w0, (y1 - y0) / h0])
                labels.append(ann["category_id"])
        target = {
            "labels": torch.tensor(labels, dtype=torch.int64),
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "image_id": im["id"],
            "orig_size": torch.tensor([h0, w0]),
            "gender": gender,
        }
        return pixels, target


def flip_item(pixels, target):
    """Horizontal flip of an image [3,h,w] and its target (normalised cxcywh boxes): upstream's RandomHorizontalFlip."""
    boxes = target["boxes"].clone()
    boxes[:, 0] = 1.0 - boxes[:, 0]
    return pixels.flip(-1), {**target, "boxes": boxes}


class RandomHFlip(Dataset):
    """`dataset` with each item flipped horizontally with probability 0.5 (torch's RNG of the loading process)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        pixels, target = self.dataset[i]
        return flip_item(pixels, target) if torch.rand(()) < 0.5 else (pixels, target)


def collate(batch):
    """Pad to the largest h, w (bottom/right, zeros) -> pixels [B,3,H,W], mask [B,H,W] (True = padding), targets."""
    h = max(p.shape[1] for p, _ in batch)
    w = max(p.shape[2] for p, _ in batch)
    pixels = torch.zeros(len(batch), 3, h, w)
    mask = torch.ones(len(batch), h, w, dtype=torch.bool)
    for i, (p, _) in enumerate(batch):
        pixels[i, :, : p.shape[1], : p.shape[2]] = p
        mask[i, : p.shape[1], : p.shape[2]] = False
    return pixels, mask, [t for _, t in batch]


def dataset_layout(root, splits=("train", "val", "test")):
    """Image / annotation counts per gender and split (written to dataset_layout.json)."""
    layout = {"root": str(root), "splits": {}}
    for split in splits:
        for gender in GENDERS:
            path = gt_json_path(root, gender, split)
            if path.is_file():
                data = read_gender_json(path)
                layout["splits"].setdefault(split, {})[gender] = {
                    "images": len(data["images"]), "annotations": len(data["annotations"]), "json": path.name}
    return layout
