"""``gender_coco``: small person scenes written as COCO distributes them (instances + five captions per image).

Each image (128-192 px per side) is a blurred, low-contrast photo-crop background with 1-2 stick-and-block figures
(head, torso, arms, legs) that are the subject of the picture, as the people of COCO images whose captions name
their gender mostly are (3 in some mixed scenes); each figure is a ``person`` (category 1) with its tight box.
Nothing in the instance files says who is a man or a woman: as in COCO, the gender of a scene is only in its captions,
so a gender split has to be built from them (``faap_detr make-gender-split`` reads exactly these files).

Scenes, per image (fractions of ``n``):

- single-gender scenes (the rest): all figures of one gender; ``WOMEN_FRACTION`` of them are women. Clothing
  follows the gender (trousers vs. dress), and the scene carries the detection gap a COCO detector shows between
  images of women and men: women's figures are smaller and lower-contrast against the background.
- ``MIXED_FRACTION``: figures of both genders (captions name both: the split builder must drop them).
- ``EMPTY_FRACTION``: no person at all; some captions still name a man or a woman ("a man's bicycle ..."), as COCO
  captions do, so a split builder must also check for a person box.

Captions: five per image, COCO style (free capitalisation and punctuation). Each names the scene's gender with
probability ``P_GENDERED`` using singular/plural and possessive forms (man, men, guy, boys, woman's, ladies, ...),
else a neutral word (person, people, someone); with probability ``P_WRONG`` an annotator names the other gender.
Place phrases contain look-alike words (manhole, human, mannequin) that whole-word matching must not count.

Layout under ``out`` (COCO 2017 names)::

    train2017/<id:012d>.png, val2017/<id:012d>.png           ``SOURCE_SPLITS``: 60 % / 40 % of the images
    annotations/instances_{train,val}2017.json                info, licenses, images, annotations, categories
    annotations/captions_{train,val}2017.json                 info, licenses, images, annotations (id, image_id,
                                                              caption)
    synthetic_info.json                                       counts and each image's true scene gender (tests)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .images import real_crop, save_png, split_counts

GENDERS = ("women", "men")
SOURCE_SPLITS = ("train2017", "val2017")
SOURCE_FRACTIONS = (0.6, 0.4)
WOMEN_FRACTION = 0.4
MIXED_FRACTION = 0.06
EMPTY_FRACTION = 0.04
CAPTIONS_PER_IMAGE = 5
P_GENDERED = 0.6
P_WRONG = 0.02
SIZES = (128, 144, 160, 176, 192)
# per gender: (figure height range as a fraction of the image height, colour contrast against the background)
STYLE = {"women": ((0.45, 0.8), 0.75), "men": ((0.5, 0.9), 1.0)}
MAX_FIGURES = 2  # per single-gender scene
CATEGORIES = [{"supercategory": "person", "id": 1, "name": "person"}]
LICENSES = [{"url": "https://creativecommons.org/licenses/by/4.0/", "id": 1, "name": "synthetic (CC BY 4.0)"}]
DEMO_N = 1600

# caption vocabulary: (singular, plural) nouns per gender; possessives are made from either form
NOUNS = {"men": (("man", "men"), ("guy", "guys"), ("boy", "boys"), ("male", "males")),
         "women": (("woman", "women"), ("lady", "ladies"), ("girl", "girls"), ("female", "females"))}
NEUTRAL = (("person", "people"), ("adult", "adults"), ("pedestrian", "pedestrians"), ("figure", "figures"))
NUMBERS = {2: ("two", "a pair of", "a couple of"), 3: ("three", "a group of", "several")}
ACTIONS = ("standing", "walking", "posing", "waiting", "looking around", "standing still")
PLACES = ("in front of a wall", "on a city street", "near a manhole cover", "in a park", "next to a mannequin",
          "beside a painting of a human face", "on a sidewalk", "in an empty lot", "under a grey sky")
OBJECTS = ("bicycle", "bag", "umbrella", "coat", "suitcase")


def _draw_figure(draw: ImageDraw.ImageDraw, x: float, y: float, h: float, dress: bool, colours: dict) -> None:
    """A figure of height ``h`` whose top-left corner of the bounding box is (x, y); width 0.5 h."""
    w = 0.5 * h
    cx, head = x + w / 2, 0.2 * h
    draw.ellipse([cx - head / 2, y, cx + head / 2, y + head], fill=colours["skin"])
    torso_top, torso_bottom = y + head * 1.05, y + 0.58 * h
    draw.rectangle([x, torso_top + 0.03 * h, x + 0.1 * w, torso_top + 0.4 * h], fill=colours["skin"])  # arms
    draw.rectangle([x + 0.9 * w, torso_top + 0.03 * h, x + w, torso_top + 0.4 * h], fill=colours["skin"])
    if dress:
        draw.rectangle([cx - 0.38 * w, torso_top, cx + 0.38 * w, torso_bottom - 0.12 * h], fill=colours["top"])
        draw.polygon([(cx - 0.38 * w, torso_bottom - 0.12 * h), (cx + 0.38 * w, torso_bottom - 0.12 * h),
                      (cx + 0.42 * w, y + 0.8 * h), (cx - 0.42 * w, y + 0.8 * h)], fill=colours["top"])
        for side in (-1, 1):
            left, right = sorted((cx + side * 0.08 * w, cx + side * 0.2 * w))
            draw.rectangle([left, y + 0.8 * h, right, y + h], fill=colours["skin"])
    else:
        draw.rectangle([cx - 0.38 * w, torso_top, cx + 0.38 * w, torso_bottom], fill=colours["top"])
        draw.rectangle([cx - 0.34 * w, torso_bottom, cx - 0.04 * w, y + h], fill=colours["bottom"])
        draw.rectangle([cx + 0.04 * w, torso_bottom, cx + 0.34 * w, y + h], fill=colours["bottom"])


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def render_scene(rng: np.random.Generator, genders: list[str]) -> tuple[np.ndarray, list[list[float]]]:
    """One scene with a figure per entry of ``genders`` (placed without heavy overlap; a figure that finds no room
    after 20 tries is left out). Returns the image ``[H, W, 3]`` float32 and the figures' tight boxes
    ``[x, y, w, h]`` (pixels)."""
    height, width = int(rng.choice(SIZES)), int(rng.choice(SIZES))
    background = ndimage.gaussian_filter(real_crop(rng, height, width), sigma=(2.0, 2.0, 0.0))
    background = 0.3 + 0.4 * background
    canvas = Image.fromarray(np.round(background * 255).astype(np.uint8))
    masks = []
    boxes: list[list[float]] = []
    for gender in genders:
        (h_lo, h_hi), contrast = STYLE[gender]
        for _attempt in range(20):
            h = rng.uniform(h_lo, h_hi) * height
            w = 0.5 * h
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            if all(_iou([x, y, w, h], b) < 0.2 for b in boxes):
                break
        else:
            continue
        local = background[int(y):int(y + h) + 1, int(x):int(x + w) + 1].mean(axis=(0, 1))
        colours = {}
        for part in ("skin", "top", "bottom"):
            target = rng.uniform(0.0, 1.0, 3) if part != "skin" else np.array([0.85, 0.65, 0.5]) * rng.uniform(0.5, 1.1)
            target = np.where(np.abs(target - local) < 0.3, 1.0 - local, target)  # keep the figure visible
            colours[part] = tuple(int(255 * c) for c in np.clip(local + contrast * (target - local), 0, 1))
        mask = Image.new("L", canvas.size, 0)
        for layer, fill in ((ImageDraw.Draw(canvas), colours), (ImageDraw.Draw(mask), dict.fromkeys(colours, 255))):
            _draw_figure(layer, x, y, h, gender == "women", fill)
        masks.append(np.asarray(mask) > 0)
        boxes.append([x, y, w, h])
    img = np.asarray(canvas, dtype=np.float32) / 255.0
    tight = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        tight.append([float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)])
    return img, tight


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _noun_phrase(rng: np.random.Generator, nouns, count: int) -> str:
    singular, plural = _pick(rng, nouns)
    if count == 1:
        return ("a " if singular[0] not in "aeiou" else "an ") + singular if rng.random() < 0.8 else "the " + singular
    return f"{_pick(rng, NUMBERS[min(count, 3)])} {plural}"


def _coco_style(rng: np.random.Generator, text: str) -> str:
    """COCO captions' surface variety: capitalised or not, with or without the full stop, stray spaces."""
    if rng.random() < 0.8:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.6:
        text += "."
    return text + (" " if rng.random() < 0.1 else "")


def caption(rng: np.random.Generator, scene: str, count: int) -> str:
    """One caption of a scene: ``scene`` is "men", "women", "mixed" or "empty"; ``count`` figures."""
    where = _pick(rng, PLACES)
    if scene == "empty":
        if rng.random() < 0.3:  # a gender word without a person in the picture
            nouns = NOUNS[_pick(rng, GENDERS)]
            owner = _pick(rng, nouns)[0]
            return _coco_style(rng, f"a {owner}'s {_pick(rng, OBJECTS)} left {where}")
        return _coco_style(rng, f"an empty scene {where}")
    if scene == "mixed":
        if rng.random() < P_GENDERED:
            first, second = ("men", "women") if rng.random() < 0.5 else ("women", "men")
            text = (f"{_noun_phrase(rng, NOUNS[first], 1)} and {_noun_phrase(rng, NOUNS[second], 1)} "
                    f"{_pick(rng, ACTIONS)} {where}")
        else:
            text = f"{_noun_phrase(rng, NEUTRAL, count)} {_pick(rng, ACTIONS)} {where}"
        return _coco_style(rng, text)
    gender = scene
    r = rng.random()
    if r < P_WRONG:
        gender = GENDERS[1 - GENDERS.index(scene)]
    if r < P_GENDERED:
        nouns = NOUNS[gender]
        if rng.random() < 0.15:  # possessive form
            singular, plural = _pick(rng, nouns)
            if count == 1:
                owner = f"the {singular}'s"
            else:
                owner = f"the {plural}'" if plural.endswith("s") else f"the {plural}'s"
            return _coco_style(rng, f"{owner} {_pick(rng, OBJECTS)} {where}")
        subject = _noun_phrase(rng, nouns, count)
    else:
        subject = _noun_phrase(rng, NEUTRAL, count)
    return _coco_style(rng, f"{subject} {_pick(rng, ACTIONS)} {where}")


def _scene_kind(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < EMPTY_FRACTION:
        return "empty"
    if r < EMPTY_FRACTION + MIXED_FRACTION:
        return "mixed"
    return "women" if rng.random() < WOMEN_FRACTION else "men"


def _figures(rng: np.random.Generator, scene: str) -> list[str]:
    if scene == "empty":
        return []
    if scene == "mixed":
        genders = ["men", "women"] + (["men" if rng.random() < 0.5 else "women"] if rng.random() < 0.4 else [])
        return [genders[i] for i in rng.permutation(len(genders))]
    return [scene] * int(rng.integers(1, MAX_FIGURES + 1))


def _info(split: str, kind: str, seed: int) -> dict:
    return {"description": f"synthetic gender_coco {kind} {split} (common_utils.synthetic)", "url": "",
            "version": "1.0", "year": 2026, "contributor": "common_utils.synthetic", "date_created": "2026/01/01",
            "seed": seed}


def generate(out: str | Path, n: int = DEMO_N, seed: int = 0) -> dict:
    """Write ``n`` scenes under ``out`` in COCO's own layout (module docstring). Returns the counts."""
    out = Path(out)
    if n < 2:
        raise ValueError(f"gender_coco needs n >= 2 (an image in train2017 and one in val2017), got {n}")
    info = {"name": "gender_coco", "n": n, "seed": seed, "counts": {}, "scene_gender": {},
            "notes": "category 1 = person; gender only in the captions; women figures smaller and lower-contrast"}
    index = 0
    for split, count in zip(SOURCE_SPLITS, split_counts(n, SOURCE_FRACTIONS)):
        images, instances, captions = [], [], []
        kinds: dict[str, int] = {}
        for _ in range(count):
            rng = np.random.default_rng([seed, 700, index])
            index += 1
            image_id = 100_000 + 7 * index  # unique over both files, not contiguous (as in COCO)
            scene = _scene_kind(rng)
            img, boxes = render_scene(rng, _figures(rng, scene))
            file_name = f"{image_id:012d}.png"
            save_png(img, out / split / file_name)
            images.append({"license": 1, "file_name": file_name, "height": img.shape[0], "width": img.shape[1],
                           "date_captured": "2026-01-01 00:00:00", "id": image_id})
            for k, (x, y, w, h) in enumerate(boxes):
                instances.append({"segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]], "area": w * h,
                                  "iscrowd": 0, "image_id": image_id, "bbox": [x, y, w, h], "category_id": 1,
                                  "id": image_id * 10 + k})
            for k in range(CAPTIONS_PER_IMAGE):
                captions.append({"image_id": image_id, "id": image_id * 10 + k,
                                 "caption": caption(rng, scene, max(1, len(boxes)))})
            kinds[scene] = kinds.get(scene, 0) + 1
            info["scene_gender"][str(image_id)] = scene
        ann_dir = out / "annotations"
        ann_dir.mkdir(parents=True, exist_ok=True)
        year_split = split.removesuffix("2017")
        (ann_dir / f"instances_{year_split}2017.json").write_text(json.dumps(
            {"info": _info(split, "instances", seed), "licenses": LICENSES, "images": images,
             "annotations": instances, "categories": CATEGORIES}) + "\n")
        (ann_dir / f"captions_{year_split}2017.json").write_text(json.dumps(
            {"info": _info(split, "captions", seed), "licenses": LICENSES, "images": images,
             "annotations": captions}) + "\n")
        info["counts"][split] = {"images": len(images), "boxes": len(instances), "scenes": dict(sorted(kinds.items()))}
    (out / "synthetic_info.json").write_text(json.dumps(info, indent=1) + "\n")
    return info
