"""The demo's last step: evaluate Stage 2 and the linear probe, then write ``criteria.json`` (the design's 검증 방법,
measured on held-out splits through ``common_utils.criteria``) and ``summary.json``.

``python script/demo_criteria.py --config config/tiny_stage2.yaml --out DEMO_OUT [key=value ...]`` (the Stage 2 run's
config overrides; ``stage1_checkpoint`` names the Stage 1 export whose adapter the demographic probes read).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from clip_fairness_adapter.__main__ import load
from clip_fairness_adapter.model import AdditiveAdapter, build_encoder, read_stage1_adapter
from clip_fairness_adapter.trainer.common import build_split
from clip_fairness_adapter.trainer.evaluate import run_evaluation
from common_utils.criteria import criterion, write_criteria
from common_utils.train import init_distributed, parse_args_with_overrides
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def probe(train_x, train_y, test_x, test_y, seed: int) -> float:
    """Held-out accuracy of a logistic regression (standardised features) fit on the training split."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    return float(clf.fit(train_x, train_y).score(test_x, test_y))


def demographic_probes(cfg) -> dict:
    """Gender and race linear-probe accuracy on the Stage 2 test split, fit on its training split: raw CLIP features
    vs the Stage 1 adapted ones (the frozen Stage 1 export)."""
    ctx = init_distributed(cfg.device)
    encoder = build_encoder(cfg.clip)
    state = read_stage1_adapter(cfg.stage1_checkpoint)
    adapter = AdditiveAdapter(encoder.output_dim, state["adapter.0.weight"].shape[0])
    adapter.load_state_dict(state)
    adapter.eval()
    feats = {}
    for split, entries in (("train", cfg.data.train_sets), ("test", cfg.data.test_sets[0].sets)):
        ds = build_split(cfg, entries, encoder, ctx)
        raw = F.normalize(ds.features[:, 0].float(), dim=-1)
        with torch.no_grad():
            adapted = F.normalize(raw + adapter(raw), dim=-1)
        feats[split] = {"raw": raw.numpy(), "adapted": adapted.numpy(),
                        "gender": np.array([r.gender for r in ds.rows]), "race": np.array([r.race for r in ds.rows])}
    tr, te = feats["train"], feats["test"]
    return {f"{attr}_{kind}": probe(tr[kind], tr[attr], te[kind], te[attr], cfg.seed)
            for attr in ("gender", "race") for kind in ("raw", "adapted")} | {"n": len(te["gender"])}


def gate_extreme(rows: list[dict]) -> tuple[float, dict]:
    """The epoch gate mean (train) farthest from 0.5, with the start, end, min and max."""
    gates = [r["train/gate_mean"] for r in rows]
    start = rows[0].get("val/gate_mean_init", gates[0])
    extreme = max(gates + [start], key=lambda g: abs(g - 0.5))
    return extreme, {"start": start, "end": gates[-1], "min": min(gates), "max": max(gates)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True, help="the demo's output folder (criteria.json, summary.json, eval/)")
    args = parse_args_with_overrides(p, argv)
    cfg = load("eval", args.config, args.overrides)
    out = Path(args.out)
    run_dir = Path(cfg.run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ev = run_evaluation(cfg, run_dir / cfg.eval.checkpoint, out / "eval")["results"]
    test, shifted = ev["test"], ev["test_shifted"]
    s2, lp = test["stage2"], test["linear_probe"]
    n_test, n_train = s2["detection"]["n"], None
    demo = demographic_probes(cfg)
    last = rows[-1]
    extreme, gate = gate_extreme(rows)
    sink_first = rows[0].get("val/sinkhorn_dist_init", rows[0]["val/sinkhorn_dist"])
    sink_last = last["val/sinkhorn_dist"]
    f_fpr = (s2["fairness"]["intersection"]["F_FPR"], lp["fairness"]["intersection"]["F_FPR"])
    items = [
        criterion("Stage 2 train loss (last epoch)", "< 0.5", last["train/loss_total"], split="train", n=n_train,
                  note="L_cls + lambda_fair * L_fair (+ gate prior), epoch mean"),
        criterion("Stage 2 train accuracy (last epoch)", "> 0.8", last["train/acc"], split="train", n=n_train),
        criterion("Stage 2 gate mean stays in (0.05, 0.95) (epoch farthest from 0.5)", "in (0.05, 0.95)", extreme,
                  split="train", note="train-epoch gate means and the initial val gate; design expects ~0.7 at the "
                  "start and a gradual change", **{f"gate_{k}": v for k, v in gate.items()}),
        criterion("Stage 2 subgroup AUC deviation (max - min over 8 subgroups)", "< 0.05", s2["subgroup_auc_gap"],
                  split="test", n=n_test, note="intersectional subgroups, pgfdd convention"),
        criterion("validation Sinkhorn distance decreases (last / start)", "< 1", sink_last / sink_first
                  if sink_first else None, split="val", note="Stage 2 fairness loss on the fused feature, before "
                  "training vs last epoch", start=sink_first, end=sink_last),
        criterion("Stage 2 AUC on the shifted test (unseen fake process)", "> 0.70", shifted["stage2"]["detection"]
                  ["auc"], split="test_shifted", n=shifted["stage2"]["detection"]["n"]),
        criterion("Stage 2 subgroup AUC std vs linear probe", "< probe", s2["subgroup_auc_std"], split="test",
                  n=n_test, probe=lp["subgroup_auc_std"], note="same frozen CLIP features, same training data"),
        criterion("Stage 2 intersectional F_FPR vs linear probe", "< probe", f_fpr[0], split="test", n=n_test,
                  probe=f_fpr[1], note="PG-FDD F_FPR = 100 x (max - min) FPR over subgroups, threshold 0.5"),
        criterion("Stage 2 AUC minus linear-probe AUC", ">= -0.01", s2["detection"]["auc"] - lp["detection"]["auc"],
                  split="test", n=n_test, stage2=s2["detection"]["auc"], probe=lp["detection"]["auc"]),
        criterion("Stage 1 gender predictability (probe accuracy) vs raw CLIP", "< raw", demo["gender_adapted"],
                  split="test", n=demo["n"], raw=demo["gender_raw"], note="logistic regression fit on the train split"),
        criterion("Stage 1 race predictability (probe accuracy) vs raw CLIP", "< raw", demo["race_adapted"],
                  split="test", n=demo["n"], raw=demo["race_raw"], note="logistic regression fit on the train split"),
    ]
    write_criteria(out / "criteria.json", items)
    headline = {}
    for name, methods in ev.items():
        for method, r in methods.items():
            headline[f"{name}/{method}/auc"] = r["detection"]["auc"]
            if r["video"]:
                headline[f"{name}/{method}/video_auc"] = r["video"]["auc"]
            if r["fairness"]:
                headline[f"{name}/{method}/F_FPR"] = r["fairness"]["intersection"]["F_FPR"]
                headline[f"{name}/{method}/auc_gap"] = r["subgroup_auc_gap"]
    headline.update({"stage2/gate_start": gate["start"], "stage2/gate_end": gate["end"], **{
        f"stage1/{k}": v for k, v in demo.items() if k != "n"}})
    figures = sorted(str(p.relative_to(out)) for p in (out / "eval").glob("*.png"))
    summary = {"status": "ok", "headline": {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                                            for k, v in headline.items()},
               "figures": figures,
               "notes": "synthetic fairness_images data; a small open_clip model pre-trained on its captions (not "
                        "ViT-L/14). Stage 2 = dual adapter + token cross-attention fusion; linear_probe = logistic "
                        "regression on the same frozen CLIP features. test_shifted = unseen fake process; "
                        "test_shifted_list = the same frames as a list without demographics. Metrics: "
                        "common_utils.metrics convention 'pgfdd' (video level: 'deepfakebench')."}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for item in items:
        print(f"{'PASS' if item['pass'] else 'fail'}  {item['criterion']}: {item['measured']} ({item['target']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
