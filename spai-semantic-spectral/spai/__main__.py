"""``python -m spai train|test|infer``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from common_utils.cli import run_cli
from common_utils.data import SpaiRow
from common_utils.train import init_distributed

from .config import config_from_mapping, get_config
from .data import read_rows
from .engine import evaluate_rows, train_model, write_scores
from .models import build_cls_model, load_pretrained
from .utils import load_checkpoint_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def _opts(pairs) -> list:
    return [x for pair in (pairs or []) for x in pair]


def _common(p: argparse.ArgumentParser, cfg_required: bool = False):
    p.add_argument("--cfg", "--config", dest="cfg", required=cfg_required, help="yacs YAML config")
    p.add_argument("--opt", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a config key, e.g. --opt TRAIN.EPOCHS 3 (repeatable)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--output", help="output / run directory")


def _resize_arg(p):
    p.add_argument("--resize-to", type=int, default=None,
                   help="resize each image so that its biggest dimension equals this many pixels (aspect kept)")


def _model_from_checkpoint(args) -> tuple:
    """Config from --cfg if given, else the one stored in the checkpoint; then the checkpoint's weights."""
    if args.cfg:
        cfg = get_config(args.cfg, _opts(args.opt))
    else:
        stored = load_checkpoint_file(args.model).get("config")
        if not isinstance(stored, dict):
            raise ValueError(f"{args.model} stores no config; pass --cfg")
        cfg = config_from_mapping(stored, source=str(args.model))
        if args.opt:
            cfg.defrost()
            cfg.merge_from_list(_opts(args.opt))
            cfg.freeze()
    model = build_cls_model(cfg)
    epoch = load_pretrained(model, args.model)
    return cfg, model, epoch


def cmd_train(args):
    opts = _opts(args.opt)
    if args.batch_size:
        opts += ["DATA.BATCH_SIZE", args.batch_size]
    if args.learning_rate:
        opts += ["TRAIN.BASE_LR", args.learning_rate]
    if args.pretrained:
        opts += ["PRETRAINED", args.pretrained]
    if args.data_workers is not None:
        opts += ["DATA.NUM_WORKERS", args.data_workers]
    cfg = get_config(args.cfg, opts)
    data_path = args.data_path or cfg.DATA.DATA_PATH
    if not data_path:
        raise SystemExit("train: give --data-path (or DATA.DATA_PATH)")
    _, results = train_model(cfg, data_path, args.csv_root_dir or cfg.DATA.CSV_ROOT or None,
                             args.test_csv or cfg.DATA.TEST_DATA_PATH,
                             args.test_csv_root_dir or cfg.DATA.TEST_DATA_CSV_ROOT, args.resume, args.output)
    for name, m in results.items():
        print(json.dumps({"test_set": name, **m}))


def cmd_test(args):
    cfg, model, epoch = _model_from_checkpoint(args)
    ctx = init_distributed()
    model.to(ctx.device)
    out_dir = Path(args.output)
    roots = list(args.test_csv_root_dir or []) + [None] * len(args.test_csv)
    results = {}
    for csv_path, root in zip(args.test_csv, roots):
        rows = read_rows(csv_path, root, args.split)
        m = evaluate_rows(model, rows, ctx, cfg, args.resize_to, args.batch_size)
        name = Path(csv_path).stem
        results[name] = {k: v for k, v in m.items() if k not in ("scores", "labels")}
        if ctx.is_main:
            write_scores(out_dir / f"{name}_scores.csv", rows, m["scores"], f"{args.tag}_epoch_{epoch}")
        flag = "  (single class: no AUC/AP)" if results[name]["single_class"] else ""
        print(json.dumps({"test_set": name, **results[name]}) + flag)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "test_metrics.json").write_text(json.dumps(results, indent=2) + "\n")


def _folder_rows(folder: Path) -> list[SpaiRow]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [SpaiRow(p, 0, "test", i + 1) for i, p in enumerate(files)]  # label unused


def cmd_infer(args):
    cfg, model, _ = _model_from_checkpoint(args)
    ctx = init_distributed()
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


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m spai", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train / fine-tune SPAI from a SPAI CSV (split train/val)")
    _common(p, cfg_required=True)
    p.add_argument("--data-path", help="training CSV image,class,split")
    p.add_argument("--csv-root-dir", help="root of the CSV's relative paths (default: the CSV's folder)")
    p.add_argument("--pretrained", help="spai.pth (or our checkpoint) to start from")
    p.add_argument("--resume", help="checkpoint to continue from, or 'auto' (= <output>/last.pth if present)")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--data-workers", type=int)
    p.add_argument("--test-csv", action="append", help="test CSV evaluated after training (repeatable)")
    p.add_argument("--test-csv-root-dir", action="append")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="AUC / AP / accuracy per test CSV (real and fake rows scored together)")
    _common(p)
    p.add_argument("--model", required=True, help="spai.pth or one of our checkpoints")
    p.add_argument("--test-csv", action="append", required=True)
    p.add_argument("--test-csv-root-dir", action="append")
    p.add_argument("--split", default="test")
    p.add_argument("--tag", default="spai")
    _resize_arg(p)
    p.set_defaults(func=cmd_test, output="output")

    p = sub.add_parser("infer", help="score a folder of images or a CSV; writes <output>/<name>.csv")
    _common(p)
    p.add_argument("--model", default="weights/spai.pth")
    p.add_argument("--input", action="append", required=True, help="folder or CSV (repeatable)")
    p.add_argument("--input-csv-root-dir", action="append")
    p.add_argument("--split", default=None)
    p.add_argument("--tag", default="spai")
    _resize_arg(p)
    p.set_defaults(func=cmd_infer, output="output")

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m spai"))
