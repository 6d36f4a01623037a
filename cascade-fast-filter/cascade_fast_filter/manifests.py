"""Manifests from the folder layouts researchers have: extracted frames of FF++, CelebDF-v2, DFDC and DF40, and
DeepfakeBench's dataset JSON. One row per frame, the video it came from kept: ``image_path,label,dataset,split,video,
method`` (label 0 = real, 1 = fake; ``video`` is unique across datasets; ``method`` is the manipulation, ``real`` for
reals). Splits are made per video and never per frame; where a layout has no official split, videos are assigned by
a seeded hash of a group key that keeps a fake with the real video it was made from (and, for CelebDF-v2, with the
other videos of its source identity).

Frames are the images inside one folder per video, as DeepfakeBench's preprocessing writes them
(``<...>/frames/<video>/000.png``; FF++'s own extraction script writes ``images/`` instead of ``frames/``, and a
layout without either folder level is read too). ``frames_per_video`` keeps that many evenly spaced frames.

    python -m cascade_fast_filter manifest --out data/manifests --data-root data \\
        --ffpp data/FaceForensics++ --ffpp-compression c23 c40 --celebdf data/Celeb-DF-v2 --frames-per-video 32
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml
from common_utils.data import DataFormatError, read_deepfakebench_json

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
COLUMNS = ["image_path", "label", "dataset", "split", "video", "method"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
CELEBDF_FOLDERS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}


class Entry(NamedTuple):
    """One frame of the manifest."""

    path: Path
    label: int
    dataset: str
    split: str
    video: str
    method: str


# ------------------------------------------------------------------------------------------------- shared helpers
def sample_frames(frames: Sequence[Path], frames_per_video: int) -> list[Path]:
    """``frames_per_video`` evenly spaced frames (first and last included), or all of them when 0 or fewer exist."""
    frames = sorted(frames)
    if frames_per_video <= 0 or len(frames) <= frames_per_video:
        return frames
    return [frames[i] for i in np.linspace(0, len(frames) - 1, frames_per_video).round().astype(int)]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def frames_root(base: Path) -> Path:
    """Where a layout keeps its per-video frame folders: ``base/frames`` (DeepfakeBench), ``base/images`` (FF++'s
    extraction script) or ``base`` itself."""
    for name in ("frames", "images"):
        if (base / name).is_dir():
            return base / name
    return base


def video_folders(base: Path) -> dict[str, list[Path]]:
    """{video name: its frames} for every folder of images below ``frames_root(base)``."""
    root = frames_root(base)
    if not root.is_dir():
        return {}
    return {d.name: frames for d in sorted(root.iterdir()) if d.is_dir() and (frames := _images(d))}


def hash_split(key: str, val_fraction: float, test_fraction: float = 0.0, seed: int = 0) -> str:
    """A split for group ``key`` from a seeded SHA-256 (stable across processes and Python versions)."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2.0 ** 64
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def _entries(frames, label, dataset, split, video, method, frames_per_video) -> list[Entry]:
    return [Entry(p, label, dataset, split, video, method) for p in sample_frames(frames, frames_per_video)]


# ------------------------------------------------------------------------------------------------------ layouts
def ffpp_split_map(splits_dir: Path) -> dict[str, str]:
    """{video name: split} from FF++'s official ``train.json``/``val.json``/``test.json`` (lists of [target,
    source] pairs): both ids are real videos of that split and ``a_b``/``b_a`` its fakes."""
    out = {}
    for split in SPLITS:
        path = Path(splits_dir) / f"{split}.json"
        if not path.is_file():
            raise FileNotFoundError(f"FF++ split list {path} not found: pass the folder holding the official "
                                    f"train.json/val.json/test.json (FaceForensics repo, dataset/splits)")
        try:
            pairs = json.loads(path.read_text())
            for a, b in pairs:
                for name in (a, b, f"{a}_{b}", f"{b}_{a}"):
                    out[str(name)] = split
        except (ValueError, TypeError) as e:
            raise DataFormatError(path, f"expected a JSON list of [id, id] pairs ({e})") from e
    return out


def ffpp(root, compressions: Iterable[str] = ("c23",), methods: Iterable[str] = FFPP_METHODS, splits_dir=None,
         frames_per_video: int = 0) -> list[Entry]:
    """FaceForensics++: ``original_sequences/youtube/<c>/frames/<id>/`` (real) and
    ``manipulated_sequences/<method>/<c>/frames/<id>_<id>/`` (fake) for each compression ``<c>``; official splits
    from ``splits_dir`` (default ``root``). Every video must be in the split lists."""
    root = Path(root)
    video_split = ffpp_split_map(Path(splits_dir) if splits_dir else root)
    sources = [("real", 0, root / "original_sequences" / "youtube")]
    sources += [(m, 1, root / "manipulated_sequences" / m) for m in methods]
    entries = []
    for comp in compressions:
        found = 0
        for method, label, base in sources:
            for name, frames in video_folders(base / comp).items():
                if name not in video_split:
                    raise DataFormatError(frames_root(base / comp) / name, "video not in the FF++ split lists "
                                          "(train/val/test.json); check the splits folder")
                entries += _entries(frames, label, "FF++", video_split[name], f"FF++/{method}/{comp}/{name}", method,
                                    frames_per_video)
                found += 1
            if not (base / comp).is_dir():
                log.warning("FF++: no %s folder for %s (%s)", comp, method, base / comp)
        if not found:
            raise DataFormatError(root, f"no FF++ frame folders for compression {comp!r} (expected "
                                  f"original_sequences/youtube/{comp}/frames/<id>/*.png)")
    return entries


def celebdf_test_list(path: Path) -> dict[str, int]:
    """{``<folder>/<video>``: our label} from ``List_of_testing_videos.txt`` (``<1|0> <folder>/<video>.mp4``;
    its label is 1 = real, 0 = synthesised, the inverse of ours, and must agree with the folder)."""
    if not path.is_file():
        raise FileNotFoundError(f"CelebDF-v2 official test list not found: {path}")
    out = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1") or "/" not in parts[1]:
            raise DataFormatError(path, f"expected '<1|0> <folder>/<video>.mp4', got {line!r}", line=line_no)
        folder, video = parts[1].split("/", 1)
        if folder not in CELEBDF_FOLDERS:
            raise DataFormatError(path, f"unknown folder {folder!r} (expected one of {sorted(CELEBDF_FOLDERS)})",
                                  line=line_no)
        label = 0 if parts[0] == "1" else 1
        if label != CELEBDF_FOLDERS[folder]:
            raise DataFormatError(path, f"label {parts[0]} (1 = real) disagrees with folder {folder}", line=line_no)
        out[f"{folder}/{Path(video).stem}"] = label
    return out


def celebdf_group(folder: str, video: str) -> str:
    """Split group of a CelebDF-v2 video: its source identity (``id3`` of ``id3_0007`` and of ``id3_id9_0007``, the
    fake made from that real video), so that a fake and its source real video share a split; YouTube videos stand
    alone."""
    return f"{folder}/{video}" if folder == "YouTube-real" else video.split("_")[0]


def celebdf(root, val_fraction: float = 0.1, seed: int = 0, frames_per_video: int = 0) -> list[Entry]:
    """Celeb-DF-v2: ``{Celeb-real,YouTube-real,Celeb-synthesis}/frames/<video>/``; test = the official
    ``List_of_testing_videos.txt``; the other videos go to train or val by source identity (``celebdf_group``)."""
    root = Path(root)
    test = celebdf_test_list(root / "List_of_testing_videos.txt")
    entries, seen = [], set()
    for folder, label in CELEBDF_FOLDERS.items():
        for name, frames in video_folders(root / folder).items():
            key = f"{folder}/{name}"
            seen.add(key)
            split = "test" if key in test else hash_split(celebdf_group(folder, name), val_fraction, seed=seed)
            method = "real" if label == 0 else "Celeb-synthesis"
            entries += _entries(frames, label, "CelebDF-v2", split, f"CelebDF-v2/{key}", method, frames_per_video)
    if not entries:
        raise DataFormatError(root, "no CelebDF-v2 frame folders (expected Celeb-real/frames/<video>/*.png)")
    absent = sorted(set(test) - seen)
    if absent:
        log.warning("CelebDF-v2: %d of %d official test videos have no frames (e.g. %s)", len(absent), len(test),
                    absent[0])
    return entries


def _dfdc_labels_csv(path: Path) -> dict[str, int]:
    """{video stem: label} from DFDC's public test ``labels.csv`` (``filename,label``; 1 = fake)."""
    out = {}
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.DictReader(f), start=2):
            if row.get("label") not in ("0", "1") or not row.get("filename"):
                raise DataFormatError(path, f"expected filename,label (label 0/1), got {row}", line=line_no)
            out[Path(row["filename"]).stem] = int(row["label"])
    return out


def dfdc(root, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
         frames_per_video: int = 0) -> list[Entry]:
    """DFDC: training parts ``<part>/metadata.json`` (``{"x.mp4": {"label": "FAKE"|"REAL", "original": "y.mp4"}}``)
    with ``<part>/frames/<x>/``; a fake shares its split with its ``original`` real video. With a public test folder
    ``test/labels.csv`` + ``test/frames/<x>/`` that is the test split and the parts give train and val only."""
    root = Path(root)
    has_test = (root / "test" / "labels.csv").is_file()
    entries = []
    for meta_path in sorted(root.glob("*/metadata.json")):
        part = meta_path.parent
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as e:
            raise DataFormatError(meta_path, f"not valid JSON ({e})") from e
        for name, frames in video_folders(part).items():
            info = meta.get(f"{name}.mp4")
            if not isinstance(info, dict) or info.get("label") not in ("REAL", "FAKE"):
                raise DataFormatError(meta_path, f"no REAL/FAKE label for video {name}.mp4", key=f"{name}.mp4")
            label = int(info["label"] == "FAKE")
            group = Path(info.get("original") or name).stem if label else name
            split = hash_split(group, val_fraction, 0.0 if has_test else test_fraction, seed)
            entries += _entries(frames, label, "DFDC", split, f"DFDC/{part.name}/{name}",
                                "real" if label == 0 else "DFDC-fake", frames_per_video)
    if has_test:
        labels = _dfdc_labels_csv(root / "test" / "labels.csv")
        for name, frames in video_folders(root / "test").items():
            if name not in labels:
                raise DataFormatError(root / "test" / "labels.csv", f"no label for video folder {name}")
            entries += _entries(frames, labels[name], "DFDC", "test", f"DFDC/test/{name}",
                                "real" if labels[name] == 0 else "DFDC-fake", frames_per_video)
    if not entries:
        raise DataFormatError(root, "no DFDC frames (expected <part>/metadata.json with <part>/frames/<video>/*.png)")
    return entries


def df40(root, split: str, domains: Iterable[str] = ("ff", "cdf"), val_fraction: float = 0.1, seed: int = 0,
         frames_per_video: int = 0) -> list[Entry]:
    """DF40's processed frames (fakes only; the reals come from FF++ / CelebDF-v2): ``<method>/<domain>/frames/
    <video>/``; images lying directly in ``<method>/<domain>[/frames]`` (the entire-face-synthesis methods, which have
    no videos) are one video each. ``split``: ``test`` for the DF40 test download, ``train`` for the training
    download (val carved from it by video)."""
    if split not in ("train", "test"):
        raise ValueError(f"DF40 split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    entries = []
    for method_dir in sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []:
        for domain in domains:
            base = method_dir / domain
            if not base.is_dir():
                continue
            videos = video_folders(base)
            videos.update({p.stem: [p] for p in _images(frames_root(base))})
            for name, frames in videos.items():
                video = f"DF40/{method_dir.name}/{domain}/{name}"
                s = split if split == "test" else hash_split(video, val_fraction, seed=seed)
                entries += _entries(frames, 1, "DF40", s, video, method_dir.name, frames_per_video)
    if not entries:
        raise DataFormatError(root, f"no DF40 frames (expected <method>/{{{','.join(domains)}}}/frames/<video>/*.png)")
    return entries


def default_label_dict(names: Iterable[str]) -> dict[str, int]:
    """DeepfakeBench label names -> 0/1 when no label_dict is given: 0 when the last ``_``/``-`` separated word is
    ``real`` (``FF-real``, ``CelebDFv2_real``, ``DFDC_Real``), else 1 (``FF-DF``, ``CelebDFv2_fake``)."""
    return {n: 0 if n.replace("-", "_").split("_")[-1].lower() == "real" else 1 for n in names}


def _label_names(data: dict) -> dict[tuple[str, str], str]:
    """{(dataset, video): label name} of a DeepfakeBench JSON."""
    out = {}
    for dataset, by_label in data.items():
        for label_name, by_split in (by_label or {}).items():
            for videos in (by_split or {}).values():
                if not isinstance(videos, dict):
                    continue
                nested = [v for v in videos.values() if isinstance(v, dict) and "frames" not in v]
                for level in nested or [videos]:
                    for video in level:
                        out[(dataset, video)] = label_name
    return out


def deepfakebench(json_path, label_dict: dict[str, int] | None = None, data_root=None, compression: str = "c23",
                  frames_per_video: int = 0) -> list[Entry]:
    """A DeepfakeBench dataset JSON (``common_utils.data.read_deepfakebench_json``), every split. Its CelebDF and
    DFDC files list test videos under val and train too: a video listed in test is dropped from val and train, one in
    val from train (logged), so that the splits are disjoint."""
    json_path = Path(json_path)
    names = _label_names(json.loads(json_path.read_text()))
    label_dict = label_dict or default_label_dict(set(names.values()))
    by_split = {}
    for split in SPLITS:
        rows = read_deepfakebench_json(json_path, label_dict, split, data_root=data_root, compression=compression,
                                       allow_duplicates=True)  # cross-split repeats are resolved below
        videos = defaultdict(list)
        for r in rows:
            videos[(r.dataset, r.video, r.label)].append(r.path)
        by_split[split] = videos
    for later, earlier in (("test", "val"), ("test", "train"), ("val", "train")):
        overlap = set(by_split[later]) & set(by_split[earlier])
        if overlap:
            log.warning("%s: %d video(s) listed in both %s and %s are kept in %s only", json_path, len(overlap),
                        earlier, later, later)
            for key in overlap:
                del by_split[earlier][key]
    entries = []
    for split, videos in by_split.items():
        for (dataset, video, label), frames in videos.items():
            name = names.get((dataset, video), "real" if label == 0 else "fake")
            entries += _entries(frames, label, dataset, split, f"{dataset}/{name}/{video}",
                                "real" if label == 0 else name, frames_per_video)
    return entries


# ------------------------------------------------------------------------------------------------------- writing
def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return Path(path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(Path(path).resolve())


def write_manifests(entries: Sequence[Entry], out_dir, data_root=None) -> dict:
    """Write ``out_dir/{train,val,test}_manifest.csv``; paths relative to ``data_root`` when below it (pass the
    config's ``data.root``). Returns {split: {"videos": {real, fake}, "frames": {real, fake}}}."""
    out_dir = Path(out_dir)
    root = Path(data_root) if data_root is not None else None
    where = defaultdict(set)
    for e in entries:
        where[e.video].add((e.split, e.label))
    mixed = [v for v, s in where.items() if len(s) > 1]
    if mixed:
        raise ValueError(f"video {mixed[0]!r} has frames in several splits or with both labels: "
                         f"{sorted(where[mixed[0]])}")
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        rows = sorted((e for e in entries if e.split == split), key=lambda e: (e.video, str(e.path)))
        with open(out_dir / f"{split}_manifest.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            for e in rows:
                writer.writerow([_relative(e.path, root), e.label, e.dataset, split, e.video, e.method])
        videos = Counter({e.video: e.label for e in rows}.values())
        frames = Counter(e.label for e in rows)
        counts[split] = {"videos": {"real": videos[0], "fake": videos[1]},
                         "frames": {"real": frames[0], "fake": frames[1]}}
        if not rows:
            log.warning("no %s rows: %s holds only a header", split, out_dir / f"{split}_manifest.csv")
    return counts


def read_label_dict(path) -> dict[str, int]:
    """A label_dict from YAML/JSON: a mapping name -> 0/1, or DeepfakeBench's train_config.yaml (``label_dict``)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    data = data.get("label_dict", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(v in (0, 1) for v in data.values()):
        raise DataFormatError(path, "expected a mapping label name -> 0/1 (or a 'label_dict' key holding one)")
    return {str(k): int(v) for k, v in data.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cascade_fast_filter manifest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for {train,val,test}_manifest.csv")
    p.add_argument("--data-root", default=None, help="write image paths relative to this folder (the config's "
                   "data.root); absolute otherwise")
    p.add_argument("--frames-per-video", type=int, default=0, help="evenly spaced frames kept per video (0 = all)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of groups put in val where a layout has "
                   "no official val split")
    p.add_argument("--test-fraction", type=float, default=0.1, help="DFDC without a public test folder: share of "
                   "groups put in test")
    p.add_argument("--seed", type=int, default=0, help="seed of the hash that assigns groups to splits")
    p.add_argument("--ffpp", help="FaceForensics++ root (original_sequences/, manipulated_sequences/)")
    p.add_argument("--ffpp-compression", nargs="+", default=["c23"], help="FF++ compressions (raw c23 c40)")
    p.add_argument("--ffpp-methods", nargs="+", default=list(FFPP_METHODS))
    p.add_argument("--ffpp-splits", help="folder with FF++'s train/val/test.json (default: the FF++ root)")
    p.add_argument("--celebdf", help="Celeb-DF-v2 root (Celeb-real/, Celeb-synthesis/, YouTube-real/, "
                   "List_of_testing_videos.txt)")
    p.add_argument("--dfdc", help="DFDC root (<part>/metadata.json + frames; optional test/labels.csv)")
    p.add_argument("--df40-train", help="DF40 training download (<method>/<domain>/frames/<video>/)")
    p.add_argument("--df40-test", help="DF40 test download")
    p.add_argument("--df40-domains", nargs="+", default=["ff", "cdf"])
    p.add_argument("--deepfakebench", nargs="+", default=[], help="DeepfakeBench dataset JSON file(s)")
    p.add_argument("--label-dict", help="YAML/JSON label name -> 0/1 (or DeepfakeBench's train_config.yaml); "
                   "default: names ending in 'real' are 0")
    p.add_argument("--json-root", help="folder the JSON frame paths are relative to (default: the JSON's folder)")
    p.add_argument("--json-compression", default="c23", help="compression level read from FF++ JSONs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    k = args.frames_per_video
    entries = []
    if args.ffpp:
        entries += ffpp(args.ffpp, args.ffpp_compression, args.ffpp_methods, args.ffpp_splits, k)
    if args.celebdf:
        entries += celebdf(args.celebdf, args.val_fraction, args.seed, k)
    if args.dfdc:
        entries += dfdc(args.dfdc, args.val_fraction, args.test_fraction, args.seed, k)
    if args.df40_train:
        entries += df40(args.df40_train, "train", args.df40_domains, args.val_fraction, args.seed, k)
    if args.df40_test:
        entries += df40(args.df40_test, "test", args.df40_domains, args.val_fraction, args.seed, k)
    label_dict = read_label_dict(args.label_dict) if args.label_dict else None
    for json_path in args.deepfakebench:
        entries += deepfakebench(json_path, label_dict, args.json_root, args.json_compression, k)
    if not entries:
        p.error("no source given: pass --ffpp, --celebdf, --dfdc, --df40-train/--df40-test or --deepfakebench")
    counts = write_manifests(entries, args.out, args.data_root)
    print("| split | real videos | fake videos | real frames | fake frames |\n|---|---|---|---|---|")
    for split, c in counts.items():
        print(f"| {split} | {c['videos']['real']} | {c['videos']['fake']} | {c['frames']['real']} | "
              f"{c['frames']['fake']} |")
    return 0
