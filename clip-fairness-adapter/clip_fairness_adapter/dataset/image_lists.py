"""The image lists both stages read, as their datasets distribute them, into ``FairnessRow``s.

A config lists data sets as ``{format, path[, split]}`` entries (``path`` relative to ``data.root``):

- ``pgfdd``: a PG-FDD fairness CSV ``img_path,label,ismale,isasian,iswhite,isblack,intersec_label`` (``data.column_map``
  renames columns; see ``common_utils.data.read_pgfdd_csv``).
- ``csv``: a test list without demographics, ``img_path,label`` (other columns ignored; e.g. the usual Celeb-DF / DFD /
  DFDC frame lists): gender, race and subgroup are -1 (unknown) and fairness is reported as not applicable.
- ``fairface``: FairFace's ``fairface_label_{train,val}.csv`` (``file,age,gender,race,service_test``; images relative
  to the CSV's folder). Seven races mapped to PG-FDD's four: East/Southeast Asian -> asian, White -> white, Black ->
  black, Indian / Middle Eastern / Latino_Hispanic -> other.
- ``utkface``: a UTKFace folder (searched recursively, e.g. ``part1..3`` or ``UTKFace/``); labels from file names
  ``[age]_[gender]_[race]_[date&time].jpg`` (gender 0 male / 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian,
  4 Others). The few distributed files whose names lack a field are skipped with a warning naming them.
- ``causalface``: a CausalFace folder ``final_picked_{age,lighting,pose,smiling}/seed_*/<race>_<gender>_*.png``
  (``*_rm_bg*`` background-removed copies skipped); race asian / white / black / indian (-> other), gender male /
  female, matched as whole ``_``-separated words (upstream's substring test reads every ``female`` as ``male``).

Demographic-only sets (FairFace, UTKFace, CausalFace) carry no deepfake label: ``label`` is -1. UTKFace and CausalFace
ship no split: ``split: train|val|test`` takes the first 80 % / next 10 % / last 10 % of the sorted file list (as the
design's code does), ``all`` (default) every file.
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from common_utils.data import DataFormatError, FairnessRow, read_pgfdd_csv

log = logging.getLogger(__name__)

FORMATS = ("pgfdd", "csv", "fairface", "utkface", "causalface")
SPLITS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0), "all": (0.0, 1.0)}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
NO_LABEL = -1  # demographic-only data sets carry no real/fake label
UNKNOWN = -1  # gender / race / subgroup of a list without demographics

FAIRFACE_RACE = {"East Asian": 0, "Southeast Asian": 0, "White": 1, "Black": 2, "Indian": 3, "Middle Eastern": 3,
                 "Latino_Hispanic": 3}
FAIRFACE_GENDER = {"Male": 0, "Female": 1}
UTKFACE_RACE = {2: 0, 0: 1, 1: 2, 3: 3, 4: 3}  # UTKFace race id -> PG-FDD race
CAUSALFACE_RACE = {"asian": 0, "white": 1, "black": 2, "indian": 3}
CAUSALFACE_GENDER = {"male": 0, "female": 1}


def _row(path: Path, label: int, gender: int, race: int, line: int) -> FairnessRow:
    return FairnessRow(path, label, gender, race, gender * 4 + race, line)


def _split(paths: list[Path], split: str, source: Path) -> list[Path]:
    if split not in SPLITS:
        raise ValueError(f"{source}: split must be one of {list(SPLITS)}, got {split!r}")
    lo, hi = SPLITS[split]
    paths = sorted(paths)
    return paths[int(len(paths) * lo): int(len(paths) * hi)]


def _dict_rows(path: Path, required: Sequence[str]):
    """(line, row) of a CSV with the ``required`` columns; a missing column is an error naming the header."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(path, f"missing column(s) {missing}; header is {header}", line=1)
        reader.fieldnames = header
        for row in reader:
            if any(row.get(c) in (None, "") for c in required):
                raise DataFormatError(path, f"empty value in one of {list(required)}", line=reader.line_num)
            yield reader.line_num, {k: v.strip() for k, v in row.items() if k is not None}


def _existing(path: Path, source: Path, line: int | None = None) -> Path:
    if not path.is_file():
        raise DataFormatError(source, f"listed image not found: {path}", line=line)
    return path


def read_label_csv(path: Path, root: Path) -> list[FairnessRow]:
    """``img_path,label`` list without demographics (paths relative to ``root``)."""
    rows = []
    for line, r in _dict_rows(path, ("img_path", "label")):
        if r["label"] not in ("0", "1"):
            raise DataFormatError(path, f"bad label {r['label']!r}; expected 0 (real) or 1 (fake)", line=line)
        img = Path(r["img_path"]) if Path(r["img_path"]).is_absolute() else root / r["img_path"]
        rows.append(FairnessRow(_existing(img, path, line), int(r["label"]), UNKNOWN, UNKNOWN, UNKNOWN, line))
    return rows


def read_fairface(path: Path) -> list[FairnessRow]:
    """FairFace label CSV; images relative to the CSV's folder."""
    rows = []
    for line, r in _dict_rows(path, ("file", "gender", "race")):
        if r["gender"] not in FAIRFACE_GENDER or r["race"] not in FAIRFACE_RACE:
            raise DataFormatError(path, f"unknown gender {r['gender']!r} or race {r['race']!r}; expected "
                                  f"{list(FAIRFACE_GENDER)} and {list(FAIRFACE_RACE)}", line=line)
        img = _existing(path.parent / r["file"], path, line)
        rows.append(_row(img, NO_LABEL, FAIRFACE_GENDER[r["gender"]], FAIRFACE_RACE[r["race"]], line))
    return rows


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataFormatError(folder, "folder not found")
    return [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def read_utkface(folder: Path, split: str = "all") -> list[FairnessRow]:
    """UTKFace folder (recursive); demographics from ``age_gender_race_datetime`` file names."""
    rows, malformed = [], []
    for img in _split(_images(folder), split, folder):
        fields = img.name.split("_")
        try:
            gender, race = int(fields[1]), int(fields[2].split(".")[0])
            if gender not in (0, 1) or race not in UTKFACE_RACE or len(fields) < 4:
                raise ValueError
        except (ValueError, IndexError):
            malformed.append(img.name)
            continue
        rows.append(_row(img, NO_LABEL, gender, UTKFACE_RACE[race], 0))
    if malformed:
        log.warning("%s: skipped %d file(s) whose names are not age_gender_race_datetime: %s", folder, len(malformed),
                    ", ".join(malformed[:5]))
    return rows


def read_causalface(folder: Path, split: str = "all") -> list[FairnessRow]:
    """CausalFace folder; race and gender are whole words of the file name."""
    images = [p for p in _images(folder) if p.suffix.lower() == ".png" and "_rm_bg" not in p.name
              and p.parent.parent.name.startswith("final_picked_")]
    rows = []
    for img in _split(images, split, folder):
        words = img.stem.lower().split("_")
        races = [CAUSALFACE_RACE[w] for w in words if w in CAUSALFACE_RACE]
        genders = [CAUSALFACE_GENDER[w] for w in words if w in CAUSALFACE_GENDER]
        if len(races) != 1 or len(genders) != 1:
            raise DataFormatError(img, f"expected one race word {list(CAUSALFACE_RACE)} and one gender word "
                                  f"{list(CAUSALFACE_GENDER)} in the file name")
        rows.append(_row(img, NO_LABEL, genders[0], races[0], 0))
    return rows


def read_set(entry: Mapping, root: str | Path | None, column_map: Mapping | None = None) -> list[FairnessRow]:
    """Rows of one ``{format, path[, split]}`` entry; ``path`` is relative to ``root`` unless absolute."""
    unknown = set(entry) - {"format", "path", "split"}
    if unknown or "format" not in entry or "path" not in entry:
        raise ValueError(f"data set entry {dict(entry)}: needs 'format' and 'path' (and optionally 'split'); "
                         f"unknown keys {sorted(unknown)}")
    fmt = entry["format"]
    if fmt not in FORMATS:
        raise ValueError(f"data set entry {dict(entry)}: format must be one of {list(FORMATS)}")
    base = Path(root) if root is not None else Path(".")
    path = Path(entry["path"]) if Path(entry["path"]).is_absolute() else base / entry["path"]
    split = entry.get("split", "all")
    if split != "all" and fmt not in ("utkface", "causalface"):
        raise ValueError(f"data set entry {dict(entry)}: 'split' applies to utkface and causalface folders only")
    if fmt == "pgfdd":
        return read_pgfdd_csv(path, data_root=base, column_map=column_map)
    if fmt == "csv":
        return read_label_csv(path, base)
    if fmt == "fairface":
        return read_fairface(path)
    if fmt == "utkface":
        return read_utkface(path, split)
    return read_causalface(path, split)


def read_sets(entries: Sequence[Mapping], root: str | Path | None,
              column_map: Mapping | None = None) -> list[FairnessRow]:
    """Concatenated rows of every entry; an empty result is an error naming the entries."""
    rows = [r for e in entries for r in read_set(e, root, column_map)]
    if not rows:
        raise ValueError(f"no images in data sets {[dict(e) for e in entries]}")
    return rows


def folder_images(folder: str | Path) -> list[Path]:
    """Every image under ``folder`` (recursive, sorted): the input of ``infer``."""
    images = sorted(_images(Path(folder)))
    if not images:
        raise DataFormatError(Path(folder), f"no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return images
