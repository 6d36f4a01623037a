"""CLI: python -m cascade_fast_filter train|calibrate|evaluate|cascade|infer [--config YAML] [key=value ...]
and python -m cascade_fast_filter manifest ... (manifests from dataset folder layouts; see `manifest --help`)."""
from __future__ import annotations

import argparse
import sys

from common_utils.cli import run_cli
from common_utils.train import parse_args_with_overrides

from .config import get_config

HELPS = {
    "train": "fine-tune the fast filter (best_model.pth by val AUC, early stopping, last.pth for --resume)",
    "calibrate": "fit the temperature T on val logits, report on the held-out split (calibration_temp.json, "
                 "reliability_diagram.png)",
    "evaluate": "metrics per dataset, frame and video level, cascade threshold analysis (evaluation_report.json/.md)",
    "cascade": "combine with stage-2 scores, sweep thresholds, AUC/accuracy against average cost (GFLOPs and ms)",
    "infer": "folders or CSVs of images -> CSV of calibrated P(fake) with the model's cost per image",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["manifest"]:
        from .manifests import main as manifest_main
        return manifest_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m cascade_fast_filter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmds = {name: sub.add_parser(name, help=text, description=text) for name, text in HELPS.items()}
    sub.add_parser("manifest", help="build manifests from FF++/CelebDF-v2/DFDC/DF40 folders or DeepfakeBench JSON")
    for name, p in cmds.items():
        p.add_argument("--config", default=None, help="YAML config (defaults: configs/stage1.yaml)")
        p.add_argument("overrides", nargs="*", help="dotted key=value config overrides, e.g. train.epochs=5")
        if name != "train":
            p.add_argument("--checkpoint", default=None, help="model export (default: <run_dir>/best_model.pth)")
        if name not in ("train", "calibrate"):
            p.add_argument("--temperature-file", default=None,
                           help="calibration JSON (default: <run_dir>/calibration_temp.json)")
    cmds["train"].add_argument("--resume", default=None,
                               help="'auto' = <run_dir>/last.pth when it exists, or a run-state file (last.pth)")
    cmds["train"].add_argument("--overwrite", action="store_true",
                               help="delete another run found in run_dir and start afresh")
    cmds["cascade"].add_argument("--stage2-scores", default=None, help="CSV image_path,score[,cost_gflops,cost_ms]")
    cmds["infer"].add_argument("--input", required=True, nargs="+",
                               help="folders of images or CSVs with an image_path column")
    cmds["infer"].add_argument("--output", required=True, help="output CSV")
    args = parse_args_with_overrides(parser, argv)  # overrides may also follow the options (job files)
    cfg = get_config(args.config, args.overrides)

    if args.command == "train":
        from .stage1.train_stage1 import train
        train(cfg, resume=args.resume, overwrite=args.overwrite)
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
