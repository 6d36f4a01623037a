"""Validated readers for image lists: manifest CSV, PG-FDD fairness CSV, SPAI CSV and DeepfakeBench JSON.

Every error is a `DataFormatError` naming the file and the line (CSV, 1-based, header = line 1) or the JSON key path.
Files are UTF-8 (a byte-order mark is accepted) with LF or CRLF line ends; blank lines and spaces around fields are
ignored. A header without data rows, a repeated header column, an image listed twice or in two splits are errors
naming both places (``allow_duplicates=True`` keeps repeated images and logs their number).
With ``check_files=True`` every listed image must exist; ``on_missing="skip"`` drops rows whose image is missing
and logs how many were dropped instead of raising.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from .errors import DataFormatError
from .text import Duplicates, normalised, read_json, read_text, require_file

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
COMPRESSION_LEVELS = {"raw", "c23", "c40"}  # DeepfakeBench's FaceForensics++ levels
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


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line, row) for each non-blank data row; checks the header holds every `required` column once.

    ``line`` is where the row starts. Quoting is strict (``"x"y`` is an error); a field holding a line break
    (an unclosed quote) or another control character is an error.
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""), strict=True)
    header, header_line, rows, start = None, 1, 0, 1
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not any(f.strip() for f in fields):  # blank line
                continue
            bad = next((f for f in fields if _CONTROL.search(f)), None)
            if bad is not None:
                what = "a line break (an unclosed quote?)" if "\n" in bad or "\r" in bad else "a control character"
                raise DataFormatError(path, f"field {bad[:40]!r} contains {what}; fix the row", line=line)
            if header is None:
                header, header_line = [c.strip() for c in fields], line
                _check_header(path, header, required, line)
                continue
            if len(fields) != len(header):
                raise DataFormatError(path, f"expected {len(header)} fields (header: {','.join(header)}), got "
                                            f"{len(fields)}", line=line)
            rows += 1
            yield line, {k: v.strip() for k, v in zip(header, fields)}
    except csv.Error as e:
        hint = " (an unclosed quote?)" if "end of data" in str(e) else ""
        raise DataFormatError(path, f"malformed CSV: {e}{hint}; fix the quoting", line=start) from None
    if header is None:
        raise DataFormatError(path, "empty file (no header)", line=1)
    if rows == 0:
        raise DataFormatError(path, "has a header but no data rows; list at least one image", line=header_line)


def _check_header(path: Path, header: list[str], required: Sequence[str], line: int) -> None:
    for i, name in enumerate(header):
        if name and name in header[:i]:
            raise DataFormatError(path, f"column {name!r} appears twice in the header (columns "
                                        f"{header.index(name) + 1} and {i + 1}); rename or remove one", line=line)
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFormatError(path, f"missing column(s) {missing}; header is {header}", line=line)


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
    allow_duplicates: bool = False,
) -> list[ManifestRow]:
    """Read a manifest CSV ``image_path,label,dataset,split`` (label 0 real / 1 fake, split train|val|test).

    Relative image paths resolve against `data_root` (default: the CSV's folder). `splits` keeps only those splits;
    the whole file is checked (an image in two splits is an error even when only one is read).
    """
    path = require_file(csv_path)
    root = Path(data_root) if data_root is not None else path.parent
    wanted = _check_splits(splits)
    files = _MissingFiles(path, check_files, on_missing)
    seen = Duplicates(path, "image_path", allow_duplicates)
    rows = []
    for line, r in _csv_rows(path, ("image_path", "label", "dataset", "split")):
        label = _parse_int(path, line, "label", r["label"], (0, 1))
        split = _parse_split(path, line, "split", r["split"])
        if not r["dataset"]:
            raise DataFormatError(path, "empty dataset", line=line)
        image = _resolve(root, r["image_path"], path, line, "image_path")
        seen.see(normalised(image), line, split)
        if wanted is not None and split not in wanted:
            continue
        if files.keep(image, line):
            rows.append(ManifestRow(image, label, r["dataset"], split, line))
    files.report()
    seen.report()
    return rows


PGFDD_COLUMNS = ("img_path", "label", "ismale", "isasian", "iswhite", "isblack", "intersec_label")


def read_pgfdd_csv(
    csv_path: str | Path,
    data_root: str | Path | None = None,
    column_map: Mapping[str, str | None] | None = None,
    check_files: bool = True,
    on_missing: str = "error",
    allow_duplicates: bool = False,
) -> list[FairnessRow]:
    """Read a PG-FDD fairness CSV ``img_path,label,ismale,isasian,iswhite,isblack,intersec_label``.

    Attribute columns are +-1; gender = 0 if ismale == 1 else 1; race = asian 0 / white 1 / black 2 / other 3 (none
    of the three set); subgroup = gender * 4 + race must equal ``intersec_label`` (PG-FDD order, see SUBGROUP_NAMES).
    `column_map` maps these canonical names to the file's column names (e.g. ``{"iswhite": "isblack", "isblack":
    "iswhite"}`` for a file whose white/black columns are swapped); mapping ``intersec_label`` to None derives the
    subgroup from the attributes for files without that column. Extra columns (e.g. ``spe_label``) are ignored.
    Relative paths resolve against `data_root` (default: the CSV's folder).
    """
    path = require_file(csv_path)
    root = Path(data_root) if data_root is not None else path.parent
    unknown = set(column_map or {}) - set(PGFDD_COLUMNS)
    if unknown:
        raise ValueError(f"column_map has unknown key(s) {sorted(unknown)}; canonical names are {list(PGFDD_COLUMNS)}")
    cols = {c: c for c in PGFDD_COLUMNS} | dict(column_map or {})
    required = [v for v in cols.values() if v is not None]
    files = _MissingFiles(path, check_files, on_missing)
    seen = Duplicates(path, cols["img_path"], allow_duplicates)
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
        seen.see(normalised(image), line)
        if files.keep(image, line):
            rows.append(FairnessRow(image, label, gender, race, subgroup, line))
    files.report()
    seen.report()
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
    allow_duplicates: bool = False,
) -> list[SpaiRow]:
    """Read a SPAI CSV ``image,class,split`` (class 0 real / 1 fake). Relative paths resolve against `root`
    (default: the CSV's folder, as SPAI's ``--csv-root-dir``). `split` keeps only that split; the whole file is
    checked (an image in two splits is an error even when only one is read)."""
    path = require_file(csv_path)
    base = Path(root) if root is not None else path.parent
    wanted = _check_splits(split)
    files = _MissingFiles(path, check_files, on_missing)
    seen = Duplicates(path, path_column, allow_duplicates)
    rows = []
    for line, r in _csv_rows(path, (path_column, class_column, split_column)):
        label = _parse_int(path, line, class_column, r[class_column], (0, 1))
        row_split = _parse_split(path, line, split_column, r[split_column])
        image = _resolve(base, r[path_column], path, line, path_column)
        seen.see(normalised(image), line, row_split)
        if wanted is not None and row_split not in wanted:
            continue
        if files.keep(image, line):
            rows.append(SpaiRow(image, label, row_split, line))
    files.report()
    seen.report()
    return rows


def read_deepfakebench_json(
    json_path: str | Path,
    label_dict: Mapping[str, int],
    split: str,
    data_root: str | Path | None = None,
    compression: str = "c23",
    check_files: bool = True,
    on_missing: str = "error",
    allow_duplicates: bool = False,
) -> list[FrameRow]:
    """Read a DeepfakeBench dataset JSON into one row per frame of `split`.

    Nesting: ``{dataset: {label_name: {train|val|test: {[c23|c40]: {video: {"label": name, "frames": [paths]}}}}}}``;
    the compression level (FF++ only) is chosen by `compression`. Each video's ``label`` maps through `label_dict`
    (DeepfakeBench ``train_config.yaml``, e.g. ``{"FF-real": 0, "FF-DF": 1}``). Relative frame paths resolve against
    `data_root` (default: the JSON's folder). Errors name the JSON key path.
    Every split present is validated: a frame listed twice in one split, or in ``train`` and in ``val``/``test``, is
    an error naming both key paths. A frame in both ``val`` and ``test`` is only logged: DeepfakeBench reuses the
    test videos as validation set for datasets that have none.
    """
    path = require_file(json_path)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    root = Path(data_root) if data_root is not None else path.parent
    data = read_json(path)

    def expect_dict(obj, key):
        if not isinstance(obj, dict) or not obj:
            raise DataFormatError(path, f"expected a non-empty object, got {type(obj).__name__}", key=key or "(top)")
        return obj

    def videos_of(by_split, key, name):
        """The {video: info} object of one split (at the chosen compression level) and its key path."""
        key = f"{key}.{name}"
        videos = expect_dict(by_split[name], key)
        if compression in videos or set(videos) <= COMPRESSION_LEVELS:  # FF++ has a compression level here
            if compression not in videos:
                raise DataFormatError(path, f"no {compression!r} level (has {sorted(videos)})", key=key)
            key += f".{compression}"
            videos = expect_dict(videos[compression], key)
        return videos, key

    files = _MissingFiles(path, check_files, on_missing)
    seen = {name: Duplicates(path, "frame", allow_duplicates) for name in SPLITS}  # repeats within a split
    first_split: dict[str, tuple[str, str]] = {}  # frame -> (split, key path) of its first listing
    shared_val_test = 0
    rows = []
    for dataset, by_label in expect_dict(data, "").items():
        for label_name, by_split in expect_dict(by_label, dataset).items():
            key = f"{dataset}.{label_name}"
            if split not in expect_dict(by_split, key):
                raise DataFormatError(path, f"no {split!r} split (has {sorted(by_split)})", key=key)
            for name in [s for s in SPLITS if s in by_split]:
                videos, skey = videos_of(by_split, key, name)
                for video, info in videos.items():
                    vkey = f"{skey}.{video}"
                    frames = _video_frames(path, info, vkey, label_dict)
                    for i, frame in enumerate(frames):
                        p = Path(frame) if Path(frame).is_absolute() else root / frame
                        fkey = f"{vkey}.frames[{i}]"
                        norm = normalised(p)
                        seen[name].see(norm, fkey)
                        other, other_key = first_split.setdefault(norm, (name, fkey))
                        if other != name:
                            if "train" not in (other, name):
                                shared_val_test += 1
                            elif not allow_duplicates:
                                raise DataFormatError(path, f"frame {frame!r} is in split {other!r} ({other_key}) "
                                                            f"and in split {name!r}: training frames leak into "
                                                            "evaluation; remove one (or pass allow_duplicates=True)",
                                                      key=fkey)
                        if name == split and files.keep(p, key=fkey):
                            rows.append(FrameRow(p, int(label_dict[info["label"]]), dataset, video))
    files.report()
    for dup in seen.values():
        dup.report()
    if shared_val_test:
        log.info("%s: %d frames are in both val and test (DeepfakeBench's val = test for datasets without a "
                 "validation split)", path, shared_val_test)
    return rows


def _video_frames(path: Path, info, vkey: str, label_dict: Mapping[str, int]) -> list[str]:
    if not isinstance(info, dict) or "frames" not in info or "label" not in info:
        raise DataFormatError(path, "a video entry needs 'label' and 'frames'", key=vkey)
    if not isinstance(info["label"], str) or info["label"] not in label_dict:
        raise DataFormatError(path, f"label {info['label']!r} not in label_dict {sorted(label_dict)}",
                              key=vkey + ".label")
    if not isinstance(info["frames"], list) or not info["frames"]:
        raise DataFormatError(path, "'frames' must be a non-empty list of paths", key=vkey + ".frames")
    for i, frame in enumerate(info["frames"]):
        if not isinstance(frame, str) or not frame.strip():
            raise DataFormatError(path, f"bad frame path {frame!r}", key=f"{vkey}.frames[{i}]")
    return info["frames"]
