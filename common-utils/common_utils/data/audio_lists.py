"""Readers for ASVspoof 2019 LA CM protocols and PartialSpoof segment labels.

Label conventions are those of the formats: bona fide = 1, spoof = 0 (tcm_add ``read_metadata``; PartialSpoof
``*_seglab_0.02.npy``). Convert at the project boundary if a model wants 1 = fake.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import DataFormatError
from .text import Duplicates, read_text, require_file

PROTOCOL_KEYS = {"bonafide": 1, "spoof": 0}


class ProtocolRow(NamedTuple):
    speaker: str
    utt_id: str
    attack: str  # "-" for bona fide, A01..A19 for spoof
    key: str  # "bonafide" | "spoof"
    label: int  # 1 bona fide, 0 spoof


def read_asvspoof_protocol(path: str | Path, allow_duplicates: bool = False) -> list[ProtocolRow]:
    """Read an ASVspoof 2019 LA CM protocol: one ``SPEAKER UTT_ID - ATTACK KEY`` line per utterance.

    UTF-8 (BOM accepted), LF or CRLF, fields separated by any whitespace, blank lines ignored. A bona fide line has
    attack ``-``, a spoof line an attack id. A repeated utterance is an error naming both lines unless
    ``allow_duplicates=True`` (then it is kept and the count logged).
    """
    path = require_file(path)
    rows = []
    seen = Duplicates(path, "utterance", allow_duplicates)
    for line_no, line in enumerate(read_text(path).split("\n"), start=1):
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
        if (attack == "-") != (key == "bonafide"):
            raise DataFormatError(path, f"attack {attack!r} does not fit key {key!r}: bona fide lines have attack "
                                        "'-', spoof lines an attack id (e.g. A07); are the columns shifted?", line_no)
        seen.see(utt, line_no)
        rows.append(ProtocolRow(speaker, utt, attack, key, PROTOCOL_KEYS[key]))
    if not rows:
        raise DataFormatError(path, "no protocol lines; expected 'SPEAKER UTT_ID - ATTACK KEY' per utterance")
    seen.report()
    return rows


_reconstruct = (getattr(np, "_core", None) or np.core).multiarray._reconstruct  # numpy 2 moved core to _core
# what np.save of a dict of string arrays pickles: numpy arrays and dtypes, dicts and strings
NPY_DICT_GLOBALS = {
    "numpy.core.multiarray._reconstruct": _reconstruct,
    "numpy._core.multiarray._reconstruct": _reconstruct,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
    "builtins.dict": dict,
    "builtins.str": str,
}


def read_partialspoof_labels(npy_path: str | Path) -> dict[str, np.ndarray]:
    """Read PartialSpoof ``*_seglab_0.02.npy`` -> {utt_id: int8 array [n_segments]}, 1 = bona fide, 0 = spoof.

    The file is a pickled 0-d object array holding {utt_id: array of '0'/'1' strings} (one per 20 ms segment); it is
    read with safe_load's restricted unpickler allowing only numpy arrays, dicts and strings (never allow_pickle).
    """
    path = require_file(npy_path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        except (ValueError, EOFError) as e:
            raise DataFormatError(path, f"not a .npy file ({e}); give PartialSpoof's *_seglab_0.02.npy") from e
        if dtype != np.dtype(object):
            raise DataFormatError(path, f"expected a pickled dict (object array), got a {dtype} array of shape {shape}")
        from ..safe_load import restricted_unpickler  # here: safe_load imports this package

        try:
            obj = restricted_unpickler(NPY_DICT_GLOBALS)(f).load()
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a format error for this file
            raise DataFormatError(path, f"cannot unpickle segment labels: {e}") from e
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict) or not obj:
        raise DataFormatError(path, f"expected a non-empty dict {{utt_id: labels}}, got {type(obj).__name__} "
                                    f"{'(empty)' if isinstance(obj, dict) else ''}".rstrip())
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
