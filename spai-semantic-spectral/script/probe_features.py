"""Diagnostic: how much real/fake signal the frozen SPAI features carry, without training the SPAI head.

Per image, the per-patch feature vectors of ``PatchBasedMFViT.extract`` (the similarity statistics and the context
vector, ``[P, C]``, grid patches as at test time) are averaged over the patches; a standardised logistic regression
fitted on split ``train`` of the CSV is scored on split ``val``. Compare its AUC with the trained model's validation
AUC: when the probe separates and the trained model does not, the head's training is what misses the signal.

    python script/probe_features.py --cfg configs/demo.yaml --data-path DATA/spai/train.csv --csv-root-dir DATA \
        [--pretrained RUN/mfm/mfm_pretrain.pth] [--limit 300] [KEY=VALUE ...]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from common_utils.data import load_image, read_spai_csv
from common_utils.metrics import roc_auc
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from spai.config import get_config
from spai.data.data_finetune import EvalTransform
from spai.models import build_cls_model, load_pretrained


@torch.no_grad()
def image_features(model, rows, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``[N, C]`` patch-averaged feature vectors and ``[N]`` labels."""
    transform, feats = EvalTransform(patch_size), []
    for row in rows:
        patches = model.patchify(transform(load_image(row.image)), True)
        feats.append(model.extract(patches, model.feature_extraction_batch)[0].mean(0).numpy())
    return np.stack(feats), np.array([row.label for row in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cfg", required=True)
    p.add_argument("--data-path", required=True)
    p.add_argument("--csv-root-dir")
    p.add_argument("--pretrained", help="MFM or SPAI checkpoint (default: random init at --seed)")
    p.add_argument("--limit", type=int, default=300, help="images per split (a seeded random subset)")
    p.add_argument("--seed", type=int, default=0)
    args, overrides = p.parse_known_args()
    cfg = get_config(args.cfg, [x for kv in overrides for x in kv.split("=", 1)])
    torch.manual_seed(args.seed)
    model = build_cls_model(cfg).eval()
    if args.pretrained:
        load_pretrained(model, args.pretrained)
    rng = np.random.default_rng(args.seed)
    data = {}
    for split in ("train", "val"):
        rows = read_spai_csv(args.data_path, args.csv_root_dir, split)
        data[split] = image_features(model, [rows[i] for i in rng.permutation(len(rows))[:args.limit]],
                                     cfg.DATA.IMG_SIZE)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(*data["train"])
    aucs = {split: roc_auc(y, probe.predict_proba(x)[:, 1]) for split, (x, y) in data.items()}
    print(f"probe on frozen features ({args.pretrained or 'random init'}): train AUC {aucs['train']:.3f}, "
          f"val AUC {aucs['val']:.3f} ({data['train'][0].shape[1]} features, {len(data['train'][1])} + "
          f"{len(data['val'][1])} images)")


if __name__ == "__main__":
    main()
