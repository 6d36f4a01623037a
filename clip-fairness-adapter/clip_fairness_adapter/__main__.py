"""``python -m clip_fairness_adapter COMMAND --config X.yaml [--resume auto|PATH] [--overwrite] [key=value ...]``

Commands: pretrain_clip (the demo's small open_clip model), train_stage1, train_stage2, eval, infer. ``key=value``
overrides may stand anywhere after the command (before, between or after the options).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from common_utils.cli import run_cli
from common_utils.train import load_config, parse_args_with_overrides

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SCHEMAS = {"pretrain_clip": CONFIG_DIR / "pretrain_clip.yaml",
           "train_stage1": CONFIG_DIR / "train_stage1.yaml",
           "train_stage2": CONFIG_DIR / "train_stage2_independent_adapter.yaml",
           "eval": CONFIG_DIR / "train_stage2_independent_adapter.yaml",
           "infer": CONFIG_DIR / "train_stage2_independent_adapter.yaml"}
HELP = {"pretrain_clip": "contrastive pre-training of a small open_clip model on captioned images (demo backbone)",
        "train_stage1": "train the Stage 1 bias adapter (demographic-only face data)",
        "train_stage2": "train the Stage 2 dual adapter (needs stage1_checkpoint)",
        "eval": "evaluate a Stage 2 run on data.test_sets; JSON + Markdown report and figures",
        "infer": "score every image of a folder with a Stage 2 checkpoint -> CSV"}
# keys whose schema default is a value but which may be set to null (a schema default of null admits anything):
# clip.pretrained (null: the weights come from a local-dir:/hf-hub: folder, or random init in tests),
# clip.model_config (pretrain_clip; null: clip.name is an architecture open_clip ships), data.cache_dir (null: no
# feature cache), loss.diameter (null: the bounding box of the points)
NULLABLE = ("clip.pretrained", "clip.model_config", "data.cache_dir", "loss.diameter")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m clip_fairness_adapter", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in HELP.items():
        s = sub.add_parser(name, help=help_, description=f"{help_}. Overrides: key=value anywhere.")
        s.add_argument("--config", required=True, help=f"YAML config (keys of config/{SCHEMAS[name].name})")
        if name in ("eval", "infer"):
            s.add_argument("--checkpoint", default=None, help="Stage 2 best.pth or last.pth (default "
                                                              "run_dir/eval.checkpoint)")
            s.add_argument("--out", default=None, help="report folder (eval; default run_dir/eval) or CSV (infer; "
                                                       "default run_dir/infer.csv)")
        else:
            s.add_argument("--resume", default=None, help="'auto' (run_dir/last.pth if present) or a last.pth")
            s.add_argument("--overwrite", action="store_true", help="delete another run found in run_dir")
        if name == "infer":
            s.add_argument("--input", required=True, help="folder of images (searched recursively)")
    return p


def load(command: str, config: str, overrides: list[str]):
    return load_config(config, SCHEMAS[command], overrides, nullable=NULLABLE)


def main(argv=None) -> int:
    args = parse_args_with_overrides(build_parser(), argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load(args.command, args.config, args.overrides)
    if args.command == "pretrain_clip":
        from .trainer.clip_pretrain import train
        train(cfg, args.resume, args.overwrite)
    elif args.command == "train_stage1":
        from .trainer.stage1_trainer import train
        train(cfg, args.resume, args.overwrite)
    elif args.command == "train_stage2":
        from .trainer.stage2_independent_adapter_trainer import train
        train(cfg, args.resume, args.overwrite)
    elif args.command == "eval":
        from .trainer.evaluate import run_evaluation
        out = run_evaluation(cfg, args.checkpoint, args.out)
        print(json.dumps({name: {m: r["detection"]["auc"] for m, r in res.items()}
                          for name, res in out["results"].items()}))
    else:
        from .trainer.infer import run_inference
        checkpoint = args.checkpoint or Path(cfg.run_dir) / cfg.eval.checkpoint
        print(run_inference(cfg, checkpoint, args.input, args.out or Path(cfg.run_dir) / "infer.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m clip_fairness_adapter"))
