"""End to end through the CLI on video data: train (the model learns) -> calibrate -> evaluate (frame and video
level) -> infer -> cascade (frame and video level)."""
import csv
import json

import pytest
from cascade_fast_filter.__main__ import main
from common_utils.train import load_checkpoint
from common_utils.train.testing import metrics_rows
from conftest import CLIP_MANIFESTS, ROOT

EPOCHS = 6


@pytest.fixture(scope="module")
def trained(clips, tmp_path_factory):
    run = tmp_path_factory.mktemp("pipeline") / "run"
    common = ["--config", str(ROOT / "configs" / "tiny.yaml"), f"data.root={clips}", f"run_dir={run}",
              "model.input_size=48", f"train.epochs={EPOCHS}", "data.cache_decoded=true", "train.log_every=100000",
              *CLIP_MANIFESTS]
    assert main(["train", *common]) == 0
    assert main(["calibrate", *common]) == 0
    return run, common


def test_tiny_model_learns_and_logs_every_epoch(trained):
    run, _ = trained
    rows = metrics_rows(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    best = load_checkpoint(run / "best_model.pth")
    assert best["val_auc"] == max(r["val_auc"] for r in rows) > 0.8, rows
    assert best["config"]["model"]["input_size"] == 48 and best["epoch"] == load_checkpoint(run / "last.pth")[
        "extra"]["best_epoch"]
    with open(run / "training_log.csv") as f:
        log = list(csv.DictReader(f))
    assert len(log) == EPOCHS and {"train_loss", "train_acc", "val_auc", "val_f1", "epochs_since_best"} <= set(log[0])
    state = load_checkpoint(run / "last.pth")
    assert state["epoch"] == EPOCHS and state["extra"]["best_val_auc"] == best["val_auc"]
    assert rows[state["extra"]["best_epoch"] - 1]["val_auc"] == best["val_auc"] and (run / "config.yaml").is_file()


def test_calibrate_fits_on_val_and_reports_on_test(trained):
    run, _ = trained
    cal = json.loads((run / "calibration_temp.json").read_text())
    assert 0.1 <= cal["temperature"] <= 10.0 and cal["objective"] == "nll" and cal["optimizer"]["success"]
    assert cal["fit_split"] == "val" and cal["report_split"] == "test"  # held-out report by default
    assert cal["fit"]["nll_after"] <= cal["fit"]["nll_before"] + 1e-12  # the NLL optimum cannot lose to T = 1
    assert {"ece_before", "ece_after", "ece_reduction"} <= set(cal["report"]) and cal["report"]["n"] > 0
    assert cal["ece_definition"]["n_bins"] == 15 and (run / "reliability_diagram.png").stat().st_size > 0


def test_evaluate_prints_the_video_table(trained, capsys):
    run, common = trained
    assert main(["evaluate", *common, "cascade.stage2_gflops=5.0", "cascade.stage2_ms=2.0"]) == 0
    out = capsys.readouterr().out
    assert "test (videos, convention deepfakebench)" in out
    assert "| prob: mean of the frames' calibrated P(fake) |" in out
    assert "Video-level cascade (logit)" in out
    rep = json.loads((run / "evaluation_report.json").read_text())
    overall, video = rep["overall"], rep["video"]
    assert overall["n"] == 3 * video["prob"]["n_videos"]  # three frames per clip
    assert set(overall["cascade"]) == {"0.90", "0.95", "0.98", "0.99"}
    row = overall["cascade"]["0.98"]
    assert row["filtration_rate"] <= row["filtration_bound"] + 1e-12
    c1 = rep["costs"]["stage1"]
    assert row["expected_cost_gflops"] == pytest.approx(c1["gflops"] + (1 - row["filtration_rate"]) * 5.0)
    assert row["expected_cost_ms"] == pytest.approx(c1["ms"] + (1 - row["filtration_rate"]) * 2.0)
    for how in ("prob", "logit"):
        v = video[how]["cascade"]["0.98"]
        assert v["expected_cost_gflops"] == pytest.approx(c1["gflops"] + (1 - v["frame_filtration"]) * 5.0)
    assert sum(overall["confidence_histogram"]["real"]) == overall["n_real"]
    assert "## Video level" in (run / "evaluation_report.md").read_text()
    for name in ("roc_curve.png", "reliability_eval.png", "confidence_histogram.png"):
        assert (run / name).stat().st_size > 0


def test_infer_and_cascade_at_frame_and_video_level(trained, clips, tmp_path):
    run, common = trained
    scores = tmp_path / "stage2.csv"  # the same model as stage 2: its val and test scores, cost declared in the CSV
    assert main(["infer", *common, "--input", str(clips / "manifests/val_manifest.csv"),
                 str(clips / "manifests/test_manifest.csv"), "--output", str(scores)]) == 0
    header = scores.read_text().splitlines()[0].split(",")
    assert header == ["image_path", "logit", "p_fake", "score", "cost_gflops", "cost_ms"]
    # the tiny val split has too few fake videos to bound leakage by 5 % at 95 % confidence: point estimate here
    assert main(["cascade", *common, "--stage2-scores", str(scores), "cascade.stage1_ms=1.0",
                 "cascade.leakage_confidence=0"]) == 0
    casc = json.loads((run / "cascade_report.json").read_text())
    assert casc["select_split"] == "val" and casc["split"] == "test"
    assert casc["costs"]["stage2"]["gflops"] == pytest.approx(casc["costs"]["stage1"]["gflops"], rel=1e-4)
    for level in ("frame", "video"):
        r = casc[level]
        for p in r["sweep"]:
            c1, c2 = casc["costs"]["stage1"]["gflops"], casc["costs"]["stage2"]["gflops"]
            assert p["avg_cost_gflops"] == pytest.approx(c1 + (1 - p["frame_filtration"]) * c2)
        op = r["operating_point"]  # stage 2 = stage 1 here: a threshold with no leakage and no AUC drop exists
        assert op is not None and op["selected_on"]["split"] == "val" and op["selected_on"]["leakage_rate"] <= 0.05
        assert op["cost_ratio_gflops"] == pytest.approx(op["avg_cost_gflops"] / casc["costs"]["stage2"]["gflops"])
    assert casc["video"]["n"] * 3 == casc["frame"]["n"]
    assert (run / "cascade_tradeoff.png").stat().st_size > 0 and (run / "cascade_tradeoff_video.png").is_file()


def test_cascade_without_scores_for_every_image_names_one(trained, tmp_path):
    _, common = trained
    partial = tmp_path / "partial.csv"
    partial.write_text("image_path,score,cost_gflops\nrgb/real/frames/real_00000/000.png,0.1,3.0\n")
    with pytest.raises(Exception, match="no score for"):
        main(["cascade", *common, "--stage2-scores", str(partial)])


def test_ours_convention_groups_videos_by_the_manifest_video_column(trained, capsys):
    run, common = trained
    assert main(["evaluate", *common, "eval.convention=ours"]) == 0
    rep = json.loads((run / "evaluation_report.json").read_text())
    assert rep["convention"] == "ours" and rep["video"]["prob"]["n_videos"] * 3 == rep["overall"]["n"]
    assert "convention ours" in capsys.readouterr().out


@pytest.mark.parametrize("cmd", ["train", "calibrate", "evaluate", "cascade", "infer", "manifest"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and ("--config" in capsys.readouterr().out or cmd == "manifest")
