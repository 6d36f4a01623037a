"""COCO detection AP/AR through pycocotools, robust to a missing ``info`` key and to empty result lists."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .conventions import DEFAULT_CONVENTION, check_convention

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _as_coco(gt) -> COCO:
    if isinstance(gt, COCO):
        gt.dataset.setdefault("info", {})
        return gt
    if isinstance(gt, (str, os.PathLike)):
        path = Path(gt)
        try:
            dataset = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read COCO ground truth {path}: {e}") from e
    else:
        dataset = copy.deepcopy(dict(gt))
    dataset.setdefault("info", {})  # pycocotools 2.0.9/2.0.10 loadRes needs it
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_ap_ar(gt, detections: Iterable[dict], cat_ids: Sequence[int] | None = None,
               img_ids: Sequence[int] | None = None, *, convention: str = DEFAULT_CONVENTION) -> dict:
    """Run COCOeval (bbox) and return its 12 summary statistics by name.

    ``detections`` are COCO results (``image_id, category_id, bbox=[x, y, w, h], score``); an empty list gives zeros
    (pycocotools itself crashes on it); a statistic without ground truth in its area range is ``None``.
    ``cat_ids``/``img_ids`` restrict the evaluation (e.g. ``cat_ids=[1]`` for person). COCOeval is the field's
    reference: every ``convention`` gives the same numbers.
    """
    check_convention(convention, "coco_ap_ar")
    coco_gt = _as_coco(gt)
    dets = [dict(d) for d in detections]
    if not dets:
        return {name: 0.0 for name in STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(dets)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        if cat_ids is not None:
            evaluator.params.catIds = list(cat_ids)
        if img_ids is not None:
            evaluator.params.imgIds = list(img_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # pycocotools writes -1 where a statistic is undefined (no ground truth in that area range): report None
    return {name: (float(v) if v >= 0 else None) for name, v in zip(STAT_NAMES, evaluator.stats)}
