"""Evaluation: per-gender AP/AR equal to pycocotools run directly, bootstrap intervals, sharded inference merged,
the stored budget used (a conflicting override is an error), results over seeds."""
import contextlib
import io
import json

import pytest
from common_utils.train import DistContext
from faap_detr.datasets.gender_coco import GenderCocoDataset
from faap_detr.evaluate import evaluate, predict
from faap_detr.main import load_cfg, main
from faap_detr.models.generator import load_generator
from faap_detr.train_faap import build_frozen_detr
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _pycocotools(gt_path, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.fixture(scope="module")
def trained(tmp_path_factory, gender_data, tiny_detr_ckpt):
    from conftest import ROOT

    run = tmp_path_factory.mktemp("eval") / "run"
    ov = [f"data.root={gender_data}", f"run_dir={run}", "device=cpu", f"detr.checkpoint={tiny_detr_ckpt}",
          "train.batch_size=4", "train.batches_per_epoch=1", "eval.batch_size=8", "eval.bootstrap=50",
          "eval.n_visualize=1"]
    assert main(["train", "--config", str(ROOT / "configs" / "tiny.yaml"), *ov, "train.epochs=2"]) == 0
    return ROOT / "configs" / "tiny.yaml", ov, run


def test_eval_matches_pycocotools_with_intervals(trained, tmp_path):
    path, ov, run = trained
    cfg = load_cfg(path, ov)
    res = evaluate(cfg, tmp_path / "eval")
    best = run / "checkpoints" / "best.pth"
    generator, eps, units, space = load_generator(best)
    assert res["checkpoint"] == str(best) and (res["epsilon"], res["epsilon_units"], res["space"]) == (
        eps, "normalized", "pixel")
    assert 0 < res["delta_linf"] <= eps + 1e-6
    detr, _, post = build_frozen_detr(cfg)
    ctx = DistContext(0, 1, 0, __import__("torch").device("cpu"), True, False)
    rows = {r["metric"]: r for r in res["table"]["metrics"]}
    for gender, label in (("men", "Male"), ("women", "Female")):
        ds = GenderCocoDataset(cfg.data.root, "test", (gender,), cfg.data.image_size, cfg.data.max_size)
        gt_path = ds.root / f"gender_{gender}_test.json"
        for key, gen in (("baseline", None), ("perturbed", generator)):
            stats = _pycocotools(gt_path, predict(detr, post, ds, ctx, 8, gen, space, units)[0])
            assert rows[f"{label} AP"][key] == pytest.approx(stats[0], abs=1e-9)
            assert rows[f"{label} AR"][key] == pytest.approx(stats[8], abs=1e-9)
            lo, hi = rows[f"{label} AP"][f"{key}_ci"]
            assert lo <= rows[f"{label} AP"][key] + 1e-9 and hi >= rows[f"{label} AP"][key] - 1e-9
    gap = res["table"]["gaps"][0]
    assert gap["baseline"] == pytest.approx(rows["Male AP"]["baseline"] - rows["Female AP"]["baseline"])
    assert gap["change"] == pytest.approx(gap["perturbed"] - gap["baseline"])
    assert len(gap["change_ci"]) == 2 and gap["change_ci"][0] <= gap["change_ci"][1]
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["table"] == json.loads(json.dumps(res["table"]))
    md = (tmp_path / "eval" / "results.md").read_text()
    assert "AP Gap (M-F)" in md and "Female AR" in md and "bootstrap" in md
    assert (tmp_path / "eval" / "perturbation_women.png").stat().st_size > 0
    seeds = tmp_path / "seeds.md"
    assert main(["seeds", str(tmp_path / "eval" / "results.json"), str(tmp_path / "eval" / "results.json"),
                 "--out", str(seeds)]) == 0
    assert "| AP Gap (M-F) change |" in seeds.read_text()


def test_sharded_inference_merges_to_the_full_result(trained):
    path, ov, run = trained
    cfg = load_cfg(path, ov)
    detr, _, post = build_frozen_detr(cfg)
    ds = GenderCocoDataset(cfg.data.root, "val", image_size=64, max_size=96)
    import torch

    one = DistContext(0, 1, 0, torch.device("cpu"), True, False)
    full = predict(detr, post, ds, one, 1)[0]  # batch 1: no padding, so outputs do not depend on the batch
    shards = [predict(detr, post, ds, DistContext(r, 2, r, torch.device("cpu"), r == 0, False), 1)[0]
              for r in range(2)]  # without a process group each rank returns its own shard
    assert {r["image_id"] for r in shards[0]} & {r["image_id"] for r in shards[1]} == set()
    key = lambda r: (r["image_id"], r["score"], tuple(r["bbox"]))  # noqa: E731
    assert sorted(map(key, shards[0] + shards[1])) == sorted(map(key, full))


def test_a_conflicting_budget_override_is_an_error(trained):
    path, ov, run = trained
    best = run / "checkpoints" / "best.pth"
    with pytest.raises(ValueError, match="space"):
        load_generator(best, space="normalized")
    with pytest.raises(ValueError, match="epsilon"):
        main(["eval", "--config", str(path), *ov, "--epsilon", "0.5"])
    eps = load_generator(best)[1]
    assert load_generator(best, epsilon=eps)[1] == eps  # agreeing values are fine


def test_bootstrap_resamples_sharded_over_ranks_merge_to_the_whole(gender_data):
    """The resamples of two ranks are disjoint and together are the one-rank sequence, value for value."""
    from faap_detr.evaluate import PERSON, bootstrap, bootstrap_rows, image_evals

    gts, coarse = _jittered_test_split(gender_data, 0.3, seed=0)
    fine = _jittered_test_split(gender_data, 0.1)[1]
    base, pert = image_evals(gts, coarse, [PERSON]), image_evals(gts, fine, [PERSON])
    whole = bootstrap_rows(base, pert, 12, seed=3)
    shards = [bootstrap_rows(base, pert, 12, seed=3, rank=r, world_size=2) for r in range(2)]
    assert sorted(shards[0]) == list(range(0, 12, 2)) and sorted(shards[1]) == list(range(1, 12, 2))
    assert {**shards[0], **shards[1]} == whole
    changes = [r["change.gap.AP"] for r in whole.values()]
    assert len(set(changes)) > 1  # the resamples differ
    lo, hi = bootstrap(base, pert, 12, seed=3)["change.gap.AP"]
    assert min(changes) <= lo <= hi <= max(changes)


def _matching_worker(rank, world, port, gender_data, out_dir):
    import os

    import torch
    from common_utils.train import cleanup_distributed, init_distributed
    from faap_detr.evaluate import image_evals

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    ctx = init_distributed(device="cpu")
    gts, dets = _jittered_test_split(gender_data)
    evals = image_evals(gts, dets, [1], ctx)
    torch.save({g: {"ids": e.image_ids, "all": e.summary(), "resampled": e.summary(_counts(len(e.image_ids)))}
                for g, e in evals.items()}, os.path.join(out_dir, f"{rank}.pt"))
    cleanup_distributed()


def _jittered_test_split(gender_data, scale=0.3, seed=1):
    """Each gender's test ground truth and detections = its boxes moved by up to `scale` of their size, random
    scores."""
    import numpy as np
    from faap_detr.datasets.gender_coco import GENDERS, read_gender_json

    rng = np.random.default_rng(seed)
    gts = {g: read_gender_json(gender_data / f"gender_{g}_test.json") for g in GENDERS}
    dets = {g: [{"image_id": a["image_id"], "category_id": 1, "score": float(rng.random()),
                 "bbox": [v + scale * a["bbox"][2 + k % 2] * float(rng.uniform(-1, 1)) for k, v in
                          enumerate(a["bbox"])]} for a in gt["annotations"]] for g, gt in gts.items()}
    return gts, dets


def _counts(n):
    import numpy as np

    return np.random.default_rng(2).multinomial(n, np.full(n, 1.0 / n))


def test_coco_matching_sharded_over_two_ranks_equals_one_process(gender_data, tmp_path):
    """Two gloo ranks each match half the images; the merged evaluation on each rank equals one process's, on all
    images and on a bootstrap resample."""
    import socket

    import torch
    import torch.multiprocessing as mp
    from faap_detr.evaluate import image_evals

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_matching_worker, args=(2, port, gender_data, str(tmp_path)), nprocs=2, join=True)
    gts, dets = _jittered_test_split(gender_data)
    whole = image_evals(gts, dets, [1])
    for rank in range(2):
        got = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        for g, e in whole.items():
            assert got[g] == {"ids": e.image_ids, "all": e.summary(), "resampled": e.summary(_counts(len(e.image_ids)))}
            assert 0 < got[g]["all"]["AP"] < 1
