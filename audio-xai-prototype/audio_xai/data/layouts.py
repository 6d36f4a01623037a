"""The corpora as distributed: which files hold the utterances, their keys and (where they exist) segment labels.

``data.layout`` names the layout of ``data.root``:

- ``asvspoof2019``: ``LA/ASVspoof2019_LA_{train,dev,eval}/flac/<utt>.flac``,
  ``LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt`` (``SPK UTT - ATTACK key``)
  and, optionally, ``segment_labels/{split}_seglab_<res>.npy`` (the synthetic ``partial_spoof_audio`` set).
- ``partialspoof``: PartialSpoof's ``database/`` folder (Zenodo 5766198): ``{train,dev,eval}/con_wav/<utt>.wav``,
  ``protocols/PartialSpoof_LA_cm_protocols/PartialSpoof.LA.cm.{split}.trl.txt`` (same 5 fields) and
  ``segment_labels/{split}_seglab_<res>.npy`` at 0.01-0.64 s.
- ``asvspoof2021_la`` / ``asvspoof2021_df``: ``ASVspoof2021_{LA,DF}_eval/flac/<utt>.flac`` and the key package's
  ``keys/{LA,DF}/CM/trial_metadata.txt`` (``SPK UTT codec channel ATTACK key trim phase ...``); eval only, the
  ``data.phase`` trials (``eval`` as the official ``--subset eval``; ``all`` keeps every trial).
- ``in_the_wild``: ``release_in_the_wild/``: ``meta.csv`` (``file,speaker,label`` with ``bona-fide``/``spoof``) and
  the wav files it names; eval only.

Labels follow tcm_add: 1 = bona fide, 0 = spoof. Segment labels: PartialSpoof's 1 = bona fide per segment.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np
from common_utils.data import DataFormatError, read_asvspoof_protocol, read_partialspoof_labels

LAYOUTS = ("asvspoof2019", "partialspoof", "asvspoof2021_la", "asvspoof2021_df", "in_the_wild")
SPLITS = ("train", "dev", "eval")
PHASES = ("eval", "progress", "hidden_track", "all")
KEYS = {"bonafide": 1, "bona-fide": 1, "spoof": 0}
_2019_PROTOCOL = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


class Utterance(NamedTuple):
    utt_id: str
    path: Path
    label: int   # 1 bona fide, 0 spoof
    attack: str  # "-" for bona fide where the key says so


def read_asvspoof2021_keys(path, phase: str = "eval") -> list[Utterance]:
    """ASVspoof 2021 LA/DF ``trial_metadata.txt`` -> utterances of ``phase`` (``all``: every trial); ``path`` of the
    audio is left empty (the layout fills it in). Lines: ``SPK UTT codec channel ATTACK KEY trim PHASE [...]``."""
    if phase not in PHASES:
        raise ValueError(f"data.phase must be one of {PHASES}, got {phase!r}")
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "key file not found (the ASVspoof 2021 keys package's "
                                    "keys/<LA|DF>/CM/trial_metadata.txt)")
    rows, seen = [], {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 8:
            raise DataFormatError(path, f"expected >= 8 fields 'SPK UTT codec channel ATTACK KEY trim PHASE', got "
                                        f"{len(fields)}", line_no)
        utt, attack, key, trial_phase = fields[1], fields[4], fields[5], fields[7]
        if key not in ("bonafide", "spoof"):
            raise DataFormatError(path, f"bad key {key!r} in field 6; expected 'bonafide' or 'spoof'", line_no)
        if utt in seen:
            raise DataFormatError(path, f"duplicate utterance {utt!r} (first on line {seen[utt]})", line_no)
        seen[utt] = line_no
        if phase == "all" or trial_phase == phase:
            rows.append(Utterance(utt, Path(), KEYS[key], attack))
    if not rows:
        raise DataFormatError(path, f"no trials of phase {phase!r} (data.phase: eval | progress | hidden_track | all)")
    return rows


def read_in_the_wild_meta(path) -> list[Utterance]:
    """In-the-Wild ``meta.csv`` (header ``file,speaker,label``; label ``bona-fide`` or ``spoof``) -> utterances with
    the wav paths beside the csv; utt_id = the file name without extension."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "meta.csv not found (the In-the-Wild release folder holds meta.csv and the wavs)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"file", "label"} - set(reader.fieldnames or ())
        if missing:
            raise DataFormatError(path, f"header lacks {sorted(missing)}; expected 'file,speaker,label'", 1)
        rows, seen = [], {}
        for line_no, row in enumerate(reader, start=2):
            name, key = (row["file"] or "").strip(), (row["label"] or "").strip()
            if not name:
                raise DataFormatError(path, "empty 'file' field", line_no)
            if key not in ("bona-fide", "spoof"):
                raise DataFormatError(path, f"bad label {key!r}; expected 'bona-fide' or 'spoof'", line_no)
            if name in seen:
                raise DataFormatError(path, f"duplicate file {name!r} (first on line {seen[name]})", line_no)
            seen[name] = line_no
            rows.append(Utterance(Path(name).stem, path.parent / name, KEYS[key], "-" if key == "bona-fide" else "?"))
    if not rows:
        raise DataFormatError(path, "no utterances listed")
    return rows


def _eval_only(layout: str, split: str) -> None:
    if split != "eval":
        raise ValueError(f"data.layout={layout} has only the eval split (it is a test corpus); got split {split!r}")


def list_utterances(root, layout: str, split: str, phase: str = "eval") -> list[Utterance]:
    """Every utterance of ``split`` under ``root`` in ``layout`` (module docstring), in key-file order."""
    if layout not in LAYOUTS:
        raise ValueError(f"data.layout must be one of {LAYOUTS}, got {layout!r}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    root = Path(root)
    if layout == "asvspoof2019":
        rows = read_asvspoof_protocol(root / "LA" / "ASVspoof2019_LA_cm_protocols"
                                      / f"ASVspoof2019.LA.cm.{_2019_PROTOCOL[split]}.txt")
        audio = root / "LA" / f"ASVspoof2019_LA_{split}" / "flac"
        return [Utterance(r.utt_id, audio / f"{r.utt_id}.flac", r.label, r.attack) for r in rows]
    if layout == "partialspoof":
        rows = read_asvspoof_protocol(root / "protocols" / "PartialSpoof_LA_cm_protocols"
                                      / f"PartialSpoof.LA.cm.{split}.trl.txt")
        return [Utterance(r.utt_id, root / split / "con_wav" / f"{r.utt_id}.wav", r.label, r.attack) for r in rows]
    _eval_only(layout, split)
    if layout == "in_the_wild":
        return read_in_the_wild_meta(root / "meta.csv")
    track = layout.rsplit("_", 1)[1].upper()
    audio = root / f"ASVspoof2021_{track}_eval" / "flac"
    rows = read_asvspoof2021_keys(root / "keys" / track / "CM" / "trial_metadata.txt", phase)
    return [r._replace(path=audio / f"{r.utt_id}.flac") for r in rows]


def segment_label_file(root, layout: str, split: str, resolution: float = 0.02) -> Path | None:
    """The PartialSpoof-format segment-label file of ``split`` at ``resolution`` seconds, or None for a layout that has
    none (ASVspoof 2021, In-the-Wild)."""
    if layout in ("asvspoof2019", "partialspoof"):
        return Path(root) / "segment_labels" / f"{split}_seglab_{resolution:g}.npy"
    return None


def read_segment_labels(root, layout: str, split: str, resolution: float = 0.02) -> dict[str, np.ndarray] | None:
    """{utt: labels (1 = bona fide) per ``resolution`` s} when the layout's label file exists, else None."""
    path = segment_label_file(root, layout, split, resolution)
    return read_partialspoof_labels(path) if path is not None and path.is_file() else None


__all__ = ["LAYOUTS", "PHASES", "Utterance", "list_utterances", "read_asvspoof2021_keys", "read_in_the_wild_meta",
           "read_segment_labels", "segment_label_file"]
