"""CLI: python -m cascade_fast_filter train|calibrate|evaluate|cascade|infer [--config YAML] [key=value ...]"""
from __future__ import annotations

import argparse
import sys

from common_utils.cli import run_cli
from common_utils.train import parse_args_with_overrides

from .stage1.utils import get_config


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cascade_fast_filter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "train": "fine-tune the fast filter (best_model.pth by val AUC, last.pth for --resume)",
        "calibrate": "fit the temperature T on validation logits (calibration_temp.json, reliability_diagram.png)",
        "evaluate": "metrics per dataset + cascade threshold analysis (evaluation_report.json/.md, plots)",
        "cascade": "combine with stage-2 scores, sweep thresholds, plot AUC/accuracy against average cost",
        "infer": "folder or CSV of images -> CSV of calibrated P(fake)",
    }
    cmds = {name: sub.add_parser(name, help=text, description=text) for name, text in helps.items()}
    for p in cmds.values():
        p.add_argument("--config", default=None, help="YAML config (defaults: configs/stage1.yaml)")
        p.add_argument("overrides", nargs="*", help="dotted key=value config overrides, e.g. train.epochs=5")
        if p is not cmds["train"]:
            p.add_argument("--checkpoint", default=None, help="model checkpoint (default: <run_dir>/best_model.pth)")
        if p not in (cmds["train"], cmds["calibrate"]):
            p.add_argument("--temperature-file", default=None,
                           help="calibration JSON (default: <run_dir>/calibration_temp.json)")
    cmds["train"].add_argument("--resume", default=None,
                               help="checkpoint path, or 'auto' = <run_dir>/last.pth when it exists")
    cmds["cascade"].add_argument("--stage2-scores", default=None, help="CSV image_path,score[,cost_gflops]")
    cmds["infer"].add_argument("--input", required=True, help="folder of images or CSV with an image_path column")
    cmds["infer"].add_argument("--output", required=True, help="output CSV")
    args = parse_args_with_overrides(parser, argv)  # overrides may also follow the options (job files)
    cfg = get_config(args.config, args.overrides)

    if args.command == "train":
        from .stage1.train_stage1 import train
        train(cfg, resume=args.resume)
    elif args.command == "calibrate":
        from .stage1.calibrate_model import calibrate
        calibrate(cfg, checkpoint=args.checkpoint)
    elif args.command == "evaluate":
        from .stage1.evaluate_stage1 import evaluate
        evaluate(cfg, checkpoint=args.checkpoint, temperature_file=args.temperature_file)
    elif args.command == "cascade":
        from .cascade import run_cascade
        run_cascade(cfg, checkpoint=args.checkpoint, temperature_file=args.temperature_file,
                    stage2_csv=args.stage2_scores)
    else:
        from .infer import infer
        infer(cfg, args.input, args.output, checkpoint=args.checkpoint, temperature_file=args.temperature_file)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m cascade_fast_filter"))
