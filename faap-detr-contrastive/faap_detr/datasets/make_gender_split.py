"""Gender-split COCO from COCO's own annotation files (captions + instances, 2014 or 2017 as distributed).

Rule (the word lists of Burns, Hendricks et al., "Women also Snowboard", ECCV 2018, `kayburns/women-snowboard`
`data_analysis_common.py`; their "men"/"women" entries are plural forms, so they appear as lemmas here):

1. Each caption is tokenised (hyphenated words stay whole: "man-made" is not "man"), possessives are stripped
   ("woman's", "boys'") and plural forms lemmatised ("men" -> man, "ladies" -> lady, "girls" -> girl).
   A caption votes *men* if a lemma is in ``MAN_WORDS``, *women* if one is in ``WOMAN_WORDS`` (both if both).
2. Vote over an image's captions (five in COCO): the image is men if at least ``min_votes`` captions vote men and at
   most ``max_dissent`` vote women, and conversely. Everything else is dropped and counted by reason: ``mixed``
   (both genders named), ``weak`` (fewer than ``min_votes`` votes), ``neutral`` (no gender word).
   ``min_votes=1, max_dissent=0`` is Burns et al.'s rule; the default ``min_votes=2`` asks two annotators to agree.
3. Only images with at least one non-crowd person box (category 1) are kept (``no_person`` otherwise).
4. Splits: train = the labelled images of the train annotation file; val and test = the labelled images of the val
   file, carved per gender by a salted SHA-1 of the image id (``test_fraction`` to test). The official DETR
   checkpoints were trained on train2017, so with the 2017 files val and test hold images the detector never saw.

Outputs (under ``out``): ``gender_{women,men}_{train,val,test}.json`` (COCO instances format with ``info``; the
annotations of kept images, all categories unless ``person_only``), images symlinked into
``{women,men}_split/{split}/``, and ``split_counts.json`` (the counts also printed by the CLI).
"""
import hashlib
import json
import os
import re
from pathlib import Path

from common_utils.data import DataFormatError, read_coco_json, read_json

MAN_WORDS = frozenset("boy brother dad husband man groom male guy".split())
WOMAN_WORDS = frozenset("girl sister mom wife woman bride female lady".split())
IRREGULAR = {"men": "man", "women": "woman", "wives": "wife", "ladies": "lady"}
SPLITS = ("train", "val", "test")
GENDERS = ("women", "men")
PERSON = 1
_TOKEN = re.compile(r"[a-z]+(?:[-'][a-z]+)*'?")


def lemma(token):
    """A lower-case token -> its lemma for the gender lists: possessive stripped, plural made singular."""
    for suffix in ("'s", "'"):
        if token.endswith(suffix):
            token = token[: -len(suffix)]
            break
    if token in IRREGULAR:
        return IRREGULAR[token]
    if token.endswith("s") and token[:-1] in MAN_WORDS | WOMAN_WORDS:
        return token[:-1]
    return token


def caption_vote(text):
    """One caption -> set of genders it names ({'men'}, {'women'}, both, or empty)."""
    lemmas = {lemma(t) for t in _TOKEN.findall(text.lower())}
    return {g for g, words in (("men", MAN_WORDS), ("women", WOMAN_WORDS)) if lemmas & words}


def image_gender(captions, min_votes=2, max_dissent=0):
    """Captions of one image -> ('men' | 'women', None) or (None, reason: 'mixed' | 'weak' | 'neutral')."""
    votes = {"men": 0, "women": 0}
    for text in captions:
        for g in caption_vote(text):
            votes[g] += 1
    for g, other in (("men", "women"), ("women", "men")):
        if votes[g] >= min_votes and votes[other] <= max_dissent:
            return g, None
    if votes["men"] and votes["women"]:
        return None, "mixed"
    return None, "weak" if votes["men"] or votes["women"] else "neutral"


def label_images(captions_json, instances_json, min_votes=2, max_dissent=0):
    """-> ({image_id: gender}, dropped counts by reason, images by id, annotations by image id, categories)."""
    caps, inst = read_json(captions_json), read_coco_json(instances_json)
    if not isinstance(caps, dict) or not isinstance(caps.get("annotations"), list):
        raise DataFormatError(captions_json, "missing or non-list COCO field (a captions file lists annotations)",
                              key="annotations")
    by_image = {}
    for i, c in enumerate(caps["annotations"]):
        if "image_id" not in c or not isinstance(c.get("caption"), str):
            raise DataFormatError(captions_json, "caption entry lacks image_id or caption text",
                                  key=f"annotations[{i}]")
        by_image.setdefault(c["image_id"], []).append(c["caption"])
    anns = {}
    for a in inst["annotations"]:  # fields checked by read_coco_json
        anns.setdefault(a["image_id"], []).append(a)
    images = {im["id"]: im for im in inst["images"]}
    labels, dropped = {}, {"mixed": 0, "weak": 0, "neutral": 0, "no_person": 0, "no_captions": 0}
    for image_id in sorted(images):
        texts = by_image.get(image_id)
        if not texts:
            dropped["no_captions"] += 1
            continue
        gender, reason = image_gender(texts, min_votes, max_dissent)
        if gender is None:
            dropped[reason] += 1
        elif not any(a["category_id"] == PERSON and not a.get("iscrowd", 0) for a in anns.get(image_id, [])):
            dropped["no_person"] += 1
        else:
            labels[image_id] = gender
    return labels, dropped, images, anns, inst["categories"]


def carve(image_ids, test_fraction, salt):
    """Deterministic val/test carving of one gender's ids: sorted by SHA-1 of f"{salt}:{id}", the first
    round(n * (1 - test_fraction)) go to val."""
    order = sorted(image_ids, key=lambda i: hashlib.sha1(f"{salt}:{i}".encode()).hexdigest())
    n_val = int(round(len(order) * (1.0 - test_fraction)))
    return sorted(order[:n_val]), sorted(order[n_val:])


def coco_files(coco_root, year):
    """COCO's own file names under coco_root for a release year (2014 or 2017)."""
    root = Path(coco_root)
    return {part: {"captions": root / "annotations" / f"captions_{part}{year}.json",
                   "instances": root / "annotations" / f"instances_{part}{year}.json",
                   "images": root / f"{part}{year}"} for part in ("train", "val")}


def make_gender_split(coco_root, out_dir, year=2017, min_votes=2, max_dissent=0, test_fraction=0.5,
                      salt="faap", person_only=False, link_images=True):
    """Build the splits (module docstring) and return the counts written to ``split_counts.json``."""
    files = coco_files(coco_root, year)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    assignment, sources, counts = {}, {}, {"rule": {
        "man_words": sorted(MAN_WORDS), "woman_words": sorted(WOMAN_WORDS), "min_votes": min_votes,
        "max_dissent": max_dissent, "person_category": PERSON, "test_fraction": test_fraction, "salt": salt,
        "year": year}, "dropped": {}, "splits": {}}
    for part in ("train", "val"):
        f = files[part]
        labels, dropped, images, anns, categories = label_images(f["captions"], f["instances"], min_votes,
                                                                 max_dissent)
        counts["dropped"][f"{part}{year}"] = dropped
        sources[part] = (f, images, anns, categories)
        for gender in GENDERS:
            ids = [i for i, g in labels.items() if g == gender]
            if part == "train":
                assignment[("train", gender)] = (part, sorted(ids))
            else:
                val_ids, test_ids = carve(ids, test_fraction, salt)
                assignment[("val", gender)] = (part, val_ids)
                assignment[("test", gender)] = (part, test_ids)
    for split in SPLITS:
        for gender in GENDERS:
            part, ids = assignment[(split, gender)]
            f, images, anns, categories = sources[part]
            keep = [a for i in ids for a in anns.get(i, []) if not person_only or a["category_id"] == PERSON]
            data = {"info": {"description": f"COCO {part}{year} images of {gender} by caption vote ({split} split)",
                             "source_captions": str(f["captions"]), "source_instances": str(f["instances"]),
                             "rule": counts["rule"]},
                    "licenses": [], "images": [images[i] for i in ids], "annotations": keep,
                    "categories": [c for c in categories if not person_only or c["id"] == PERSON]}
            (out_dir / f"gender_{gender}_{split}.json").write_text(json.dumps(data))
            n_person = sum(a["category_id"] == PERSON for a in keep)
            counts["splits"].setdefault(split, {})[gender] = {"images": len(ids), "person_boxes": n_person,
                                                              "annotations": len(keep), "source": f"{part}{year}"}
            if link_images:
                _link(images, ids, Path(f["images"]), out_dir / f"{gender}_split" / split)
    (out_dir / "split_counts.json").write_text(json.dumps(counts, indent=1) + "\n")
    return counts


def _link(images, ids, src_dir, dst_dir):
    """Symlink each image into dst_dir (replacing a stale link); a missing source image is an error."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for i in ids:
        name = images[i]["file_name"]
        src = (src_dir / name).resolve()
        if not src.is_file():
            raise DataFormatError(src_dir / name, "image file not found (is --coco-root the folder holding "
                                  f"{src_dir.name}/?)")
        link = dst_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(src, link)


def counts_table(counts):
    """Plain-text table of images per split and gender (what the CLI prints)."""
    lines = [f"{'split':<6} {'women':>8} {'men':>8} {'women %':>8}"]
    for split in SPLITS:
        w, m = (counts["splits"][split][g]["images"] for g in GENDERS)
        lines.append(f"{split:<6} {w:>8} {m:>8} {100.0 * w / max(w + m, 1):>7.1f}%")
    for source, dropped in counts["dropped"].items():
        lines.append(f"dropped from {source}: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    return "\n".join(lines)
