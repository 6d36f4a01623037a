import contextlib
import io

import numpy as np
import pytest
from common_utils.metrics import coco_ap_ar
from common_utils.metrics.detection import STAT_NAMES
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _scene(seed):
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, 9):
        images.append({"id": i, "width": 200, "height": 200, "file_name": f"{i}.png"})
        for _ in range(rng.integers(1, 4)):
            x, y = rng.uniform(0, 120, 2)
            w, h = rng.uniform(20, 70, 2)
            cat = int(rng.choice([1, 2]))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            jitter = rng.normal(0, 4, 4)
            dets.append({"image_id": i, "category_id": cat, "bbox": list(np.array([x, y, w, h]) + jitter),
                         "score": float(rng.uniform(0.3, 1))})
        dets.append({"image_id": i, "category_id": 1, "bbox": [150, 150, 30, 30], "score": float(rng.uniform())})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "x"}]}
    return gt, dets


def _reference(gt, dets, cat_ids=None):
    coco = COCO()
    coco.dataset = dict(gt, info={})
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        if cat_ids:
            ev.params.catIds = cat_ids
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats


@pytest.mark.parametrize("cat_ids", [None, [1]])
def test_matches_pycocotools_and_tolerates_missing_info(cat_ids):
    gt, dets = _scene(0)
    assert "info" not in gt
    ours = coco_ap_ar(gt, dets, cat_ids=cat_ids)
    ref = _reference(gt, dets, cat_ids)
    for name, value in zip(STAT_NAMES, ref):
        assert ours[name] == (pytest.approx(value) if value >= 0 else None)
    assert 0 < ours["AP"] <= 1


def test_empty_results_give_zeros_and_file_input(tmp_path):
    import json

    gt, _ = _scene(1)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    assert coco_ap_ar(path, []) == {name: 0.0 for name in STAT_NAMES}
    with pytest.raises(ValueError, match="gt_missing.json"):
        coco_ap_ar(tmp_path / "gt_missing.json", [])


def test_convention_names_are_checked():
    gt, dets = _scene(2)
    assert coco_ap_ar(gt, dets, convention="deepfakebench") == coco_ap_ar(gt, dets)
    with pytest.raises(ValueError, match="unknown convention 'coco' for coco_ap_ar"):
        coco_ap_ar(gt, dets, convention="coco")
