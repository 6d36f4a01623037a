"""Readers for ASVspoof 2019 LA CM protocols and PartialSpoof segment labels.

Label conventions are those of the formats: bona fide = 1, spoof = 0 (tcm_add ``read_metadata``; PartialSpoof
``*_seglab_0.02.npy``). Convert at the project boundary if a model wants 1 = fake.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import DataFormatError
from .image_lists import _require_file

PROTOCOL_KEYS = {"bonafide": 1, "spoof": 0}


class ProtocolRow(NamedTuple):
    speaker: str
    utt_id: str
    attack: str  # "-" for bona fide, A01..A19 for spoof
    key: str  # "bonafide" | "spoof"
    label: int  # 1 bona fide, 0 spoof


def read_asvspoof_protocol(path: str | Path) -> list[ProtocolRow]:
    """Read an ASVspoof 2019 LA CM protocol: one ``SPEAKER UTT_ID - ATTACK KEY`` line per utterance."""
    path = _require_file(path)
    rows, seen = [], {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 5:
                raise DataFormatError(
                    path, f"expected 5 fields 'SPEAKER UTT_ID - ATTACK KEY', got {len(fields)}", line_no
                )
            speaker, utt, _, attack, key = fields
            if key not in PROTOCOL_KEYS:
                raise DataFormatError(path, f"bad key {key!r}; expected 'bonafide' or 'spoof'", line_no)
            if utt in seen:
                raise DataFormatError(path, f"duplicate utterance {utt!r} (first on line {seen[utt]})", line_no)
            seen[utt] = line_no
            rows.append(ProtocolRow(speaker, utt, attack, key, PROTOCOL_KEYS[key]))
    if not rows:
        raise DataFormatError(path, "no protocol lines")
    return rows


def _reconstruct():
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays, dtypes, dicts and strings (what np.save of a dict of arrays needs)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("builtins", "dict"): lambda: dict,
        ("builtins", "str"): lambda: str,
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return self._ALLOWED[(module, name)]()


def read_partialspoof_labels(npy_path: str | Path) -> dict[str, np.ndarray]:
    """Read PartialSpoof ``*_seglab_0.02.npy`` -> {utt_id: int8 array [n_segments]}, 1 = bona fide, 0 = spoof.

    The file is a pickled 0-d object array holding {utt_id: array of '0'/'1' strings} (one per 20 ms segment); it is
    read with a restricted unpickler that only reconstructs numpy arrays, dicts and strings (never allow_pickle).
    """
    path = _require_file(npy_path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as e:
            raise DataFormatError(path, f"not a .npy file ({e})") from e
        if dtype != np.dtype(object):
            raise DataFormatError(path, f"expected a pickled dict (object array), got a {dtype} array of shape {shape}")
        try:
            obj = _RestrictedUnpickler(f).load()
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a format error for this file
            raise DataFormatError(path, f"cannot unpickle segment labels: {e}") from e
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict):
        raise DataFormatError(path, f"expected a dict {{utt_id: labels}}, got {type(obj).__name__}")
    labels = {}
    for utt, seg in obj.items():
        if not isinstance(utt, str):
            raise DataFormatError(path, f"utterance id must be a string, got {utt!r}")
        arr = np.asarray(seg)
        if arr.ndim != 1 or arr.size == 0:
            raise DataFormatError(path, f"segment labels must be a non-empty 1-D array, got shape {arr.shape}", key=utt)
        text = arr.astype(str)
        bad = ~np.isin(text, ["0", "1"])
        if bad.any():
            raise DataFormatError(path, f"segment labels must be '0'/'1', found {str(text[bad][0])!r}", key=utt)
        labels[utt] = (text == "1").astype(np.int8)
    return labels
