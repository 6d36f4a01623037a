"""The evaluation researchers run: ablation rows from one initialisation, per-test-set tables, test CSVs from
folders, the robustness perturbations and sweep."""
import csv
import json

import numpy as np
import pytest
import torch
from conftest import CONFIGS, write_png
from PIL import Image
from spai.ablation import ALL, ALL_DESIGN_LOSS, BASE, SWITCHES, all_rows, row_options, verdict, write_ablation
from spai.config import get_config
from spai.models import build_cls_model
from spai.robustness import LEVELS, Perturbation, _curve, sweep, write_sweep
from spai.tables import write_test_tables
from spai.tools.create_test_csvs import create_test_csvs, parse_fake


def _get(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def test_ablation_rows_switch_one_enhancement_each():
    cfg = get_config(CONFIGS / "tiny_enhanced.yaml")
    rows = all_rows(cfg)
    assert rows[0] == BASE and rows[-2:] == [ALL, ALL_DESIGN_LOSS]
    for row in rows:
        row_cfg = get_config(CONFIGS / "tiny_enhanced.yaml", row_options(cfg, row))
        on = {name for name, key in SWITCHES.items() if _get(row_cfg, key)}
        expected = set() if row == BASE else ({row} if row in SWITCHES else {r for r in rows if r in SWITCHES})
        assert on == expected, row
        assert row_cfg.TRAIN.LOSS == ("focal" if row == ALL_DESIGN_LOSS else cfg.TRAIN.LOSS), row
    with pytest.raises(ValueError, match="no enhancement"):
        row_options(get_config(CONFIGS / "tiny.yaml"), BASE)


def test_every_row_starts_from_the_same_initialisation():
    """At one seed, every tensor base SPAI has is identical in each ablation row's model."""
    cfg = get_config(CONFIGS / "tiny_enhanced.yaml")
    models = {}
    for row in all_rows(cfg)[:-1]:
        torch.manual_seed(3)
        models[row] = build_cls_model(get_config(CONFIGS / "tiny_enhanced.yaml", row_options(cfg, row))).state_dict()
    base = models.pop(BASE)
    for row, state in models.items():
        assert set(base) <= set(state), row
        different = [k for k in base if not torch.equal(base[k], state[k])]
        assert not different, (row, different[:5])


def test_ablation_table_mean_std_and_paired_difference(tmp_path):
    def run(aucs):
        return {"test": {f"test_{g}": {"auc": a, "ap": a, "acc": 0.5} for g, a in zip("ab", aucs)}, "history": []}

    results = {BASE: {0: run([0.6, 0.8]), 1: run([0.7, 0.9])}, ALL: {0: run([0.8, 0.8]), 1: run([0.7, 1.0])}}
    write_ablation(results, tmp_path)
    table = {(r["row"], r["test_set"], r["metric"]): (float(r["mean"]), float(r["std"]))
             for r in csv.DictReader(open(tmp_path / "ablation.csv"))}
    assert table[(BASE, "test_a", "auc")] == pytest.approx((0.65, 0.0707107), abs=1e-6)
    assert table[(BASE, "mean", "auc")] == pytest.approx((0.75, 0.0707107), abs=1e-6)  # per seed 0.7, 0.8
    assert table[(ALL, "mean", "delta_auc_vs_base")] == pytest.approx((0.075, 0.0353553), abs=1e-6)  # +0.1, +0.05
    assert (BASE, "mean", "delta_auc_vs_base") not in table
    md = (tmp_path / "ablation.md").read_text().splitlines()
    # two seeds, Δ +0.1 and +0.05: t = 3.0 is under t(1 df, 97.5 %) = 12.7, so the gain is within the seed noise
    assert md[-1].startswith(f"| {ALL} | 0.750 ± 0.071 | 0.900 ± 0.141 | 0.825 ± 0.035 | 0.075 ± 0.035 | 2/2 | noise |")


def test_ablation_verdict_is_a_paired_t_test():
    assert verdict([0.10, 0.11, 0.12]) == "helps"  # t = 19 > t(2 df, 97.5 %) = 4.30
    assert verdict([-0.10, -0.11, -0.12]) == "hurts"
    assert verdict([0.10, -0.05, 0.02]) == "noise"
    assert verdict([0.10, 0.05]) == "noise"  # t = 3.0 < 12.7
    assert verdict([0.05]) == "one seed"


def test_ablation_compares_the_design_loss_to_all(tmp_path):
    def run(auc):
        return {"test": {"test_a": {"auc": auc, "ap": auc, "acc": 0.5}}, "history": []}

    results = {BASE: {0: run(0.7), 1: run(0.8), 2: run(0.75)}, ALL: {0: run(0.9), 1: run(0.92), 2: run(0.94)},
               ALL_DESIGN_LOSS: {0: run(0.8), 1: run(0.81), 2: run(0.85)}}
    write_ablation(results, tmp_path)
    table = {(r["row"], r["test_set"], r["metric"]): float(r["mean"])
             for r in csv.DictReader(open(tmp_path / "ablation.csv"))}
    assert table[(ALL_DESIGN_LOSS, "mean", "delta_auc_vs_all")] == pytest.approx(-0.1, abs=1e-6)
    md = (tmp_path / "ablation.md").read_text()
    assert f"`{ALL_DESIGN_LOSS}` vs `{ALL}`" in md and "> 0 at 0/3 seeds, hurts." in md


def test_test_tables_flag_single_class_sets(tmp_path):
    results = {"test_a": {"auc": 0.9, "ap": 0.8, "acc": 0.75, "n_real": 3, "n_fake": 2, "single_class": False},
               "test_b": {"auc": 0.7, "ap": 0.6, "acc": 0.5, "n_real": 3, "n_fake": 2, "single_class": False},
               "fakes_only": {"auc": None, "ap": None, "acc": 1.0, "n_real": 0, "n_fake": 4, "single_class": True}}
    json_path, md_path, csv_path = write_test_tables(results, tmp_path)
    md = md_path.read_text().splitlines()
    assert md[0] == "| test set | AUC | AP | accuracy | real | fake |"
    assert "| fakes_only | n/a | n/a | 1.0000 | 0 | 4 |" in md
    assert md[-1].startswith("| **mean** | 0.8000 | 0.7000 | 0.6250")  # over the two-class sets only
    assert json.loads(json_path.read_text()) == results
    assert [r["test_set"] for r in csv.DictReader(open(csv_path))] == ["test_a", "test_b", "fakes_only"]


def test_make_test_csvs_pairs_every_generator_with_all_reals(tmp_path):
    for i in range(3):
        write_png(tmp_path / "real" / f"r{i}.png", (32, 32), i, False)
    for name, n in (("sd3", 2), ("flux", 1)):
        for i in range(n):
            write_png(tmp_path / name / "sub" / f"f{i}.png", (32, 32), 10 + i, True)  # nested folders too
    out = tmp_path / "csvs"
    paths = create_test_csvs([tmp_path / "real"], {"sd3": tmp_path / "sd3", "flux": tmp_path / "flux"}, out)
    assert [p.name for p in paths] == ["test_sd3.csv", "test_flux.csv"]
    rows = list(csv.DictReader(open(out / "test_sd3.csv")))
    assert [int(r["class"]) for r in rows] == [0, 0, 0, 1, 1] and {r["split"] for r in rows} == {"test"}
    assert all((out / r["image"]).is_file() for r in rows)  # relative to the CSV's folder, the default root
    with pytest.raises(ValueError, match="NAME=FOLDER"):
        parse_fake("no-folder")
    with pytest.raises(ValueError, match="no images"):
        create_test_csvs([tmp_path / "csvs"], {"x": tmp_path / "flux"}, tmp_path / "o")


def _photo() -> Image.Image:
    rng = np.random.default_rng(0)
    base = np.kron(rng.random((9, 9, 3)), np.ones((8, 8, 1)))[:64, :64]
    return Image.fromarray(((base * 0.8 + rng.random((64, 64, 3)) * 0.2) * 255).astype(np.uint8))


@pytest.mark.parametrize("kind", list(LEVELS))
def test_perturbations_get_stronger_along_their_levels(kind):
    img = _photo()
    ref = np.asarray(img, dtype=np.float64)

    def error(level):
        out = Perturbation(kind, level)(img)
        if kind == "resize":  # compare at the original size
            assert out.size == (round(64 * level), round(64 * level))
            out = out.resize(img.size, Image.BILINEAR)
        return np.abs(np.asarray(out, dtype=np.float64) - ref).mean()

    levels = LEVELS[kind] if kind != "resize" else [lv for lv in LEVELS[kind] if lv < 1]  # down-sizing loses detail
    errors = [error(lv) for lv in levels]
    assert errors[0] > 0 and errors[-1] > errors[0], errors
    first, again = Perturbation(kind, levels[0])(img), Perturbation(kind, levels[0])(img)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    with pytest.raises(ValueError, match="unknown perturbation"):
        Perturbation("gamma", 1.0)


def test_sweep_scores_every_level_and_writes_table_and_plot(tiny_data, tmp_path):
    from common_utils.train import init_distributed
    cfg = get_config(CONFIGS / "tiny.yaml", ["MODEL.VIT.PATCH_SIZE", 16])
    torch.manual_seed(0)
    model = build_cls_model(cfg).eval()
    ctx = init_distributed("cpu")
    results = sweep(model, [tiny_data / "spai/test.csv"], [tiny_data], ctx, cfg, kinds=("jpeg", "blur"))
    assert set(results) == {"clean", "jpeg", "blur"}
    assert list(results["jpeg"]) == [str(lv) for lv in LEVELS["jpeg"]]
    assert all(0.0 <= auc <= 1.0 for per_level in results["blur"].values() for auc in per_level.values())
    json_path, md_path, png_path = write_sweep(results, tmp_path)
    assert png_path.stat().st_size > 1000
    md = md_path.read_text().splitlines()
    assert len(md) == 3 + len(LEVELS["jpeg"]) + len(LEVELS["blur"]) and md[2].startswith("| none | - |")


def test_robustness_curves_join_neighbouring_strengths():
    results = {"clean": {"a": 0.9}, "resize": {"1.5": {"a": 0.8}, "1.25": {"a": 0.85}, "0.75": {"a": 0.7},
                                                "0.5": {"a": 0.6}}}
    assert _curve(results, "resize", "a") == ([0.5, 0.75, 1.0, 1.25, 1.5], [0.6, 0.7, 0.9, 0.85, 0.8])
