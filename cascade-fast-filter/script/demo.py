"""The demo (run by script/demo.sh): the plan's stage-1 pipeline on video-structured synthetic data, and its criteria.

1. ``ai_images`` (common_utils.synthetic, n = N_IMAGES, seed = DEMO_SEED) -> clips of FRAMES compressed frames each
   (``cascade_fast_filter.synthetic_videos``) in DeepfakeBench's layout -> manifests through the manifest builder's
   DeepfakeBench-JSON reader (video kept per frame).
2. Stage 2, the expensive detector: timm's test_resnet trained on 32-px crops and run on the whole 96-px frame
   (``model.test_size``; 74 MFLOPs per frame).
3. Stage 1, the fast filter: timm's test_efficientnet on a 32-px centre crop (4.6 MFLOPs, 1/16 of stage 2), trained
   with early stopping on val AUC, calibrated on val and reported on test, evaluated at frame and video level,
   combined with stage 2's scores in the cascade (operating point chosen on val, reported on test).
4. ``summary.json`` and ``criteria.json`` (the plan's Success Metrics, measured on the held-out test split).

Every CLI step runs in this interpreter (same arguments as ``python -m cascade_fast_filter ...``). Arguments: the
output folder. Env: DEMO_SEED (default 0).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from cascade_fast_filter.__main__ import main
from common_utils.criteria import criterion, write_criteria
from common_utils.metrics import THRESHOLD_RULE

N_IMAGES = 400  # ai_images reals (and as many fakes): 200/80/120 per class in train/val/test
FRAMES, FRAME_SIZE = 2, 96  # frames per clip, frame size (px)
# stage 1: test_efficientnet on a 32-px crop (4.6 MFLOPs); stage 2: test_resnet trained on 32-px crops, run on the
# whole 96-px frame (74 MFLOPs, 16x stage 1)
STAGE1 = ["model.input_size=32", "train.epochs=50", "train.patience=10"]  # the plan's epochs and patience
STAGE2 = ["model.name=test_resnet", "model.input_size=32", "model.test_size=96", "train.epochs=10"]
MANIFESTS = ("train", "val", "test")


CPU: dict[str, float] = {}  # CPU seconds of this process per step


def cli(*argv):
    print("+ python -m cascade_fast_filter", " ".join(map(str, argv)), flush=True)
    start = time.process_time()
    assert main([str(a) for a in argv]) == 0
    run_dir = next((str(a) for a in argv if str(a).startswith("run_dir=")), "")
    step = f"{argv[0]} {'stage 2' if run_dir.endswith('stage2') else 'stage 1'}" if run_dir else str(argv[0])
    CPU[step] = CPU.get(step, 0.0) + time.process_time() - start


def build_data(out: Path, seed: int) -> Path:
    """ai_images -> clips -> manifests (all frames, and one frame per video for stage 2's training)."""
    from cascade_fast_filter.synthetic_videos import write_clips
    from common_utils.synthetic.ai_images import generate

    ai, clips = out / "data" / "ai_images", out / "data" / "clips"
    start = time.process_time()
    generate(ai, n=N_IMAGES, seed=seed)
    json_path = write_clips(ai, clips, frames=FRAMES, size=FRAME_SIZE, seed=seed)
    CPU["data"] = time.process_time() - start
    cli("manifest", "--out", clips / "manifests", "--data-root", clips, "--deepfakebench", json_path)
    return clips


def measure_ms(out: Path, batch_size: int) -> dict:
    """ms per frame of both stages, measured in alternation on this CPU at the inference batch size."""
    from cascade_fast_filter.costs import measure_side_by_side
    from cascade_fast_filter.stage1.model import eval_size, load_trained_model
    from omegaconf import OmegaConf

    models = {}
    for stage in ("stage1", "stage2"):
        model, ckpt = load_trained_model(out / stage / "best_model.pth")
        models[stage] = (model, eval_size(OmegaConf.create(ckpt["config"]["model"])))
    return measure_side_by_side(models, batch_size, "cpu", rounds=3, repeats=2)


def criteria(out: Path, n_test_videos: int) -> list[dict]:
    s1 = out / "stage1"
    cal = json.loads((s1 / "calibration_temp.json").read_text())
    ev = json.loads((s1 / "evaluation_report.json").read_text())
    casc = json.loads((s1 / "cascade_report.json").read_text())
    best = json.loads((s1 / "metrics.jsonl").read_text().splitlines()[-1])["best_val_auc"]
    o, rep = ev["overall"], cal["report"]
    floor, ci = cal["ece_noise_floor"], cal["temperature_interval"]
    at98 = o["cascade"]["0.98"]
    frames = f"{o['n']} test frames of {n_test_videos} videos"
    op, ref = casc["frame"]["operating_point"], casc["frame"]["references"]
    auc2 = ref["stage 2 only"]["auc"]
    missing = "no sweep threshold met leakage <= 0.05 (upper bound) and AUC within 0.01 of stage 2 on val"
    op_note = f"t = {op['threshold']} chosen on val (cheapest whose leakage, as its one-sided " \
              f"{op['selected_on']['confidence']:g} upper bound, is <= {casc['max_leakage']} and AUC >= stage 2's - " \
              f"{casc['max_auc_drop']}; val leakage {op['selected_on']['leakage_rate']:.3f}, bound " \
              f"{op['selected_on']['leakage_upper_bound']:.3f}), reported on test" if op else missing
    return [
        criterion("stage-1 AUC (plan: validation AUC > 0.85), held-out frames", "> 0.85", o["auc"], split="test",
                  n=o["n"], note=f"{frames}; best val AUC {best:.4f} (the checkpoint's selection metric)",
                  val_auc=best),
        criterion("stage-1 F1 at the 0.5 threshold", "> 0.80", o["f1"], split="test", n=o["n"],
                  note=f"{frames}; fake when P(fake) {THRESHOLD_RULE[ev['convention']]} 0.5 (convention "
                  f"{ev['convention']})"),
        criterion("held-out ECE reduction after temperature scaling", "> 0.50", rep["ece_reduction"], split="test",
                  n=rep["n"], note=f"T = {cal['temperature']:.4f} fitted on val; {cal['ece_definition']['definition']}"
                  f", {cal['ece_definition']['n_bins']} bins; a perfectly calibrated model with these predictions "
                  f"shows ECE "
                  f"{floor['before']['mean']:.3f} before / {floor['after']['mean']:.3f} after (p95 "
                  f"{floor['before']['p95']:.3f} / {floor['after']['p95']:.3f}) from sampling alone; T's 95 % "
                  f"bootstrap interval over val videos {ci['low']:.2f}-{ci['high']:.2f}",
                  ece_before=rep["ece_before"], ece_after=rep["ece_after"],
                  noise_floor_before=floor["before"]["mean"], noise_floor_after=floor["after"]["mean"],
                  temperature=cal["temperature"], temperature_interval=[ci["low"], ci["high"]]),
        criterion("leakage at t = 0.98 (fakes settled as real)", "< 0.05", at98["leakage_rate"], split="test",
                  n=o["n_fake"], note=f"settled when calibrated P(real) >= 0.98; {frames}"),
        criterion("filtration at t = 0.98", "> 0.30", at98["filtration_rate"], split="test", n=o["n"],
                  note=f"bound at this class mix: {at98['filtration_bound']:.3f} (real share + leakage x fake share)",
                  filtration_bound=at98["filtration_bound"]),
        criterion("cascade cost vs stage 2 only (GFLOPs), leakage <= 5 % and AUC within 0.01 of stage 2",
                  "<= 0.7", op and op["cost_ratio_gflops"], split="test", n=o["n"], note=op_note,
                  cost_ratio_ms=op and op.get("cost_ratio_ms"), threshold=op and op["threshold"],
                  c1_gflops=casc["costs"]["stage1"]["gflops"], c2_gflops=casc["costs"]["stage2"]["gflops"]),
        criterion("cascade leakage at that operating point", "<= 0.05", op and op["leakage_rate"], split="test",
                  n=o["n_fake"], note=op_note),
        criterion("cascade AUC drop vs stage 2 only at that operating point", "<= 0.01", op and op["auc_drop"],
                  split="test", n=o["n"], note=op_note, cascade_auc=op and op["auc"], stage2_auc=auc2),
    ]


def run(out: Path, seed: int) -> None:
    start, cpu0 = time.time(), time.process_time()
    clips = build_data(out, seed)
    common = ["--config", "configs/tiny.yaml", f"data.root={clips}", f"seed={seed}", "data.cache_decoded=true",
              *(f"data.{s}_manifest=manifests/{s}_manifest.csv" for s in MANIFESTS)]
    s2 = [*common, f"run_dir={out / 'stage2'}", *STAGE2]
    s1 = [*common, f"run_dir={out / 'stage1'}", *STAGE1]
    scores = out / "stage2_scores.csv"
    cli("train", *s2, "--overwrite")
    cli("calibrate", *s2)
    cli("infer", *s2, "--input", clips / "manifests/val_manifest.csv", clips / "manifests/test_manifest.csv",
        "--output", scores)
    cli("train", *s1, "--overwrite")
    cli("calibrate", *s1)
    cpu_timing = time.process_time()
    ms = measure_ms(out, batch_size=64)
    CPU["timing both stages"] = time.process_time() - cpu_timing
    costs = [f"cascade.stage2_scores={scores}", f"cascade.stage1_ms={ms['stage1']}",
             f"cascade.stage2_ms={ms['stage2']}"]
    cli("evaluate", *s1, *costs)
    cli("cascade", *s1, *costs)

    ev = json.loads((out / "stage1" / "evaluation_report.json").read_text())
    casc = json.loads((out / "stage1" / "cascade_report.json").read_text())
    n_test_videos = ev["video"]["prob"]["n_videos"]
    items = criteria(out, n_test_videos)
    write_criteria(out / "criteria.json", items)
    cal = json.loads((out / "stage1" / "calibration_temp.json").read_text())
    history = [json.loads(line) for line in (out / "stage1" / "metrics.jsonl").read_text().splitlines()]
    vop = casc["video"]["operating_point"]
    r = lambda v: None if v is None else round(v, 4)  # noqa: E731
    headline = {
        **{c["criterion"]: r(c["measured"]) for c in items},
        "stage1 epochs trained (early stopping)": len(history),
        "temperature (fit on val)": r(cal["temperature"]),
        "test ECE before -> after": f"{cal['report']['ece_before']:.4f} -> {cal['report']['ece_after']:.4f}",
        "test NLL before -> after": f"{cal['report']['nll_before']:.4f} -> {cal['report']['nll_after']:.4f}",
        "stage 2 only test AUC": r(casc["frame"]["references"]["stage 2 only"]["auc"]),
        "video AUC (mean prob / mean logit)": f"{ev['video']['prob']['auc']:.4f} / {ev['video']['logit']['auc']:.4f}",
        "video cascade cost vs stage 2 (GFLOPs)": None if vop is None else r(vop["cost_ratio_gflops"]),
        "stage 1 / stage 2 ms per frame (CPU, batch 64)": f"{ms['stage1']:.3f} / {ms['stage2']:.3f}",
    }
    seconds, cpu = time.time() - start, time.process_time() - cpu0
    summary = {
        "status": "ok", "headline": headline, "cpu_seconds": {k: round(v, 1) for k, v in CPU.items()},
        "figures": [str(p.relative_to(out)) for p in sorted((out / "stage1").glob("*.png"))
                    if "_ai_images" not in p.name],
        "notes": f"DEMO_SEED={seed}: ai_images n={N_IMAGES} -> {FRAMES}-frame clips of {FRAME_SIZE} px (JPEG q 60-95 "
                 f"per clip), DeepfakeBench layout + JSON -> manifests; tiny config, random init; stage 1 timm "
                 f"test_efficientnet on a 32-px centre crop, stage 2 timm test_resnet on the whole 96-px frame "
                 f"(trained on 32-px crops); T fitted on val, criteria on the held-out test split "
                 f"({ev['overall']['n']} frames, {n_test_videos} videos); metric convention '{ev['convention']}'; "
                 f"{seconds:.0f} s wall, {cpu:.0f} s CPU in this process.",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(json.dumps(items, indent=1))


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(os.environ.get("DEMO_SEED", "0")))
