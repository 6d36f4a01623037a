"""Cost of a FAAP generator training step relative to plain DETR inference, side by side in one run.

The paper config by default (``configs/default.yaml``: DETR-R50, 6 + 6 layers, 100 queries, generator with 32 base
channels; random init: no weights needed for timing), on batches of ``--batch`` images of a generated gender_coco set
resized to a ``--size`` px shorter side (512 by default, to keep the run near a minute on one core; ``--size 800`` is
the paper's), split by ``make-gender-split`` and read once before timing. Step = ``engine.train_faap_epoch`` over
those batches (generator, frozen DETR forward and backward to the input, Hungarian matching, DETR + contrastive +
Wasserstein losses, the shared ``OptimStep`` with fused AdamW), past the contrastive warm-up; inference =
``evaluate.predict`` over the same images (frozen DETR + post-processing to COCO results).

    python bench/bench_step.py [--threads 1] [--config configs/default.yaml] [--size 512] [--batch 2]
                               [--batches 1] [--repeats 2] [--device cpu] [key=value ...]

stdout: JSON with ``ratios.faap_step_vs_detr_inference`` (step s / inference s per batch); stderr: progress.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from common_utils.bench import (  # torch-free: the thread count is set before torch loads
    clock,
    medians,
    pin_threads,
)

THREADS = pin_threads()
import torch  # noqa: E402
from common_utils.data import SubgroupBalancedBatchSampler  # noqa: E402
from common_utils.train import OptimStep, adamw, init_distributed, step_options  # noqa: E402
from faap_detr.datasets.gender_coco import GenderCocoDataset, collate  # noqa: E402
from faap_detr.datasets.make_gender_split import make_gender_split  # noqa: E402
from faap_detr.engine import train_faap_epoch  # noqa: E402
from faap_detr.evaluate import predict  # noqa: E402
from faap_detr.losses.objective import build as build_objective  # noqa: E402
from faap_detr.main import load_cfg  # noqa: E402
from faap_detr.models.generator import PerturbationGenerator, linf_bound  # noqa: E402
from faap_detr.models.projection_head import ProjectionHead  # noqa: E402
from faap_detr.train_faap import build_frozen_detr  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

torch.set_num_threads(THREADS)
ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[bench_step] {msg}", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP / MKL threads (default 1)")
    p.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    p.add_argument("--size", type=int, default=512, help="shorter image side (paper: 800; longer side <= 5/3 of it)")
    p.add_argument("--batch", type=int, default=2, help="images per batch (paper: 7)")
    p.add_argument("--batches", type=int, default=1, help="batches per timed call")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("overrides", nargs="*", help="config key=value")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        from common_utils.synthetic.gender_coco import generate

        generate(Path(tmp) / "coco", n=max(40, 8 * a.batch * a.batches), seed=0)
        make_gender_split(Path(tmp) / "coco", Path(tmp) / "split", min_votes=1)
        cfg = load_cfg(a.config, [f"data.root={Path(tmp) / 'split'}", f"device={a.device}",
                                  f"data.image_size={a.size}", f"data.max_size={a.size * 5 // 3}",
                                  f"train.batch_size={a.batch}", f"train.batches_per_epoch={a.batches}",
                                  "data.num_workers=0", *a.overrides])
        ctx = init_distributed(a.device)
        device = ctx.device
        ds = GenderCocoDataset(cfg.data.root, cfg.data.train_split, image_size=cfg.data.image_size,
                               max_size=cfg.data.max_size)
        sampler = SubgroupBalancedBatchSampler(ds.genders, a.batch, a.batches, seed=0)
        batches = list(DataLoader(ds, batch_sampler=sampler, collate_fn=collate))
        items = [ds[i] for idx in sampler for i in idx]  # the same images, in memory, for inference
    shape = list(batches[0][0].shape)
    detr, criterion, postprocessor = build_frozen_detr(cfg)
    detr.to(device)
    objective = build_objective(cfg, criterion.to(device))
    units, space = cfg.epsilon.units, cfg.generator.space
    generator = PerturbationGenerator(cfg.generator.base_channels,
                                      linf_bound(cfg.epsilon.peak, units, space)).to(device)
    proj_head = ProjectionHead(cfg.detr.hidden_dim, cfg.projection.hidden_dim, cfg.projection.output_dim).to(device)
    optimizer = adamw([*generator.parameters(), *proj_head.parameters()], lr=cfg.train.lr,
                      weight_decay=cfg.train.weight_decay)
    steps = {"generator": OptimStep(optimizer, device=device, model=generator, name="generator",
                                    **step_options(cfg.train))}
    epoch = cfg.loss.contrastive_warmup_epochs  # past the contrastive warm-up
    log(f"{cfg.detr.backbone} DETR, batches of {shape}, {THREADS} thread(s)")

    def inference():
        predict(detr, postprocessor, items, ctx, a.batch)

    def faap_steps():
        train_faap_epoch(epoch, batches, detr, generator, objective, steps, ctx, space, units, proj_head=proj_head)

    sec = medians({"detr_inference": inference, "faap_step": faap_steps}, a.repeats, device, THREADS, log=log)
    sec = {k: v / len(batches) for k, v in sec.items()}
    print(json.dumps({
        "bench": "faap-detr-contrastive/bench/bench_step.py",
        "threads": THREADS, "device": str(device), "torch": torch.__version__, "clock": clock(device, THREADS)[1],
        "repeats": a.repeats, "statistic": "median of interleaved repeats after a warm-up call",
        "setup": {"config": a.config, "backbone": cfg.detr.backbone, "queries": cfg.detr.num_queries,
                  "batch_shape": shape, "batches": len(batches), "generator_channels": cfg.generator.base_channels,
                  "precision": cfg.train.precision},
        "seconds_per_batch": sec,
        "ratios": {"faap_step_vs_detr_inference": sec["faap_step"] / sec["detr_inference"]},
        "ratio_definitions": {"faap_step_vs_detr_inference": "generator training step s / frozen-DETR inference s, "
                                                             "per batch (a cost ratio: lower is cheaper)"},
    }, indent=1))


if __name__ == "__main__":
    main()
