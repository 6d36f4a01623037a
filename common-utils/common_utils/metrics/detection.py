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


class CocoImageEval:
    """COCOeval's per-image matching (bbox, area "all", 100 detections), kept to re-aggregate AP@[.5:.95] and AR@100
    over any multiset of the images: a bootstrap over images without re-running the matching.

    ``summary()`` equals :func:`coco_ap_ar`'s ``AP`` and ``AR100``; ``summary(counts)`` equals COCOeval run on a
    dataset in which image ``image_ids[i]`` appears ``counts[i]`` times (copies adjacent, in ``image_ids`` order).
    Categories are averaged as COCOeval does (those without ground truth in the multiset are left out).
    """

    def __init__(self, gt, detections: Iterable[dict], cat_ids: Sequence[int] | None = None,
                 img_ids: Sequence[int] | None = None, *, convention: str = DEFAULT_CONVENTION):
        import numpy as np

        check_convention(convention, "CocoImageEval")
        coco_gt = _as_coco(gt)
        dets = [dict(d) for d in detections]
        with contextlib.redirect_stdout(io.StringIO()):
            if dets:
                coco_dt = coco_gt.loadRes(dets)
            else:  # loadRes crashes on an empty list: an empty result set with the ground truth's images
                coco_dt = COCO()
                coco_dt.dataset = {"images": coco_gt.dataset["images"], "annotations": [],
                                   "categories": coco_gt.dataset.get("categories", [])}
                coco_dt.createIndex()
            evaluator = COCOeval(coco_gt, coco_dt, "bbox")
            if cat_ids is not None:
                evaluator.params.catIds = list(cat_ids)
            if img_ids is not None:
                evaluator.params.imgIds = list(img_ids)
            evaluator.evaluate()
        p = evaluator.params
        self.image_ids = [int(i) for i in p.imgIds]  # COCOeval's order: ascending ids
        self.cat_ids = [int(c) for c in p.catIds]
        self.rec_thrs = np.asarray(p.recThrs)
        n_img, n_area, n_iou = len(p.imgIds), len(p.areaRng), len(p.iouThrs)
        max_det = p.maxDets[-1]
        self._per_cat = []
        for k in range(len(self.cat_ids)):
            scores, matches, ignore, n_gt, n_det = [], [], [], np.zeros(n_img, np.int64), np.zeros(n_img, np.int64)
            for i in range(n_img):
                e = evaluator.evalImgs[k * n_area * n_img + i]  # area index 0 = "all"
                if e is None:
                    continue
                d = len(e["dtScores"][:max_det])
                scores.append(np.asarray(e["dtScores"][:max_det], dtype=np.float64))
                matches.append(np.asarray(e["dtMatches"][:, :max_det]) > 0)
                ignore.append(np.asarray(e["dtIgnore"][:, :max_det]).astype(bool))
                n_gt[i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
                n_det[i] = d
            self._per_cat.append(_joined(scores, matches, ignore, n_gt, n_det, n_iou))

    def state(self) -> dict:
        """This evaluation as lists and tensors, what a weights-only ``torch.load`` reads back (to send it between
        ranks with ``common_utils.train.all_gather_objects``); :meth:`from_state` is the inverse.

        Per category: scores ``[D]`` float64, matches and ignore flags ``[T, D]`` bool (T IoU thresholds, D the
        detections of every image, image by image), ground-truth and detection counts ``[N]`` int64 per image."""
        import torch

        return {"image_ids": list(self.image_ids), "cat_ids": list(self.cat_ids),
                "rec_thrs": torch.from_numpy(self.rec_thrs.copy()),
                "per_cat": [[torch.from_numpy(a.copy()) for a in arrays[:5]] for arrays in self._per_cat]}

    @classmethod
    def from_state(cls, state: dict) -> CocoImageEval:
        import numpy as np

        ev = cls.__new__(cls)
        ev.image_ids, ev.cat_ids = list(state["image_ids"]), list(state["cat_ids"])
        ev.rec_thrs = state["rec_thrs"].numpy()
        ev._per_cat = [_with_starts(*(np.asarray(t.numpy()) for t in arrays)) for arrays in state["per_cat"]]
        return ev

    @classmethod
    def merge(cls, parts: Sequence[CocoImageEval]) -> CocoImageEval:
        """One evaluation over the images of ``parts`` (evaluations of disjoint image sets with the same categories,
        e.g. one per rank), equal to evaluating all the images at once: images in COCOeval's order (ascending id)."""
        import numpy as np

        if not parts:
            raise ValueError("CocoImageEval.merge needs at least one part")
        first = parts[0]
        for part in parts[1:]:
            if part.cat_ids != first.cat_ids or not np.array_equal(part.rec_thrs, first.rec_thrs):
                raise ValueError(f"CocoImageEval.merge: parts evaluate different categories ({first.cat_ids} vs "
                                 f"{part.cat_ids}) or recall thresholds; build every part with the same cat_ids")
        where = {}  # image id -> (part index, position in that part)
        for j, part in enumerate(parts):
            for i, image_id in enumerate(part.image_ids):
                if image_id in where:
                    raise ValueError(f"CocoImageEval.merge: image {image_id} is in two parts; shard the images")
                where[image_id] = (j, i)
        merged = cls.__new__(cls)
        merged.image_ids, merged.cat_ids, merged.rec_thrs = sorted(where), list(first.cat_ids), first.rec_thrs
        merged._per_cat = []
        for k in range(len(first.cat_ids)):
            scores, matches, ignore, n_gt, n_det = [], [], [], [], []
            for image_id in merged.image_ids:
                j, i = where[image_id]
                s, m, ig, gt_count, det_count, start = parts[j]._per_cat[k]
                span = slice(start[i], start[i] + det_count[i])
                scores.append(s[span])
                matches.append(m[:, span])
                ignore.append(ig[:, span])
                n_gt.append(gt_count[i])
                n_det.append(det_count[i])
            merged._per_cat.append(_joined(scores, matches, ignore, n_gt, n_det, first._per_cat[k][1].shape[0]))
        return merged

    def summary(self, counts=None) -> dict:
        """``{"AP", "AR100"}`` over the images taken ``counts[i]`` times each (all once when None); None when no
        category has ground truth."""
        import numpy as np

        n = len(self.image_ids)
        counts = np.ones(n, np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
        if counts.shape != (n,):
            raise ValueError(f"counts must have one entry per image ({n}), got shape {counts.shape}")
        seq = np.repeat(np.arange(n), counts)
        aps, ars = [], []
        for scores, matches, ignore, n_gt, n_det, start in self._per_cat:
            npig = int(n_gt[seq].sum())
            if npig == 0:
                continue
            lens = n_det[seq]
            total = int(lens.sum())
            first = np.repeat(start[seq] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
            idx = first + np.arange(total)
            order = np.argsort(-scores[idx], kind="mergesort")
            dtm, dtig = matches[:, idx][:, order], ignore[:, idx][:, order]
            tp = np.cumsum(dtm & ~dtig, axis=1, dtype=np.float64)
            fp = np.cumsum(~dtm & ~dtig, axis=1, dtype=np.float64)
            precision = np.zeros((len(tp), len(self.rec_thrs)))
            recall = np.zeros(len(tp))
            if total:
                rc = tp / npig
                pr = tp / (fp + tp + np.spacing(1))
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # COCOeval's precision envelope
                recall = rc[:, -1]
                for t in range(len(tp)):
                    pos = np.searchsorted(rc[t], self.rec_thrs, side="left")
                    valid = pos < total
                    precision[t, valid] = pr[t, pos[valid]]
            aps.append(precision.mean())
            ars.append(recall.mean())
        if not aps:
            return {"AP": None, "AR100": None}
        return {"AP": float(np.mean(aps)), "AR100": float(np.mean(ars))}


def _joined(scores: list, matches: list, ignore: list, n_gt, n_det, n_iou: int) -> tuple:
    """One category's per-image pieces (scores ``[d_i]``, flags ``[T, d_i]``) joined image after image."""
    import numpy as np

    return _with_starts(np.concatenate(scores) if scores else np.zeros(0),
                        np.concatenate(matches, axis=1) if matches else np.zeros((n_iou, 0), bool),
                        np.concatenate(ignore, axis=1) if ignore else np.zeros((n_iou, 0), bool),
                        np.asarray(n_gt, np.int64), np.asarray(n_det, np.int64))


def _with_starts(scores, matches, ignore, n_gt, n_det) -> tuple:
    """One category's arrays of :class:`CocoImageEval` plus each image's first detection index ``[N]``."""
    import numpy as np

    return scores, matches, ignore, n_gt, n_det, np.concatenate([[0], np.cumsum(n_det)[:-1]]).astype(np.int64)
