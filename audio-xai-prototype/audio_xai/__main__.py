"""CLI: python -m audio_xai train-stage1 | train-xai | explain | evaluate-xai | sanity-check | score
[--config C] [key=value ...]"""
import argparse
import json
import logging
import os
import sys
from pathlib import Path

from common_utils.cli import run_cli
from common_utils.train import parse_args_with_overrides

from .config import detector_checkpoint, get_config, stage_dir

COMMANDS = {
    "train-stage1": "train the XLSR-Conformer-TCM detector (RawBoost, weighted CE, early stopping, avg of best)",
    "train-xai": "Stage 2: train the importance network + prototypes on the frozen detector",
    "explain": "write frame importance maps (npy + CSV) and figures for a split",
    "evaluate-xai": "faithfulness + localisation of the learned importance and the baselines (--probe: frame probe)",
    "sanity-check": "model-randomisation check: Stage 2 on a re-initialised detector, maps compared with the trained",
    "score": "score a split with a tcm_add-format checkpoint ('utt score' lines) and report the EER",
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m audio_xai", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=None, help="YAML config (default: built-in paper-scale defaults)")
        p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. run_dir=runs/x train.epochs=5")
        if name.startswith("train"):
            p.add_argument("--resume", default=None, help="'auto' (= the stage's last.pth if any) or a last.pth")
            p.add_argument("--overwrite", action="store_true", help="delete another run found in the stage directory")
        if name in ("explain", "evaluate-xai", "sanity-check", "score"):
            p.add_argument("--split", default=None, choices=["train", "dev", "eval"])
        if name == "evaluate-xai":
            p.add_argument("--probe", action="store_true",
                           help="also fit a frame-label linear probe on the frozen h(t) (is there frame-level signal?)")
        if name == "score":
            p.add_argument("--checkpoint", default=None, help="tcm_add-format state dict (default: model.pretrained_"
                                                               "checkpoint or run_dir/stage1/avg_5_best.pth)")
            p.add_argument("--out", default=None, help="score file (default: run_dir/scores/<layout>_<split>.txt)")
    args = parse_args_with_overrides(parser, argv)  # overrides may also follow the options (SLURM job files)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = get_config(args.config, args.overrides)
    if args.command == "train-stage1":
        from .trainer.stage1 import train_stage1
        result = train_stage1(cfg, args.resume, args.overwrite)
    elif args.command == "train-xai":
        from .trainer.stage2 import train_stage2
        result = train_stage2(cfg, args.resume, args.overwrite)
    elif args.command == "explain":
        from .explain import explain
        result = explain(cfg, args.split)
    elif args.command == "evaluate-xai":
        from .evaluate import evaluate_xai
        result = evaluate_xai(cfg, args.split, probe=args.probe)
        result = {k: v for k, v in result.items() if k != "methods"} | {
            m: {k: v for k, v in r.items() if not k.endswith("curve")} for m, r in result["methods"].items()}
    elif args.command == "sanity-check":
        from .sanity import sanity_check
        result = sanity_check(cfg, args.split)
    else:
        from .trainer.stage1 import score_split
        split = args.split or cfg.stage1.score_split
        out = Path(args.out) if args.out else stage_dir(cfg, "scores") / f"{cfg.data.layout}_{split}.txt"
        result = score_split(cfg, args.checkpoint or detector_checkpoint(cfg), split, out)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m audio_xai"))
