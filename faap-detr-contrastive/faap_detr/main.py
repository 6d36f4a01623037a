"""CLI: `python -m faap_detr train|eval|train-detr|make-gender-split|seeds` (wiring only)."""
import argparse
import json
import logging
from pathlib import Path

from common_utils.train import load_config, parse_args_with_overrides

log = logging.getLogger("faap_detr")
SCHEMA = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
# keys whose default is null and that take a value when set (declared for load_config)
NULLABLE = ("detr.checkpoint", "train.batches_per_epoch", "eval.checkpoint", "eval.epsilon", "eval.space")


def load_cfg(path=None, overrides=()):
    """configs/default.yaml <- `path` <- key=value overrides (every key must be declared in default.yaml)."""
    return load_config(path, SCHEMA, overrides, nullable=NULLABLE)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m faap_detr", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, run=False):
        sp.add_argument("--config", default=None, help="YAML config over configs/default.yaml")
        sp.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides `device`")
        sp.add_argument("overrides", nargs="*", help="dotted key=value config overrides")
        if run:
            sp.add_argument("--resume", help="'auto' (run_dir's last.pth if there) or a last.pth to continue from")
            sp.add_argument("--overwrite", action="store_true", help="delete another run found in the run directory")

    t = sub.add_parser("train", help="train the perturbation generator against the frozen DETR")
    common(t, run=True)
    t.add_argument("--bidirectional", action="store_true",
                   help="BidirectionalScoreContrastiveLoss (loss.bidirectional)")
    t.add_argument("--method", choices=["contrastive", "adversarial"], help="overrides `method`")
    e = sub.add_parser("eval", help="per-gender COCO AP/AR, baseline vs perturbed, with bootstrap intervals")
    common(e)
    e.add_argument("--checkpoint", help="generator file (eval.checkpoint; default run_dir/checkpoints/best.pth)")
    e.add_argument("--epsilon", type=float, help="eval.epsilon: only for files without one (the design's own)")
    e.add_argument("--all-categories", action="store_true", help="evaluate every category, not only person")
    e.add_argument("--out", help="output folder (default run_dir/eval_<split>)")
    d = sub.add_parser("train-detr", help="train a DETR on the gender data (the demo's detector)")
    common(d, run=True)
    g = sub.add_parser("make-gender-split", help="gender-split COCO from COCO's captions and instances files")
    g.add_argument("--coco-root", required=True, help="folder holding annotations/ and {train,val}YEAR/")
    g.add_argument("--year", type=int, default=2017, choices=[2014, 2017])
    g.add_argument("--out", required=True, help="output folder (data.root of the trainers)")
    g.add_argument("--min-votes", type=int, default=2, help="captions that must name the gender (default 2)")
    g.add_argument("--max-dissent", type=int, default=0, help="captions allowed to name the other gender (0)")
    g.add_argument("--test-fraction", type=float, default=0.5, help="share of the val file's images for test")
    g.add_argument("--salt", default="faap", help="salt of the hash that carves val/test")
    g.add_argument("--person-only", action="store_true", help="keep only person annotations (default: all)")
    s = sub.add_parser("seeds", help="results over seeds: mean and std of several results.json")
    s.add_argument("results", nargs="+", help="results.json files (one per seed)")
    s.add_argument("--out", help="write the Markdown table here too")
    return p


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args_with_overrides(build_parser(), argv)  # overrides may follow the options (job files)
    if args.cmd == "make-gender-split":
        from .datasets.make_gender_split import counts_table, make_gender_split

        counts = make_gender_split(args.coco_root, args.out, args.year, args.min_votes, args.max_dissent,
                                   args.test_fraction, args.salt, args.person_only)
        print(counts_table(counts))
        print(f"counts written to {Path(args.out) / 'split_counts.json'}")
        return 0
    if args.cmd == "seeds":
        from .report import seeds_table

        table = seeds_table(args.results)
        print(table)
        if args.out:
            Path(args.out).write_text(table)
        return 0
    cfg = load_cfg(args.config, args.overrides)
    if args.device:
        cfg.device = args.device
    if args.cmd == "train":
        from .train_faap import train_faap

        if args.bidirectional:
            cfg.loss.bidirectional = True
        if args.method:
            cfg.method = args.method
        train_faap(cfg, args.resume, args.overwrite)
    elif args.cmd == "train-detr":
        from .train_detr import train_detr

        print(train_detr(cfg, args.resume, args.overwrite))
    elif args.cmd == "eval":
        from .evaluate import evaluate

        if args.checkpoint:
            cfg.eval.checkpoint = args.checkpoint
        if args.epsilon is not None:
            cfg.eval.epsilon = args.epsilon
        if args.all_categories:
            cfg.eval.all_categories = True
        res = evaluate(cfg, args.out)
        print(json.dumps(res["table"], indent=2))
    return 0
