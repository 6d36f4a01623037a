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


def _duplicated(gt, dets, counts):
    """gt and dets with image i present counts[i] times (copies adjacent, fresh ids in order)."""
    images, anns, out, new_id = [], [], [], 0
    for im, c in zip(gt["images"], counts):
        for _ in range(c):
            new_id += 1
            images.append(dict(im, id=new_id))
            for a in gt["annotations"]:
                if a["image_id"] == im["id"]:
                    anns.append(dict(a, id=len(anns) + 1, image_id=new_id))
            out += [dict(d, image_id=new_id) for d in dets if d["image_id"] == im["id"]]
    return dict(gt, images=images, annotations=anns), out


@pytest.mark.parametrize("cat_ids", [None, [1]])
def test_image_eval_reaggregates_like_pycocotools(cat_ids):
    from common_utils.metrics.detection import CocoImageEval

    gt, dets = _scene(3)
    ev = CocoImageEval(gt, dets, cat_ids=cat_ids)
    ref = _reference(gt, dets, cat_ids)
    assert ev.summary() == {"AP": pytest.approx(ref[0], abs=1e-12), "AR100": pytest.approx(ref[8], abs=1e-12)}
    counts = np.array([2, 0, 1, 3, 0, 1, 1, 2])  # a bootstrap draw: image 4 three times, images 2 and 5 left out
    dup_gt, dup_dets = _duplicated(gt, dets, counts)
    ref = _reference(dup_gt, dup_dets, cat_ids)
    assert ev.summary(counts) == {"AP": pytest.approx(ref[0], abs=1e-12), "AR100": pytest.approx(ref[8], abs=1e-12)}
    assert ev.summary(counts)["AP"] != pytest.approx(ev.summary()["AP"])


def test_image_eval_without_detections_or_ground_truth():
    from common_utils.metrics.detection import CocoImageEval

    gt, dets = _scene(4)
    assert CocoImageEval(gt, []).summary() == {"AP": 0.0, "AR100": 0.0}
    ev = CocoImageEval(gt, dets, cat_ids=[1])
    no_gt = np.array([0] * 8)
    assert ev.summary(no_gt) == {"AP": None, "AR100": None}
    with pytest.raises(ValueError, match="one entry per image"):
        ev.summary([1, 2])


@pytest.mark.parametrize("cat_ids, world", [(None, 2), ([1], 3), ([1], 9)])
def test_image_eval_merged_from_shards_equals_one_evaluation(cat_ids, world):
    """Each rank evaluates images rank, rank + world, ... (9 ranks: one gets no image); the merged state, sent
    through a weights-only torch.save/load as between ranks, re-aggregates exactly like one evaluation."""
    import torch
    from common_utils.metrics.detection import CocoImageEval

    gt, dets = _scene(5)
    ids = sorted(im["id"] for im in gt["images"])
    parts = []
    for rank in range(world):
        shard = ids[rank::world]
        mine = [d for d in dets if d["image_id"] in shard]
        buf = io.BytesIO()
        torch.save(CocoImageEval(gt, mine, cat_ids=cat_ids, img_ids=shard).state(), buf)
        buf.seek(0)
        parts.append(CocoImageEval.from_state(torch.load(buf, weights_only=True)))
    merged = CocoImageEval.merge(parts[::-1])  # the order of the parts does not matter
    whole = CocoImageEval(gt, dets, cat_ids=cat_ids)
    assert merged.image_ids == whole.image_ids == ids
    assert merged.summary() == whole.summary()
    counts = np.random.default_rng(0).multinomial(len(ids), [1 / len(ids)] * len(ids))
    assert merged.summary(counts) == whole.summary(counts)


def test_image_eval_merge_refuses_overlapping_or_mismatched_parts():
    from common_utils.metrics.detection import CocoImageEval

    gt, dets = _scene(6)
    a = CocoImageEval(gt, dets, cat_ids=[1], img_ids=[1, 2, 3])
    with pytest.raises(ValueError, match="image 3 is in two parts"):
        CocoImageEval.merge([a, CocoImageEval(gt, dets, cat_ids=[1], img_ids=[3, 4])])
    with pytest.raises(ValueError, match="different categories"):
        CocoImageEval.merge([a, CocoImageEval(gt, dets, cat_ids=[1, 2], img_ids=[4, 5])])
