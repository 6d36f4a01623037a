"""``python -m clip_fairness_adapter {train_stage1,train_stage2,eval} --config X.yaml [--resume auto] [k=v ...]``"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from common_utils.cli import run_cli
from common_utils.train import load_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SCHEMAS = {"train_stage1": CONFIG_DIR / "train_stage1.yaml",
           "train_stage2": CONFIG_DIR / "train_stage2_independent_adapter.yaml",
           "eval": CONFIG_DIR / "train_stage2_independent_adapter.yaml"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m clip_fairness_adapter", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("train_stage1", "train the Stage 1 bias adapter"),
                        ("train_stage2", "train the Stage 2 dual adapter (needs stage1_checkpoint)"),
                        ("eval", "evaluate a Stage 2 run on data.test_sets; JSON + Markdown report and figures")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--config", required=True, help=f"YAML config (keys of config/{SCHEMAS[name].name})")
        s.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.epochs=3")
        if name == "eval":
            s.add_argument("--checkpoint", default=None, help="Stage 2 checkpoint (default run_dir/eval.checkpoint)")
            s.add_argument("--out", default=None, help="report folder (default run_dir/eval)")
        else:
            s.add_argument("--resume", default=None, help="checkpoint path, or 'auto' = run_dir/last.pth if present")
    return p.parse_args(argv)


NULLABLE = ("clip.pretrained", "data.cache_dir", "fairness.diameter", "train.grad_clip")  # keys documented as nullable


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(args.config, SCHEMAS[args.command], args.overrides, nullable=NULLABLE)
    if args.command == "train_stage1":
        from .trainer.stage1_trainer import train
        train(cfg, args.resume)
    elif args.command == "train_stage2":
        from .trainer.stage2_independent_adapter_trainer import train
        train(cfg, args.resume)
    else:
        from .trainer.evaluate import run_evaluation
        out = run_evaluation(cfg, args.checkpoint, args.out)
        print(json.dumps({name: {m: r["detection"]["auc"] for m, r in res.items()}
                          for name, res in out["results"].items()}))


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m clip_fairness_adapter"))
