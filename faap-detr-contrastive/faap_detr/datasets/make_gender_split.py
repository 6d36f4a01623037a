"""Build gender-split COCO JSONs from COCO captions (word lists of "Women also Snowboard", Burns et al. 2018).

An image is male if its captions use a man word and no woman word, female for the converse; images whose
captions use both (or neither) are dropped. Annotations and categories are copied from the instances file."""
import json
import os
import re
from pathlib import Path

from common_utils.data import DataFormatError, read_coco_json, read_json

MAN_WORDS = frozenset("boy brother dad husband man groom male guy men".split())
WOMAN_WORDS = frozenset("girl sister mom wife woman bride female lady women".split())


def caption_gender(captions):
    """list of caption strings -> 'men' | 'women' | None (mixed or no gendered word)."""
    words = set(re.findall(r"[a-z]+", " ".join(captions).lower()))
    man, woman = bool(words & MAN_WORDS), bool(words & WOMAN_WORDS)
    if man == woman:
        return None
    return "men" if man else "women"


def make_gender_split(captions_json, instances_json, out_dir, split, image_dir=None, person_only=False):
    """Write `gender_{women,men}_{split}.json` (with `info`) to out_dir; with image_dir, symlink the images into
    `{women,men}_split/{split}/`. Returns counts {gender: {images, annotations}, dropped_mixed, dropped_none}."""
    caps, inst = read_json(captions_json), read_coco_json(instances_json)
    by_image = {}
    for i, c in enumerate(caps.get("annotations", [])):
        if "image_id" not in c or "caption" not in c:
            raise DataFormatError(captions_json, "caption entry lacks image_id/caption", key=f"annotations[{i}]")
        by_image.setdefault(c["image_id"], []).append(c["caption"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"dropped_mixed": 0, "dropped_none": 0}
    assigned = {}
    for image_id, texts in by_image.items():
        g = caption_gender(texts)
        if g is None:
            words = set(re.findall(r"[a-z]+", " ".join(texts).lower()))
            counts["dropped_mixed" if words & MAN_WORDS else "dropped_none"] += 1
        else:
            assigned[image_id] = g
    for gender in ("women", "men"):
        images = [im for im in inst["images"] if assigned.get(im["id"]) == gender]
        ids = {im["id"] for im in images}
        anns = [a for a in inst["annotations"] if a["image_id"] in ids and (not person_only or a["category_id"] == 1)]
        cats = [c for c in inst["categories"] if not person_only or c["id"] == 1]
        data = {"info": {"description": f"COCO {split}, {gender} by caption words", "source": str(instances_json)},
                "images": images, "annotations": anns, "categories": cats}
        (out_dir / f"gender_{gender}_{split}.json").write_text(json.dumps(data))
        counts[gender] = {"images": len(images), "annotations": len(anns)}
        if image_dir is not None:
            dst = out_dir / f"{gender}_split" / split
            dst.mkdir(parents=True, exist_ok=True)
            for im in images:
                link = dst / im["file_name"]
                if not link.exists():
                    os.symlink(Path(image_dir).resolve() / im["file_name"], link)
    return counts
