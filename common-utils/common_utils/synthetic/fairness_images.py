"""``fairness_images``: face videos (real and face-swapped) with gender x race demographics, the demographic-only face
datasets a fairness adapter trains on, and captions, in the layouts the real datasets ship.

What it carries, as the real data does:

- **Face crops.** Frames are face crops with a margin (the face fills most of the frame, as the DLib crops PG-FDD
  ships), on a photo-crop background.
- **Demographics, visibly and with overlap.** A stylised face. Skin tone depends on race
  (asian, white, black, other) with within-group spread, so neighbouring groups overlap; hair length follows gender
  for 85 % of subjects (the rest wear the other style), 40 % of men have a beard shadow, face width differs slightly
  by gender; hair colour, face size and position vary per subject. Subgroup sizes are unequal (``SUBGROUP_WEIGHTS``).
- **Videos.** A subject is a video of ``FRAMES`` frames (small jitter of face position and exposure, sensor noise,
  camera blur and JPEG compression drawn per video), in its own folder, as DeepfakeBench / PG-FDD frame folders are.
- **Fakes made from the real videos, artefacts in the face only.** As FF++ manipulates its real (target) videos, each
  real video has a fake twin: the same frames with the inner face re-rendered through a generator-like process
  (``tconv`` or ``nearest_blur``; ``resynth`` for the held-out shifted test) and blended back with a feathered
  elliptical mask and a slight tone mismatch, at a manipulation strength drawn per video; a video and its fakes share
  a split. Background, identity and camera are therefore no cue: only the manipulation is. The
  processes' artefacts scale with the local intensity and texture, so they are physically weaker on darker, smoother
  skin: detectors see a subgroup-dependent signal (and darker real faces look "smoother"), without a hand-set
  per-subgroup strength.
- **Demographic-only face datasets** (real faces, no deepfake label) in the layouts of FairFace
  (``fairface_label_{train,val}.csv``: ``file,age,gender,race,service_test``, seven race names), UTKFace (labels in
  ``[age]_[gender]_[race]_[datetime].jpg.chip.jpg`` names) and CausalFace (``final_picked_<attr>/seed_<k>/
  <race>_<gender>_<attr>_<value>_o<k>.png``), with their own demographic mixes (FairFace balanced by race, UTKFace
  mostly white, CausalFace asian/white/black/indian controlled).
- **Captions** (``captions/train.tsv``, open_clip's CSV: ``filepath<TAB>title``) for the training frames and the face
  datasets, naming what a web caption would: gender, ethnicity, hair, beard, the background and visible image quality
  (``upscaled`` / ``pixelated`` face for 90 % of the training fakes, ``sharp photo`` for half the reals; the shifted
  process is never named), each mentioned only with some probability (captions are noisy).

Layout under ``out`` (paths in the CSVs relative to ``out``; FairFace paths relative to its CSV)::

    images/{real,fake,fake_shifted}/<video>/<frame>.png
    pgfdd/{realtrain,faketrain,realval,fakeval,test,test_shifted}.csv    PG-FDD columns
    lists/test_shifted.csv        the shifted test as a list without demographics (img_path,label)
    faces/fairface/fairface_label_{train,val}.csv, faces/fairface/{train,val}/<n>.jpg
    faces/UTKFace/*.jpg.chip.jpg
    faces/CausalFace/final_picked_{age,lighting,pose,smiling}/seed_<k>/*.png
    captions/train.tsv
    synthetic_info.json

PG-FDD columns: ``img_path,label,ismale,isasian,iswhite,isblack,intersec_label``; label 1 = fake, attribute columns
+1/-1, ``intersec_label = gender * 4 + race`` (gender 0 male / 1 female; race 0 asian, 1 white, 2 black, 3 other).
``n`` counts the frames of the five PG-FDD CSVs (half real, half their fakes); subjects are split 60/15/25 %.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from .images import PHOTO_NAMES, apply_process, photo_pool, real_crop, save_png, split_counts, write_csv

SUBGROUPS = ("male-asian", "male-white", "male-black", "male-other",
             "female-asian", "female-white", "female-black", "female-other")
SUBGROUP_WEIGHTS = (0.12, 0.25, 0.08, 0.07, 0.10, 0.22, 0.09, 0.07)
SKIN_TONES = ((0.90, 0.76, 0.60), (0.97, 0.83, 0.74), (0.42, 0.28, 0.19), (0.74, 0.55, 0.40))
SKIN_SPREAD = 0.10  # within-race brightness spread (relative, std): neighbouring groups overlap
HAIR_MATCHES_GENDER = 0.85
BEARDS = 0.4  # share of men with a beard shadow
TRAIN_PROCESSES = ("tconv", "nearest_blur")
SHIFTED_PROCESS = "resynth"
STRENGTH_RANGE = (0.2, 0.7)  # manipulation strength per fake video
SHIFTED_STRENGTH_RANGE = (0.15, 0.45)  # the held-out generator makes subtler fakes (as Celeb-DF's improved synthesis)
CAMERA_BLUR = (0.0, 0.9)  # per-video camera blur sigma (px), real and fake alike
JPEG_QUALITY = (60, 90)  # per-video compression of every frame (FF++ c23 frames are decoded compressed video)
FRAMES = 3
SPLIT_FRACTIONS = (0.6, 0.15, 0.25)
IMAGE_SIZE = 128
DEMO_N = 1440
FACES_PER_N = 0.25  # FairFace train images per PG-FDD frame (val: a quarter of that; UTKFace, CausalFace: fewer)
HEADER = ["img_path", "label", "ismale", "isasian", "iswhite", "isblack", "intersec_label"]
RACE_WORDS = ("asian", "white", "black", "south asian")
FAIRFACE_RACES = (("East Asian", "Southeast Asian"), ("White",), ("Black",),
                  ("Indian", "Middle Eastern", "Latino_Hispanic"))
UTKFACE_RACE = (2, 0, 1, 3)  # ours -> UTKFace id (0 White, 1 Black, 2 Asian, 3 Indian, 4 Others)
CAUSALFACE_RACE = ("asian", "white", "black", "indian")
CAUSALFACE_ATTRS = ("age", "lighting", "pose", "smiling")
FAKE_WORDS = {"tconv": "upscaled", "nearest_blur": "pixelated"}
BACKGROUND_WORDS = {"astronaut": "an astronaut poster", "coffee": "a coffee cup", "chelsea": "a cat",
                    "rocket": "a rocket", "camera": "a photographer", "coins": "coins", "brick": "a brick wall",
                    "grass": "grass", "gravel": "gravel", "immunohistochemistry": "a stained slide",
                    "hubble_deep_field": "a night sky", "retina": "a medical scan", "moon": "the moon"}


def subject(rng: np.random.Generator, subgroup: int) -> dict:
    """The fixed look of one person of ``subgroup``."""
    female, race = divmod(subgroup, 4)
    long_hair = bool(female) == (rng.random() < HAIR_MATCHES_GENDER)
    tone = np.clip(np.array(SKIN_TONES[race]) * (1 + rng.normal(0, SKIN_SPREAD)) + rng.normal(0, 0.02, 3), 0, 1)
    return {"subgroup": subgroup, "long_hair": long_hair, "skin": tone, "beard": not female and rng.random() < BEARDS,
            "hair": np.clip(np.array([rng.uniform(0.05, 0.45)] * 2 + [rng.uniform(0.02, 0.3)]), 0, 1),
            "cx": rng.uniform(-0.03, 0.03), "cy": rng.uniform(0.0, 0.05), "rx": rng.uniform(0.29, 0.33)
            * (1.06 if not female else 1.0), "ry": rng.uniform(0.37, 0.42), "background": int(rng.integers(1 << 30))}


def render(person: dict, rng: np.random.Generator, jitter: float = 0.0,
           background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One frame of ``person`` ([S,S,3] in [0,1]) and its face mask ([S,S] in [0,1], feathered). The background is the
    person's photo crop (pass it to reuse it across a video's frames)."""
    size = IMAGE_SIZE
    if background is None:
        background = real_crop(np.random.default_rng(person["background"]), size)
    canvas = Image.fromarray(np.round(background * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    cx = size * (0.5 + person["cx"]) + rng.normal(0, jitter * size)
    cy = size * (0.5 + person["cy"]) + rng.normal(0, jitter * size)
    rx, ry = size * person["rx"], size * person["ry"]
    hair = tuple(int(255 * c) for c in person["hair"])
    if person["long_hair"]:  # long hair falling behind the face to the shoulders
        draw.rounded_rectangle([cx - rx * 1.35, cy - ry * 1.2, cx + rx * 1.35, cy + ry * 1.55], radius=rx, fill=hair)
    skin = tuple(int(255 * c) for c in person["skin"])
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
    if not person["long_hair"]:  # short hair cap
        draw.chord([cx - rx, cy - ry * 1.08, cx + rx, cy + ry * 0.4], 180, 360, fill=hair)
    if person["beard"]:  # a darker lower face
        shade = tuple(int(255 * c * 0.6) for c in person["skin"])
        draw.chord([cx - rx * 0.95, cy - ry * 0.2, cx + rx * 0.95, cy + ry], 0, 180, fill=shade)
    for side in (-1, 1):
        ex, ey = cx + side * rx * 0.4, cy - ry * 0.1
        draw.ellipse([ex - rx * 0.13, ey - ry * 0.07, ex + rx * 0.13, ey + ry * 0.07], fill=(250, 250, 250))
        draw.ellipse([ex - rx * 0.06, ey - ry * 0.06, ex + rx * 0.06, ey + ry * 0.06], fill=(30, 20, 15))
    draw.arc([cx - rx * 0.4, cy + ry * 0.25, cx + rx * 0.4, cy + ry * 0.6], 20, 160, fill=(120, 30, 40), width=2)
    img = np.asarray(canvas, dtype=np.float32) / 255.0
    img = np.clip(img * (1 + rng.normal(0, 0.03)) + rng.normal(0, 0.01, img.shape), 0, 1)  # exposure, sensor noise
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse([cx - rx * 0.8, cy - ry * 0.8, cx + rx * 0.8, cy + ry * 0.8], fill=255)
    mask = np.asarray(mask.filter(ImageFilter.GaussianBlur(2.5)), dtype=np.float32) / 255.0
    return img.astype(np.float32), mask


def camera(img: np.ndarray, blur: float) -> np.ndarray:
    """The source camera's (de)focus: a Gaussian blur of ``blur`` px."""
    return ndimage.gaussian_filter(img, sigma=(blur, blur, 0.0), mode="reflect") if blur > 0 else img


def compress(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip at ``quality`` (the video codec every frame went through)."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), mode="RGB").save(buffer, format="JPEG",
                                                                                           quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255.0


def face_swap(img: np.ndarray, mask: np.ndarray, process: str, strength: float, tone: np.ndarray) -> np.ndarray:
    """Blend the generator-processed frame into the face region (with a slight tone mismatch of the new face)."""
    generated = apply_process(process, img, 1.0) * tone
    alpha = (strength * mask)[:, :, None]
    return np.clip((1 - alpha) * img + alpha * generated, 0, 1).astype(np.float32)


def background_name(person: dict) -> str:
    """The photograph ``real_crop`` draws the person's background from (its first draw picks the photo among those
    at least IMAGE_SIZE large)."""
    usable = [name for name, p in zip(PHOTO_NAMES, photo_pool()) if min(p.shape[:2]) >= IMAGE_SIZE]
    return usable[int(np.random.default_rng(person["background"]).integers(len(usable)))]


def _row(rel: str, label: int, subgroup: int) -> list:
    female, race = divmod(subgroup, 4)
    sign = lambda flag: 1 if flag else -1  # noqa: E731
    return [rel, label, sign(not female), sign(race == 0), sign(race == 1), sign(race == 2), subgroup]


def caption(person: dict, rng: np.random.Generator, process: str | None) -> str:
    """A noisy web-style caption: each attribute is named only with some probability."""
    female, race = divmod(person["subgroup"], 4)
    noun = "woman" if female else "man"
    adjective = RACE_WORDS[race] + " " if rng.random() < 0.8 else ""
    who = f"{'an' if adjective[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {adjective}{noun}" \
        if rng.random() < 0.9 else "a person"
    parts = [f"{rng.choice(['a photo', 'a picture', 'an image'])} of {who}"]
    if rng.random() < 0.5:
        parts.append("with long hair" if person["long_hair"] else "with short hair")
    if person["beard"] and rng.random() < 0.5:
        parts.append("and a beard")
    if rng.random() < 0.6:
        parts.append(f"in front of {BACKGROUND_WORDS[background_name(person)]}")
    text = " ".join(parts)
    if process is not None and rng.random() < 0.9:
        text += f", {FAKE_WORDS[process]} face"
    elif process is None and rng.random() < 0.5:
        text += ", sharp photo"
    return text


def _videos(out: Path, rng: np.random.Generator, seed: int, n_videos: int, csvs: dict, captions: list) -> None:
    """Write ``n_videos`` real videos and, for each, a fake made from it (the target's frames with the face re-rendered,
    as FF++ fakes are made from its real videos), both in the video's split; the test videos also get a fake from the
    held-out process."""
    subgroups = rng.choice(len(SUBGROUPS), size=n_videos, p=SUBGROUP_WEIGHTS)
    train, val, _ = split_counts(n_videos, SPLIT_FRACTIONS)
    for v in range(n_videos):
        vrng = np.random.default_rng([seed, 101, v])
        person = subject(vrng, int(subgroups[v]))
        process = TRAIN_PROCESSES[int(vrng.integers(len(TRAIN_PROCESSES)))]
        strength, shifted_strength = vrng.uniform(*STRENGTH_RANGE), vrng.uniform(*SHIFTED_STRENGTH_RANGE)
        tone = 1 + vrng.normal(0, 0.04, 3)
        blur, quality = vrng.uniform(*CAMERA_BLUR), int(vrng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        split = "train" if v < train else "val" if v < train + val else "test"
        background = real_crop(np.random.default_rng(person["background"]), IMAGE_SIZE)
        for f in range(FRAMES):
            frame, mask = render(person, vrng, jitter=0.01, background=background)
            frame = camera(frame, blur)
            versions = [("real", 0, None, frame),
                        ("fake", 1, process, face_swap(frame, mask, process, strength, tone))]
            if split == "test":  # the same target faked by the held-out process
                versions.append(("fake_shifted", 1, SHIFTED_PROCESS,
                                 face_swap(frame, mask, SHIFTED_PROCESS, shifted_strength, tone)))
            for kind, label, proc, img in versions:
                rel = f"images/{kind}/{kind}_{v:05d}/{f:03d}.png"
                save_png(compress(img, quality), out / rel)
                row = _row(rel, label, person["subgroup"])
                if split != "test":
                    csvs[f"{kind}{split}"].append(row)
                    if split == "train":
                        captions.append([rel, caption(person, vrng, proc)])
                    continue
                if kind != "fake_shifted":
                    csvs["test"].append(row)
                if kind != "fake":
                    csvs["test_shifted"].append(row)


def _save_jpeg(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), mode="RGB").save(path, format="JPEG",
                                                                                           quality=90)


def _faces(out: Path, seed: int, n: int, captions: list) -> dict:
    """FairFace (race-balanced), UTKFace (mostly white) and CausalFace (controlled) layouts of real faces."""
    counts = {}
    root = out / "faces"
    n_val = max(8, n // 4)
    for split, count, tag in (("train", n, 201), ("val", n_val, 202)):
        rng = np.random.default_rng([seed, tag])
        rows = []
        for i in range(count):
            race, female = i % 4, int(rng.integers(2))  # balanced by race, as FairFace
            person = subject(rng, female * 4 + race)
            rel = f"{split}/{i + 1}.jpg"
            _save_jpeg(render(person, rng)[0], root / "fairface" / rel)
            rows.append([rel, str(int(rng.integers(3, 8)) * 10 - 1), "Female" if female else "Male",
                         FAIRFACE_RACES[race][int(rng.integers(len(FAIRFACE_RACES[race])))],
                         "True" if rng.random() < 0.5 else "False"])
            if split == "train":
                captions.append([f"faces/fairface/{rel}", caption(person, rng, None)])
        write_csv(root / "fairface" / f"fairface_label_{split}.csv", ["file", "age", "gender", "race", "service_test"],
                  rows)
        counts[f"fairface_{split}"] = count
    rng = np.random.default_rng([seed, 203])
    weights = (0.15, 0.5, 0.2, 0.15)  # UTKFace: mostly white
    for _ in range(n // 3):
        race, female = int(rng.choice(4, p=weights)), int(rng.integers(2))
        person = subject(rng, female * 4 + race)
        race_id = UTKFACE_RACE[race] if race != 3 else int(rng.choice([3, 4]))
        name = f"{int(rng.integers(1, 90))}_{female}_{race_id}_2017{int(rng.integers(10 ** 10)):010d}.jpg.chip.jpg"
        _save_jpeg(render(person, rng)[0], root / "UTKFace" / name)
        captions.append([f"faces/UTKFace/{name}", caption(person, rng, None)])
    counts["utkface"] = n // 3
    rng = np.random.default_rng([seed, 204])
    for i in range(n // 4):
        race, female = i % 4, (i // 4) % 2
        person = subject(rng, female * 4 + race)
        attr = CAUSALFACE_ATTRS[i % 4]
        rel = (f"final_picked_{attr}/seed_{i // 8}/{CAUSALFACE_RACE[race]}_{'female' if female else 'male'}_{attr}_"
               f"{rng.uniform(-1, 1):.1f}_o{i % 3}.png")
        save_png(render(person, rng)[0], root / "CausalFace" / rel)
        captions.append([f"faces/CausalFace/{rel}", caption(person, rng, None)])
    counts["causalface"] = n // 4
    return counts


def generate(out: str | Path, n: int = DEMO_N, seed: int = 0) -> dict:
    """Write the dataset under ``out`` (``n`` frames in the five PG-FDD CSVs). Returns the counts written."""
    out = Path(out)
    if n < 6 * FRAMES:
        raise ValueError(f"fairness_images needs n >= {6 * FRAMES} ({FRAMES} frames per video, a real and a fake "
                         f"video per subject), got {n}")
    rng = np.random.default_rng([seed, 100])
    csvs = {name: [] for name in ("realtrain", "faketrain", "realval", "fakeval", "test", "test_shifted")}
    captions: list = []
    _videos(out, rng, seed, n // (2 * FRAMES), csvs, captions)
    for name, rows in csvs.items():
        write_csv(out / "pgfdd" / f"{name}.csv", HEADER, rows)
    write_csv(out / "lists" / "test_shifted.csv", ["img_path", "label"], [r[:2] for r in csvs["test_shifted"]])
    faces = _faces(out, seed, max(16, int(n * FACES_PER_N)), captions)
    (out / "captions").mkdir(parents=True, exist_ok=True)
    with open(out / "captions" / "train.tsv", "w", encoding="utf-8", newline="") as f:
        f.write("filepath\ttitle\n" + "".join(f"{p}\t{t}\n" for p, t in captions))
    info = {
        "name": "fairness_images", "n": n, "seed": seed, "frames_per_video": FRAMES, "subgroups": list(SUBGROUPS),
        "subgroup_weights": list(SUBGROUP_WEIGHTS), "skin_tones": [list(t) for t in SKIN_TONES],
        "train_processes": list(TRAIN_PROCESSES), "shifted_process": SHIFTED_PROCESS,
        "strength_range": list(STRENGTH_RANGE),
        "counts": {**{name: len(rows) for name, rows in csvs.items()}, **faces, "captions": len(captions)},
        "labels": "0 = real, 1 = fake; intersec_label = gender*4 + race "
                  "(gender 0 male / 1 female; race 0 asian, 1 white, 2 black, 3 other)",
    }
    (out / "synthetic_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
