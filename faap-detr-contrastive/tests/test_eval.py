"""Evaluation: per-gender AP/AR equal to pycocotools run directly; report table and figures."""
import contextlib
import io
import json

import pytest
from faap_detr.datasets.gender_coco import GenderCocoDataset, collate
from faap_detr.engine import predict
from faap_detr.main import build_frozen_detr, evaluate, load_cfg, load_generator, train
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader


def _pycocotools(gt_path, dets, cat_ids):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        if cat_ids:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_eval_matches_pycocotools(tiny_cfg_args, tmp_path):
    path, ov = tiny_cfg_args
    run = train(load_cfg(path, ov + ["train.epochs=1"]))
    ckpt = run / "checkpoints" / "epoch_0000.pth"
    cfg = load_cfg(path, ov + [f"eval.checkpoint={ckpt}", "data.eval_split=val"])
    res = evaluate(cfg, tmp_path / "eval")
    assert res["epsilon"] == pytest.approx(cfg.epsilon.start)  # the epsilon stored in the checkpoint
    detr = build_frozen_detr(cfg)
    generator, eps, space = load_generator(ckpt)
    for gender in ("men", "women"):
        ds = GenderCocoDataset(cfg.data.root, "val", (gender,), cfg.data.image_size, cfg.data.max_size)
        loader = DataLoader(ds, batch_size=cfg.eval.batch_size, collate_fn=collate)  # same padding
        gt_path = ds.root / f"gender_{gender}_val.json"
        for key, gen in (("baseline", None), ("perturbed", generator)):
            stats = _pycocotools(gt_path, predict(detr, loader, "cpu", gen, space), [1])
            ours = res["per_gender"][gender][key]
            assert ours["AP"] == pytest.approx(stats[0], abs=1e-9)
            assert ours["AR100"] == pytest.approx(stats[8], abs=1e-9)
    table = res["table"]
    men, women = res["per_gender"]["men"], res["per_gender"]["women"]
    gap = table["gaps"][0]
    assert gap["baseline"] == pytest.approx(men["baseline"]["AP"] - women["baseline"]["AP"])
    assert gap["perturbed"] == pytest.approx(men["perturbed"]["AP"] - women["perturbed"]["AP"])
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["table"] == json.loads(json.dumps(table))
    md = (tmp_path / "eval" / "results.md").read_text()
    assert "AP Gap (M-F)" in md and "Female AR" in md
    assert (tmp_path / "eval" / "perturbation_women.png").stat().st_size > 0
    _, eps, space = load_generator(ckpt, epsilon=0.02)  # an explicit epsilon overrides the stored one
    assert eps == 0.02 and space == "pixel"
