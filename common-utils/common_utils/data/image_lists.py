"""Validated readers for image lists: manifest CSV, PG-FDD fairness CSV, SPAI CSV and DeepfakeBench JSON.

Every error is a `DataFormatError` naming the file and the line (CSV, 1-based, header = line 1) or the JSON key path.
With ``check_files=True`` every listed image must exist; ``on_missing="skip"`` drops rows whose image is missing
and logs how many were dropped instead of raising.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from .errors import DataFormatError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SUBGROUP_NAMES = [f"{g}-{r}" for g in ("male", "female") for r in ("asian", "white", "black", "other")]


class ManifestRow(NamedTuple):
    image_path: Path
    label: int  # 0 real, 1 fake
    dataset: str
    split: str
    line: int


class FairnessRow(NamedTuple):
    img_path: Path
    label: int  # 0 real, 1 fake
    gender: int  # 0 male, 1 female
    race: int  # 0 asian, 1 white, 2 black, 3 other
    subgroup: int  # intersec_label = gender * 4 + race
    line: int


class SpaiRow(NamedTuple):
    image: Path
    label: int  # 0 real, 1 fake
    split: str
    line: int


class FrameRow(NamedTuple):
    path: Path
    label: int
    dataset: str
    video: str


# ----------------------------------------------------------------------------------------------- shared helpers


def _require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found" if not path.exists() else "not a regular file")
    return path


def _csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line, row) for each non-empty data row; checks the header holds every `required` column."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise DataFormatError(path, "empty file (no header)", line=1)
        header = [c.strip() for c in reader.fieldnames]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(path, f"missing column(s) {missing}; header is {header}", line=1)
        for row in reader:
            if all(v in (None, "") for v in row.values()):
                continue
            if None in row or any(row[c] is None for c in header):
                raise DataFormatError(
                    path, f"expected {len(header)} fields, got a different count", line=reader.line_num
                )
            yield reader.line_num, {k: v.strip() for k, v in row.items()}


def _parse_int(path: Path, line: int, column: str, value: str, allowed: Sequence[int]) -> int:
    try:
        number = float(value)
        if number != int(number):
            raise ValueError
        number = int(number)
    except (ValueError, OverflowError):
        number = None
    if number not in allowed:
        raise DataFormatError(path, f"bad {column} {value!r}; expected one of {list(allowed)}", line=line)
    return number


def _parse_split(path: Path, line: int, column: str, value: str) -> str:
    if value not in SPLITS:
        raise DataFormatError(path, f"unknown {column} {value!r}; expected one of {list(SPLITS)}", line=line)
    return value


def _check_splits(splits: str | Sequence[str] | None) -> set[str] | None:
    if splits is None:
        return None
    splits = {splits} if isinstance(splits, str) else set(splits)
    if not splits <= set(SPLITS):
        raise ValueError(f"unknown split(s) {sorted(splits - set(SPLITS))}; expected a subset of {list(SPLITS)}")
    return splits


def _resolve(root: Path, value: str, path: Path, line: int, column: str) -> Path:
    if not value:
        raise DataFormatError(path, f"empty {column}", line=line)
    p = Path(value)
    return p if p.is_absolute() else root / p


class _MissingFiles:
    """Applies the check_files / on_missing policy and logs the number of skipped rows."""

    def __init__(self, source: Path, check_files: bool, on_missing: str):
        if on_missing not in ("error", "skip"):
            raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
        self.source, self.check, self.on_missing, self.skipped = source, check_files, on_missing, 0

    def keep(self, file: Path, line: int | None = None, key: str | None = None) -> bool:
        if not self.check or file.is_file():
            return True
        if self.on_missing == "error":
            raise DataFormatError(self.source, f"listed file not found: {file}", line=line, key=key)
        self.skipped += 1
        return False

    def report(self) -> None:
        if self.skipped:
            log.warning("%s: skipped %d row(s) whose file is missing (on_missing='skip')", self.source, self.skipped)


# ----------------------------------------------------------------------------------------------------- readers


def read_manifest(
    csv_path: str | Path,
    data_root: str | Path | None = None,
    splits: str | Sequence[str] | None = None,
    check_files: bool = True,
    on_missing: str = "error",
) -> list[ManifestRow]:
    """Read a manifest CSV ``image_path,label,dataset,split`` (label 0 real / 1 fake, split train|val|test).

    Relative image paths resolve against `data_root` (default: the CSV's folder). `splits` keeps only those splits.
    """
    path = _require_file(csv_path)
    root = Path(data_root) if data_root is not None else path.parent
    wanted = _check_splits(splits)
    files = _MissingFiles(path, check_files, on_missing)
    rows = []
    for line, r in _csv_rows(path, ("image_path", "label", "dataset", "split")):
        label = _parse_int(path, line, "label", r["label"], (0, 1))
        split = _parse_split(path, line, "split", r["split"])
        if not r["dataset"]:
            raise DataFormatError(path, "empty dataset", line=line)
        if wanted is not None and split not in wanted:
            continue
        image = _resolve(root, r["image_path"], path, line, "image_path")
        if files.keep(image, line):
            rows.append(ManifestRow(image, label, r["dataset"], split, line))
    files.report()
    return rows


PGFDD_COLUMNS = ("img_path", "label", "ismale", "isasian", "iswhite", "isblack", "intersec_label")


def read_pgfdd_csv(
    csv_path: str | Path,
    data_root: str | Path | None = None,
    column_map: Mapping[str, str | None] | None = None,
    check_files: bool = True,
    on_missing: str = "error",
) -> list[FairnessRow]:
    """Read a PG-FDD fairness CSV ``img_path,label,ismale,isasian,iswhite,isblack,intersec_label``.

    Attribute columns are +-1; gender = 0 if ismale == 1 else 1; race = asian 0 / white 1 / black 2 / other 3 (none
    of the three set); subgroup = gender * 4 + race must equal ``intersec_label`` (PG-FDD order, see SUBGROUP_NAMES).
    `column_map` maps these canonical names to the file's column names (e.g. ``{"iswhite": "isblack", "isblack":
    "iswhite"}`` for a file whose white/black columns are swapped); mapping ``intersec_label`` to None derives the
    subgroup from the attributes for files without that column. Extra columns (e.g. ``spe_label``) are ignored.
    Relative paths resolve against `data_root` (default: the CSV's folder).
    """
    path = _require_file(csv_path)
    root = Path(data_root) if data_root is not None else path.parent
    unknown = set(column_map or {}) - set(PGFDD_COLUMNS)
    if unknown:
        raise ValueError(f"column_map has unknown key(s) {sorted(unknown)}; canonical names are {list(PGFDD_COLUMNS)}")
    cols = {c: c for c in PGFDD_COLUMNS} | dict(column_map or {})
    required = [v for v in cols.values() if v is not None]
    files = _MissingFiles(path, check_files, on_missing)
    rows = []
    for line, r in _csv_rows(path, required):
        label = _parse_int(path, line, cols["label"], r[cols["label"]], (0, 1))
        attr = {c: _parse_int(path, line, cols[c], r[cols[c]], (-1, 1)) for c in PGFDD_COLUMNS[2:6]}
        gender = 0 if attr["ismale"] == 1 else 1
        races = [i for i, c in enumerate(("isasian", "iswhite", "isblack")) if attr[c] == 1]
        if len(races) > 1:
            names = [cols[("isasian", "iswhite", "isblack")[i]] for i in races]
            raise DataFormatError(path, f"more than one race column is 1: {names}", line=line)
        race = races[0] if races else 3
        subgroup = gender * 4 + race
        if cols["intersec_label"] is not None:
            given = _parse_int(path, line, cols["intersec_label"], r[cols["intersec_label"]], range(8))
            if given != subgroup:
                raise DataFormatError(
                    path,
                    f"{cols['intersec_label']}={given} ({SUBGROUP_NAMES[given]}) disagrees with the attribute columns "
                    f"({SUBGROUP_NAMES[subgroup]} = {subgroup}); if this file's iswhite/isblack columns are swapped, "
                    "pass column_map={'iswhite': 'isblack', 'isblack': 'iswhite'}",
                    line=line,
                )
        image = _resolve(root, r[cols["img_path"]], path, line, cols["img_path"])
        if files.keep(image, line):
            rows.append(FairnessRow(image, label, gender, race, subgroup, line))
    files.report()
    return rows


def read_spai_csv(
    csv_path: str | Path,
    root: str | Path | None = None,
    split: str | None = None,
    check_files: bool = True,
    on_missing: str = "error",
    path_column: str = "image",
    class_column: str = "class",
    split_column: str = "split",
) -> list[SpaiRow]:
    """Read a SPAI CSV ``image,class,split`` (class 0 real / 1 fake). Relative paths resolve against `root`
    (default: the CSV's folder, as SPAI's ``--csv-root-dir``). `split` keeps only that split."""
    path = _require_file(csv_path)
    base = Path(root) if root is not None else path.parent
    wanted = _check_splits(split)
    files = _MissingFiles(path, check_files, on_missing)
    rows = []
    for line, r in _csv_rows(path, (path_column, class_column, split_column)):
        label = _parse_int(path, line, class_column, r[class_column], (0, 1))
        row_split = _parse_split(path, line, split_column, r[split_column])
        if wanted is not None and row_split not in wanted:
            continue
        image = _resolve(base, r[path_column], path, line, path_column)
        if files.keep(image, line):
            rows.append(SpaiRow(image, label, row_split, line))
    files.report()
    return rows


def read_deepfakebench_json(
    json_path: str | Path,
    label_dict: Mapping[str, int],
    split: str,
    data_root: str | Path | None = None,
    compression: str = "c23",
    check_files: bool = True,
    on_missing: str = "error",
) -> list[FrameRow]:
    """Read a DeepfakeBench dataset JSON into one row per frame of `split`.

    Nesting: ``{dataset: {label_name: {train|val|test: {[c23|c40]: {video: {"label": name, "frames": [paths]}}}}}}``;
    the compression level (FF++ only) is chosen by `compression`. Each video's ``label`` maps through `label_dict`
    (DeepfakeBench ``train_config.yaml``, e.g. ``{"FF-real": 0, "FF-DF": 1}``). Relative frame paths resolve against
    `data_root` (default: the JSON's folder). Errors name the JSON key path.
    """
    path = _require_file(json_path)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    root = Path(data_root) if data_root is not None else path.parent
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(path, f"not valid JSON ({e})") from e

    def expect_dict(obj, key):
        if not isinstance(obj, dict) or not obj:
            raise DataFormatError(path, f"expected a non-empty object, got {type(obj).__name__}", key=key)
        return obj

    files = _MissingFiles(path, check_files, on_missing)
    rows = []
    for dataset, by_label in expect_dict(data, "").items():
        for label_name, by_split in expect_dict(by_label, dataset).items():
            key = f"{dataset}.{label_name}"
            if split not in expect_dict(by_split, key):
                raise DataFormatError(path, f"no {split!r} split (has {sorted(by_split)})", key=key)
            key += f".{split}"
            videos = expect_dict(by_split[split], key)
            if not any(isinstance(v, dict) and "frames" in v for v in videos.values()):  # compression level
                if compression not in videos:
                    raise DataFormatError(path, f"no {compression!r} level (has {sorted(videos)})", key=key)
                key += f".{compression}"
                videos = expect_dict(videos[compression], key)
            for video, info in videos.items():
                vkey = f"{key}.{video}"
                if not isinstance(info, dict) or "frames" not in info or "label" not in info:
                    raise DataFormatError(path, "a video entry needs 'label' and 'frames'", key=vkey)
                if info["label"] not in label_dict:
                    raise DataFormatError(
                        path, f"label {info['label']!r} not in label_dict {sorted(label_dict)}", key=vkey + ".label"
                    )
                if not isinstance(info["frames"], list):
                    raise DataFormatError(path, "'frames' must be a list of paths", key=vkey + ".frames")
                for i, frame in enumerate(info["frames"]):
                    if not isinstance(frame, str) or not frame:
                        raise DataFormatError(path, f"bad frame path {frame!r}", key=f"{vkey}.frames[{i}]")
                    p = Path(frame) if Path(frame).is_absolute() else root / frame
                    if files.keep(p, key=f"{vkey}.frames[{i}]"):
                        rows.append(FrameRow(p, int(label_dict[info["label"]]), dataset, video))
    files.report()
    return rows
