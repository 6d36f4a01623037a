"""Per-gender COCO evaluation: inference sharded over ranks and merged, AP/AR per gender, the M-F gap, and bootstrap
95 % intervals over images (paired: one resample of each gender's images scores baseline and perturbed alike; the
resamples sharded over ranks and merged). COCOeval's per-image matching is sharded over the ranks and merged too."""
import numpy as np
import torch
from common_utils.metrics.detection import CocoImageEval
from common_utils.train import all_gather_objects, autocast_context
from torch.utils.data import DataLoader, Subset
from torchvision.ops import box_convert

from .datasets.gender_coco import GENDERS, collate
from .models.detr import normalize
from .models.generator import apply_generator, linf_in_units

PERSON = 1


@torch.no_grad()
def predict(detr, postprocessor, dataset, ctx, batch_size, generator=None, space="pixel", units="normalized",
            precision="fp32"):
    """COCO results (all queries, no threshold) for every image of `dataset`, with or without the generator's
    perturbation. Each rank infers images rank, rank + world, ...; every rank gets the merged list.

    -> (results, max |delta| in `units` over the images; 0 without a generator)."""
    shard = Subset(dataset, list(range(ctx.rank, len(dataset), ctx.world_size)))
    results, linf = [], 0.0
    for pixels, mask, targets in DataLoader(shard, batch_size=batch_size, collate_fn=collate):
        pixels, mask = pixels.to(ctx.device), mask.to(ctx.device)
        with autocast_context(ctx.device, precision):
            if generator is None:
                x = normalize(pixels) * (~mask).unsqueeze(1)
            else:
                x, delta = apply_generator(generator, pixels, mask, space)
                linf = max(linf, linf_in_units(delta, units, space))
            outputs = detr(x, mask)
        sizes = torch.stack([t["orig_size"] for t in targets]).to(ctx.device)
        for t, det in zip(targets, postprocessor(outputs, sizes)):
            xywh = box_convert(det["boxes"], "xyxy", "xywh").tolist()
            for s, lab, box in zip(det["scores"].tolist(), det["labels"].tolist(), xywh):
                results.append({"image_id": t["image_id"], "category_id": lab, "bbox": box, "score": s})
    parts = all_gather_objects((results, linf))
    return [r for part, _ in parts for r in part], max(v for _, v in parts)


def scores_finite(results):
    """Detection scores as a tensor (for `check_finite_outputs` before metrics)."""
    return torch.tensor([r["score"] for r in results] + [r["bbox"][k] for r in results for k in range(4)])


def image_evals(gt_by_gender, results_by_gender, cat_ids, ctx=None):
    """{gender: CocoImageEval} (per-image matching kept for the bootstrap). COCOeval's per-image matching is sharded
    over the ranks of `ctx` (images in ascending id, image i on rank i mod world) and merged: every rank gets the
    evaluation of one process over all images.

    gt_by_gender: {gender: COCO ground-truth dict}; results_by_gender: {gender: [COCO result]} of every image."""
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    out = {}
    for g, gt in gt_by_gender.items():
        shard = sorted(im["id"] for im in gt["images"])[rank::world]
        mine = set(shard)
        part = CocoImageEval(gt, [r for r in results_by_gender[g] if r["image_id"] in mine], cat_ids=cat_ids,
                             img_ids=shard)
        out[g] = CocoImageEval.merge([CocoImageEval.from_state(s) for s in all_gather_objects(part.state())])
    return out


def gap_summary(evals, counts=None):
    """{gender: {AP, AR100}} and the M-F gaps from {gender: CocoImageEval}, on `counts` resamples if given."""
    per = {g: e.summary(None if counts is None else counts[g]) for g, e in evals.items()}
    gaps = {k: _diff(per["men"][k], per["women"][k]) for k in ("AP", "AR100")}
    return per, gaps


def _diff(a, b):
    return None if a is None or b is None else a - b


def bootstrap_rows(base, pert, n_samples, seed, rank=0, world_size=1):
    """Resamples rank, rank + world_size, ... of one seeded sequence of image resamples (each gender resampled with
    replacement, paired between baseline and perturbed). -> {resample index: {name: value}} for every AP / AR, both
    gaps and the gap changes of that resample."""
    rng = np.random.default_rng(seed)
    rows = {}
    for i in range(n_samples):  # every rank draws the whole sequence (cheap), so shards do not depend on the world
        counts = {g: rng.multinomial(len(e.image_ids), np.full(len(e.image_ids), 1.0 / len(e.image_ids)))
                  for g, e in base.items()}
        if i % world_size != rank:
            continue
        row = {}
        for key, evals in (("baseline", base), ("perturbed", pert)):
            per, gaps = gap_summary(evals, counts)
            for g in GENDERS:
                for m in ("AP", "AR100"):
                    row[f"{key}.{g}.{m}"] = per[g][m]
            for m in ("AP", "AR100"):
                row[f"{key}.gap.{m}"] = gaps[m]
        for m in ("AP", "AR100"):
            row[f"change.gap.{m}"] = _diff(row[f"perturbed.gap.{m}"], row[f"baseline.gap.{m}"])
        rows[i] = row
    return rows


def bootstrap(base, pert, n_samples, seed, confidence=0.95, ctx=None):
    """Percentile intervals over image resamples for every AP / AR, both gaps and the gap changes; the resamples are
    shared out over the ranks (`ctx`) and merged, so every world size gives the same intervals.

    base, pert: {gender: CocoImageEval} of the same images. -> {name: [low, high]} (empty when n_samples is 0)."""
    if n_samples <= 0:
        return {}
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    rows = {}
    for part in all_gather_objects(bootstrap_rows(base, pert, n_samples, seed, rank, world)):
        rows.update(part)
    draws = {}
    for i in sorted(rows):
        for k, v in rows[i].items():
            if v is not None:
                draws.setdefault(k, []).append(v)
    alpha = (1.0 - confidence) / 2
    return {k: [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))] for k, v in sorted(draws.items())}


def result_table(base, pert, intervals):
    """The design's tables: per gender AP/AR baseline vs perturbed, and the M-F gaps, with 95 % intervals."""
    (pb, gb), (pp, gp) = gap_summary(base), gap_summary(pert)
    labels = {"men": "Male", "women": "Female"}
    metrics = []
    for g in GENDERS:
        for m, name in (("AP", "AP"), ("AR100", "AR")):
            metrics.append({"metric": f"{labels[g]} {name}", "baseline": pb[g][m], "perturbed": pp[g][m],
                            "delta": _diff(pp[g][m], pb[g][m]), "baseline_ci": intervals.get(f"baseline.{g}.{m}"),
                            "perturbed_ci": intervals.get(f"perturbed.{g}.{m}")})
    gaps = []
    for m, name in (("AP", "AP"), ("AR100", "AR")):
        change = _diff(gp[m], gb[m])
        rel = None if change is None or not gb[m] else change / abs(gb[m])
        gaps.append({"gap": f"{name} Gap (M-F)", "baseline": gb[m], "perturbed": gp[m], "change": change,
                     "change_relative": rel, "baseline_ci": intervals.get(f"baseline.gap.{m}"),
                     "perturbed_ci": intervals.get(f"perturbed.gap.{m}"),
                     "change_ci": intervals.get(f"change.gap.{m}")})
    return {"metrics": metrics, "gaps": gaps}


def merged_gt(coco_by_gender):
    """One COCO ground truth holding both genders' images (for the detector's overall person AP)."""
    first = next(iter(coco_by_gender.values()))
    return {"info": first.get("info", {}), "categories": first["categories"],
            "images": [im for c in coco_by_gender.values() for im in c["images"]],
            "annotations": [a for c in coco_by_gender.values() for a in c["annotations"]]}


def evaluate(cfg, out_dir=None):
    """Per-gender COCO AP/AR of the frozen DETR, baseline vs perturbed, on `data.eval_split`, with bootstrap 95 %
    intervals; writes results.json, results.md and perturbation figures to `out_dir` (default
    run_dir/eval_<split>). Returns the results dict."""
    from pathlib import Path

    from common_utils.train import check_finite_outputs, cleanup_distributed, init_distributed

    from .datasets.gender_coco import GenderCocoDataset
    from .models.generator import load_generator
    from .report import save_perturbation_figure, write_report
    from .train_faap import build_frozen_detr

    ctx = init_distributed(cfg.device)
    path = Path(cfg.eval.checkpoint or Path(cfg.run_dir) / "checkpoints" / "best.pth")
    generator, eps, units, space = load_generator(path, cfg.eval.epsilon, cfg.eval.space)
    generator.to(ctx.device)
    detr, _, postprocessor = build_frozen_detr(cfg)
    detr.to(ctx.device)
    out_dir = Path(out_dir or Path(cfg.run_dir) / f"eval_{cfg.data.eval_split}")
    cat_ids = None if cfg.eval.all_categories else [PERSON]
    data = dict(image_size=cfg.data.image_size, max_size=cfg.data.max_size)
    sets = {g: GenderCocoDataset(cfg.data.root, cfg.data.eval_split, (g,), **data) for g in GENDERS}
    gts = {g: ds.coco[g] for g, ds in sets.items()}
    runs, linf = {}, 0.0
    for key, gen in (("baseline", None), ("perturbed", generator)):
        results = {}
        for g, ds in sets.items():
            results[g], m = predict(detr, postprocessor, ds, ctx, cfg.eval.batch_size, gen, space, units)
            check_finite_outputs(scores_finite(results[g]), 0, f"{key} detections ({g})")
            linf = max(linf, m)
        runs[key] = image_evals(gts, results, cat_ids, ctx)
    intervals = bootstrap(runs["baseline"], runs["perturbed"], cfg.eval.bootstrap, cfg.eval.bootstrap_seed, ctx=ctx)
    figures = []
    if ctx.is_main and cfg.eval.n_visualize > 0:
        for g, ds in sets.items():
            figures.append(save_perturbation_figure(ds, generator, space, cfg.eval.n_visualize,
                                                    out_dir / f"perturbation_{g}.png", ctx.device))
    results = {"checkpoint": str(path), "epsilon": eps, "epsilon_units": units, "space": space,
               "delta_linf": linf, "split": cfg.data.eval_split,
               "categories": "all" if cat_ids is None else cat_ids,
               "n_images": {g: len(ds) for g, ds in sets.items()}, "bootstrap": cfg.eval.bootstrap,
               "table": result_table(runs["baseline"], runs["perturbed"], intervals), "intervals": intervals,
               "figures": [str(f.relative_to(out_dir)) for f in figures]}
    if ctx.is_main:
        write_report(results, out_dir)
    cleanup_distributed()
    return results
