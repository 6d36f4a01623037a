"""``python -m spai train|test|infer|pretrain-mfm|ablate|robustness|make-test-csvs``.

Config overrides: ``--opt KEY VALUE`` (upstream's form, repeatable) or ``KEY=VALUE`` words anywhere on the line.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from common_utils.cli import run_cli
from common_utils.data import SpaiRow
from common_utils.train import init_distributed, parse_args_with_overrides

from .config import config_from_mapping, get_config
from .data import read_rows
from .engine import evaluate_csvs, evaluate_rows, train_model, write_scores
from .models import build_cls_model, load_pretrained
from .tools.create_test_csvs import IMAGE_SUFFIXES, create_test_csvs, parse_fake
from .utils import load_checkpoint_file


def _opts(args) -> list:
    pairs = [x for pair in (args.opt or []) for x in pair]
    for word in args.overrides:
        key, _, value = word.partition("=")
        pairs += [key, value]
    return pairs


def _common(p: argparse.ArgumentParser, cfg_required: bool = False):
    p.add_argument("--cfg", "--config", dest="cfg", required=cfg_required, help="yacs YAML config")
    p.add_argument("--opt", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a config key, e.g. --opt TRAIN.EPOCHS 3 (repeatable; KEY=VALUE also works)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--output", help="output / run directory")


def _run_args(p: argparse.ArgumentParser):
    p.add_argument("--resume", help="'auto' (continue <output>/last.pth if present) or a run-state last.pth")
    p.add_argument("--overwrite", action="store_true", help="delete another run found in --output and start afresh")


def _resize_arg(p):
    p.add_argument("--resize-to", type=int, default=None,
                   help="resize each image so that its biggest dimension equals this many pixels (aspect kept)")


def _model_from_checkpoint(args) -> tuple:
    """Config from --cfg if given, else the one stored in the checkpoint; then the checkpoint's weights."""
    if args.cfg:
        cfg = get_config(args.cfg, _opts(args))
    else:
        stored = load_checkpoint_file(args.model).get("config")
        if not isinstance(stored, dict):
            raise ValueError(f"{args.model} stores no config; pass --cfg")
        cfg = config_from_mapping(stored, source=str(args.model))
        if _opts(args):
            cfg.defrost()
            cfg.merge_from_list(_opts(args))
            cfg.freeze()
    model = build_cls_model(cfg)
    loaded = load_pretrained(model, args.model)
    if loaded.kind == "mfm":
        raise ValueError(f"{args.model} is an MFM pre-training checkpoint (a backbone only); give a trained SPAI "
                         "checkpoint (best.pth of a run, or spai.pth)")
    return cfg, model, loaded.epoch


def _train_opts(args) -> list:
    opts = _opts(args)
    for flag, key in ((args.batch_size, "DATA.BATCH_SIZE"), (getattr(args, "learning_rate", None), "TRAIN.BASE_LR"),
                      (getattr(args, "pretrained", None), "PRETRAINED"),
                      (getattr(args, "data_workers", None), "DATA.NUM_WORKERS")):
        if flag is not None:
            opts += [key, flag]
    return opts


def _data_path(args, cfg) -> str:
    path = args.data_path or cfg.DATA.DATA_PATH
    if not path:
        raise SystemExit(f"{args.cmd}: give --data-path (or DATA.DATA_PATH)")
    return path


def cmd_train(args):
    cfg = get_config(args.cfg, _train_opts(args))
    _, results = train_model(cfg, _data_path(args, cfg), args.csv_root_dir or cfg.DATA.CSV_ROOT or None,
                             args.test_csv or cfg.DATA.TEST_DATA_PATH,
                             args.test_csv_root_dir or cfg.DATA.TEST_DATA_CSV_ROOT, args.resume,
                             args.output, args.overwrite)
    if results:
        print((Path(args.output or cfg.OUTPUT) / "test_metrics.md").read_text(), end="")


def cmd_pretrain_mfm(args):
    from .pretrain import pretrain_mfm
    cfg = get_config(args.cfg, _train_opts(args))
    path = pretrain_mfm(cfg, _data_path(args, cfg), args.csv_root_dir or cfg.DATA.CSV_ROOT or None, args.resume,
                        args.output, args.overwrite)
    print(f"wrote {path}")


def cmd_test(args):
    cfg, model, epoch = _model_from_checkpoint(args)
    ctx = init_distributed(cfg.DEVICE)
    model.to(ctx.device)
    out_dir = Path(args.output)
    evaluate_csvs(model, args.test_csv, args.test_csv_root_dir, ctx, cfg, out_dir, f"{args.tag}_epoch_{epoch}",
                  split=args.split, resize_to=args.resize_to, batch_size=args.batch_size)
    if ctx.is_main:
        print((out_dir / "test_metrics.md").read_text(), end="")


def cmd_robustness(args):
    from .robustness import LEVELS, sweep, write_sweep
    cfg, model, _ = _model_from_checkpoint(args)
    ctx = init_distributed(cfg.DEVICE)
    model.to(ctx.device)
    kinds = args.kinds.split(",") if args.kinds else list(LEVELS)
    results = sweep(model, args.test_csv, args.test_csv_root_dir, ctx, cfg, kinds, args.batch_size)
    if ctx.is_main:
        paths = write_sweep(results, Path(args.output), title=f"robustness of {args.model}")
        print(paths[1].read_text(), end="")


def cmd_ablate(args):
    from .ablation import run_ablation
    out = Path(args.output)
    run_ablation(args.cfg, _train_opts(args), args.data_path, args.csv_root_dir, args.test_csv,
                 args.test_csv_root_dir or [], args.seeds, out, args.rows.split(",") if args.rows else None)
    print((out / "ablation.md").read_text(), end="")


def cmd_make_test_csvs(args):
    fakes = dict(parse_fake(spec) for spec in args.fake)
    for path in create_test_csvs(args.real, fakes, args.out, args.split):
        print(f"wrote {path}")


def _folder_rows(folder: Path) -> list[SpaiRow]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [SpaiRow(p, 0, "test", i + 1) for i, p in enumerate(files)]  # label unused


def cmd_infer(args):
    cfg, model, _ = _model_from_checkpoint(args)
    ctx = init_distributed(cfg.DEVICE)
    model.to(ctx.device)
    roots = list(args.input_csv_root_dir or []) + [None] * len(args.input)
    for inp, root in zip(args.input, roots):
        inp = Path(inp)
        rows = _folder_rows(inp) if inp.is_dir() else read_rows(inp, root, args.split)
        m = evaluate_rows(model, rows, ctx, cfg, args.resize_to, args.batch_size or 1)
        if ctx.is_main:
            out = Path(args.output) / f"{inp.stem}.csv"
            write_scores(out, rows, m["scores"], args.tag, with_label=not inp.is_dir())
            print(f"wrote {out} ({len(rows)} images)")


def _test_csv_args(p, required=True):
    p.add_argument("--test-csv", action="append", required=required, help="test CSV (repeatable); each is one set")
    p.add_argument("--test-csv-root-dir", action="append",
                   help="root of the CSVs' relative paths: none = each CSV's folder, one = for all, or one per CSV")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spai", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train / fine-tune SPAI from a SPAI CSV (split train/val)")
    _common(p, cfg_required=True)
    _run_args(p)
    p.add_argument("--data-path", help="training CSV image,class,split")
    p.add_argument("--csv-root-dir", help="root of the CSV's relative paths (default: the CSV's folder)")
    p.add_argument("--pretrained", help="MFM pre-training checkpoint (the ViT) or a SPAI checkpoint (PRETRAINED)")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--data-workers", type=int)
    _test_csv_args(p, required=False)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pretrain-mfm", help="MFM pre-training of the ViT on a CSV's real training images")
    _common(p, cfg_required=True)
    _run_args(p)
    p.add_argument("--data-path", help="SPAI CSV; its class-0 rows of split train (and val, for the val loss)")
    p.add_argument("--csv-root-dir")
    p.add_argument("--data-workers", type=int)
    p.set_defaults(func=cmd_pretrain_mfm)

    p = sub.add_parser("test", help="AUC / AP / accuracy per test CSV (real and fake rows scored together)")
    _common(p)
    p.add_argument("--model", required=True, help="spai.pth or a best.pth of ours")
    _test_csv_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--tag", default="spai")
    _resize_arg(p)
    p.set_defaults(func=cmd_test, output="output")

    p = sub.add_parser("robustness", help="AUC per test set against JPEG / WebP / blur / noise / resize strength")
    _common(p)
    p.add_argument("--model", required=True)
    _test_csv_args(p)
    p.add_argument("--kinds", help="comma-separated subset of jpeg,webp,blur,noise,resize (default: all)")
    p.set_defaults(func=cmd_robustness, output="output/robustness")

    p = sub.add_parser("ablate", help="base, each enhancement alone, all, all + design loss; over seeds")
    _common(p, cfg_required=True)
    p.add_argument("--data-path", required=True)
    p.add_argument("--csv-root-dir")
    p.add_argument("--pretrained", help="PRETRAINED for every run (the MFM backbone)")
    _test_csv_args(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", help="comma-separated subset of the rows (default: all)")
    p.set_defaults(func=cmd_ablate, output="output/ablation")

    p = sub.add_parser("make-test-csvs", help="per-generator test CSVs from folders of real and generated images")
    p.add_argument("--real", action="append", required=True, help="folder of real images (repeatable)")
    p.add_argument("--fake", action="append", required=True, help="NAME=FOLDER of one generator (repeatable)")
    p.add_argument("--out", required=True, help="folder for test_<NAME>.csv (paths relative to it)")
    p.add_argument("--split", default="test")
    p.set_defaults(func=cmd_make_test_csvs)

    p = sub.add_parser("infer", help="score a folder of images or a CSV; writes <output>/<name>.csv")
    _common(p)
    p.add_argument("--model", default="weights/spai.pth")
    p.add_argument("--input", action="append", required=True, help="folder or CSV (repeatable)")
    p.add_argument("--input-csv-root-dir", action="append")
    p.add_argument("--split", default=None)
    p.add_argument("--tag", default="spai")
    _resize_arg(p)
    p.set_defaults(func=cmd_infer, output="output")
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args_with_overrides(build_parser(), argv)
    if args.overrides and not hasattr(args, "opt"):
        raise SystemExit(f"{args.cmd}: KEY=VALUE overrides are not used here: {' '.join(args.overrides)}")
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m spai"))
