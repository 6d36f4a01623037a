"""End to end through the CLI: train -> calibrate -> evaluate -> infer -> cascade, on the synthetic set."""
import json

import pytest
from cascade_fast_filter.__main__ import main


@pytest.fixture(scope="module")
def trained(ai_images, tmp_path_factory):
    run = tmp_path_factory.mktemp("pipeline") / "run"
    common = ["--config", "configs/tiny.yaml", f"data.root={ai_images}", f"run_dir={run}", "model.input_size=48",
              "train.epochs=2"]
    assert main(["train", *common]) == 0
    return run, common


def test_calibrate_writes_temperature_and_diagram(trained):
    run, common = trained
    assert main(["calibrate", *common, "calibration.report_split=test"]) == 0
    cal = json.loads((run / "calibration_temp.json").read_text())
    assert 0.1 <= cal["temperature"] <= 10.0 and cal["objective"] == "nll"
    assert cal["fit_split"] == "val" and cal["report_split"] == "test" and "success" in cal["optimizer"]
    assert cal["fit"]["nll_after"] <= cal["fit"]["nll_before"] + 1e-9  # NLL-optimal T cannot be worse than T=1
    assert {"ece_before", "ece_after"} <= set(cal["report"]) and "definition" in cal["ece_definition"]
    assert (run / "reliability_diagram.png").stat().st_size > 0


def test_evaluate_and_cascade(trained, ai_images, tmp_path):
    run, common = trained
    if not (run / "calibration_temp.json").exists():
        main(["calibrate", *common])
    assert main(["evaluate", *common, "cascade.stage2_gflops=5.0"]) == 0
    rep = json.loads((run / "evaluation_report.json").read_text())
    assert set(rep["per_dataset"]) == {"tconv", "nearest_blur"}
    overall = rep["overall"]
    assert overall["n"] == sum(d["n"] for d in rep["per_dataset"].values())
    assert set(overall["cascade"]) == {"0.90", "0.95", "0.98", "0.99"}
    row = overall["cascade"]["0.98"]
    assert row["filtration_rate"] <= row["filtration_bound"] + 1e-12
    assert row["expected_cost_gflops"] == pytest.approx(rep["c1_gflops"] + (1 - row["filtration_rate"]) * 5.0)
    assert sum(overall["confidence_histogram"]["real"]) == overall["n_real"]
    kinds = ("reliability_eval", "confidence_histogram")
    per_dataset = [f"{kind}_{d}.png" for d in rep["per_dataset"] for kind in kinds]
    for name in ("roc_curve.png", "evaluation_report.md", *(f"{kind}.png" for kind in kinds), *per_dataset):
        assert (run / name).stat().st_size > 0

    # infer the test split with the same model and use it as the stage-2 scores (cost declared in the CSV)
    manifest = ai_images / "manifests" / "test_manifest.csv"
    scores = tmp_path / "stage2.csv"
    assert main(["infer", *common, "--input", str(manifest), "--output", str(scores)]) == 0
    header = scores.read_text().splitlines()[0].split(",")
    assert header == ["image_path", "logit", "p_fake", "score", "cost_gflops"]
    assert main(["cascade", *common, "--stage2-scores", str(scores)]) == 0
    casc = json.loads((run / "cascade_report.json").read_text())
    assert casc["c2_gflops"] == pytest.approx(casc["c1_gflops"], rel=1e-4)  # declared by infer's CSV
    for p in casc["sweep"]:
        assert p["avg_cost_gflops"] == pytest.approx(casc["c1_gflops"] + (1 - p["filtration_rate"]) * casc["c2_gflops"])
    assert casc["operating_point"] is not None  # stage 2 = stage 1 here, so a zero-leakage threshold exists
    assert casc["operating_point"]["leakage_rate"] <= casc["max_leakage"]
    assert (run / "cascade_tradeoff.png").stat().st_size > 0


def test_cascade_without_scores_for_every_image_names_one(trained, tmp_path):
    run, common = trained
    partial = tmp_path / "partial.csv"
    partial.write_text("image_path,score,cost_gflops\nimages/real/real_00000.png,0.1,3.0\n")
    with pytest.raises(Exception, match="no score for"):
        main(["cascade", *common, "--stage2-scores", str(partial)])


@pytest.mark.parametrize("cmd", ["train", "calibrate", "evaluate", "cascade", "infer"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and "--config" in capsys.readouterr().out
