import numpy as np
import pytest
from common_utils.metrics import fairness_metrics, fairness_report
from sklearn.metrics import roc_auc_score


def test_hand_computed_gaps():
    # group A: y=[0,0,1,1], pred=[1,0,1,1] -> FPR .5 TPR 1 acc .75 PR .75
    # group B: y=[0,0,0,1], pred=[0,0,0,0] -> FPR 0  TPR 0 acc .75 PR 0
    y = [0, 0, 1, 1, 0, 0, 0, 1]
    s = [0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.1, 0.4]
    g = ["A"] * 4 + ["B"] * 4
    m = fairness_metrics(y, s, g)
    a, b = m["groups"]["A"], m["groups"]["B"]
    assert (a["fpr"], a["tpr"], a["acc"], a["pr"]) == (0.5, 1.0, 0.75, 0.75)
    assert (b["fpr"], b["tpr"], b["acc"], b["pr"]) == (0.0, 0.0, 0.75, 0.0)
    assert m["F_FPR"] == pytest.approx(50.0)
    assert m["F_OAE"] == pytest.approx(0.0)
    assert m["F_DP"] == pytest.approx(75.0)
    assert m["F_MEO"] == pytest.approx(100.0)  # TPR gap 1.0 dominates
    assert a["auc"] == pytest.approx(roc_auc_score([0, 0, 1, 1], s[:4]))
    assert m["auc_gap"] == pytest.approx(abs(a["auc"] - b["auc"]))


def test_single_class_group_is_undefined_and_left_out_of_gaps():
    y = [0, 1, 0, 1, 1, 1]
    s = [0.2, 0.9, 0.6, 0.4, 0.8, 0.3]
    g = ["A", "A", "B", "B", "C", "C"]  # C has positives only
    m = fairness_metrics(y, s, g)
    c = m["groups"]["C"]
    assert c["auc"] is None and c["fpr"] is None and c["tnr"] is None
    assert c["tpr"] == 0.5
    # FPR gap uses A (0.0) and B (1.0) only
    assert m["F_FPR"] == pytest.approx(100.0)
    assert m["auc_gap"] == pytest.approx(1.0)  # A: 1.0, B: 0.0


def test_gaps_undefined_with_one_defined_group():
    m = fairness_metrics([1, 1, 0], [0.9, 0.8, 0.1], ["A", "A", "B"])
    assert m["auc_gap"] is None


@pytest.mark.parametrize("seed", range(3))
def test_per_group_auc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    s = rng.normal(size=400) + y
    g = rng.integers(0, 8, 400)
    m = fairness_metrics(y, s, g)
    for k in range(8):
        assert m["groups"][k]["auc"] == pytest.approx(roc_auc_score(y[g == k], s[g == k]))
        assert m["groups"][k]["n"] == int((g == k).sum())


# --- conventions and the PG-FDD metrics -----------------------------------------------------------------------------

# A: y [0,1] s [.2,.9] -> pred [0,1]: FPR 0, TPR 1, acc 1, PR .5, ER 0, AUC 1
# B: y [0,0,1,1] s [.6,.3,.4,.7] -> pred [1,0,0,1]: FPR .5, TPR .5, acc .5, PR .5, ER .5, AUC 3/4
# C: y [1,1] s [.8,.9] -> pred [1,1]: positives only: TPR 1, acc 1, PR 1, FPR undefined
# overall: FP 1 of 3 negatives (FPR 1/3), TP 4 of 5 positives (TPR 4/5), PR 5/8; mean score 4.8 / 8 = .6
HAND_Y = [0, 1, 0, 0, 1, 1, 1, 1]
HAND_S = [0.2, 0.9, 0.6, 0.3, 0.4, 0.7, 0.8, 0.9]
HAND_G = ["A", "A", "B", "B", "B", "B", "C", "C"]
HAND_CASES = {
    "ours": {  # C counts wherever its rate is defined
        "F_OAE": 50.0, "F_DP": 50.0,  # PR .5 .5 1
        "F_G": 3 / 8,  # |1 - 5/8|
        "F_S": 0.5, "F_A": (3 / 8 + 1 / 2) / 2,
        "F_EO": 1 / 3 + 1 / 6 + 0.2 + 0.3 + 0.2,  # FPR terms (A, B) + TPR terms (A, B, C)
    },
    "pgfdd": {  # C is dropped from every gap
        "F_OAE": 50.0, "F_DP": 0.0,  # PR .5 .5
        "F_G": 1 / 8, "F_S": 0.0, "F_A": (1 / 8 + 0) / 2,
        "F_EO": 1 / 3 + 1 / 6 + 0.2 + 0.3,
    },
}
COMMON = {
    "F_FPR": 50.0, "F_MEO": 50.0, "F_ER": 50.0, "F_AUC": 25.0, "auc_gap": 0.25,
    "F_EFPR": 1 / 3 + 1 / 6,  # |0 - 1/3| + |.5 - 1/3|
    # weights A 0, B 1, C 2: B 1/8 |-.4| + C 2/8 |.5|
    "F_COV": 0.4 / 8 + 2 * 0.5 / 8,
}


@pytest.mark.parametrize("convention", HAND_CASES)
def test_pgfdd_metrics_hand_case(convention):
    m = fairness_metrics(HAND_Y, HAND_S, HAND_G, convention=convention)
    for key, value in {**COMMON, **HAND_CASES[convention]}.items():
        assert m[key] == pytest.approx(value), key
    assert m["overall"]["fpr"] == pytest.approx(1 / 3) and m["overall"]["tpr"] == pytest.approx(0.8)
    assert m["groups"]["B"]["error_rate"] == 0.5 and m["groups"]["C"]["error_rate"] is None
    assert m["convention"] == convention


def test_group_order_sets_cov_weights_and_logits_replace_scores():
    # reversed order: C 0, B 1, A 2 -> B 1/8 |-.4| + A 2/8 |(.2 - .6) + (.9 - .6)|
    m = fairness_metrics(HAND_Y, HAND_S, HAND_G, group_order=["C", "B", "A"])
    assert list(m["groups"]) == ["C", "B", "A"]
    assert m["F_COV"] == pytest.approx(0.4 / 8 + 2 * 0.1 / 8)
    logits = np.log(np.array(HAND_S) / (1 - np.array(HAND_S)))
    shifted = fairness_metrics(HAND_Y, HAND_S, HAND_G, logits=logits + 5.0)  # a shift leaves the covariance alone
    assert shifted["F_COV"] == pytest.approx(fairness_metrics(HAND_Y, HAND_S, HAND_G, logits=logits)["F_COV"])
    assert shifted["F_COV"] != pytest.approx(m["F_COV"])
    with pytest.raises(ValueError, match="group 'C' is not in group_order"):
        fairness_metrics(HAND_Y, HAND_S, HAND_G, group_order=["A", "B"])


def test_deepfakebench_threshold_is_strict_in_fairness_too():
    y, s, g = [1, 0, 1, 0], [0.5, 0.1, 0.9, 0.5], ["A", "A", "B", "B"]
    assert fairness_metrics(y, s, g)["groups"]["A"]["pr"] == 0.5  # 0.5 >= 0.5
    assert fairness_metrics(y, s, g, convention="deepfakebench")["groups"]["A"]["pr"] == 0.0  # 0.5 > 0.5 is false
    with pytest.raises(ValueError, match="unknown convention 'PG-FDD'"):
        fairness_metrics(y, s, g, convention="PG-FDD")


def reference_pgfdd(y, z, attrs, orders):
    """REFERENCE (PG-FDD acc_fairness, from its description). p = sigmoid(z), predictions p >= .5. A group's metrics
    exist only if it holds both labels; gaps are over those groups; F_G, F_EFPR, F_EO against all samples; an
    attribute's F_A = (its F_G + intersectional F_S) / 2; F_COV = sum_k k * |sum_{group k} z / N - n_k / N * mean z|
    over every value of the attribute's list (the intersection's F_COV, with weights from the product of the lists,
    is ours: PG-FDD prints F_COV per attribute only)."""
    p = 1 / (1 + np.exp(-z))

    def stats(mask):
        yy, pp = y[mask], p[mask]
        if len(yy) == 0 or yy.min() == yy.max():
            return None
        pred = pp >= 0.5
        tp, fp = np.sum(pred & (yy == 1)), np.sum(pred & (yy == 0))
        fn, tn = np.sum(~pred & (yy == 1)), np.sum(~pred & (yy == 0))
        fpr, tpr = fp / (fp + tn), tp / (tp + fn)
        return {"auc": roc_auc_score(yy, pp), "FPR": fpr, "TPR": tpr, "FNR": fn / (fn + tp), "TNR": tn / (tn + fp),
                "acc": (tp + tn) / len(yy), "PR": (tp + fp) / len(yy), "NR": (tn + fn) / len(yy),
                "ER": 1 - (tpr + 1 - fpr) / 2}

    everyone = stats(np.ones(len(y), bool))
    inter_keys = [(a, b) for a in orders[0] for b in orders[1]]
    columns = [attrs[0], attrs[1], [(a, b) for a, b in zip(*attrs)]]
    out = []
    for col, order in zip(columns, [orders[0], orders[1], inter_keys]):
        col = np.array(col, dtype=object) if not isinstance(col[0], tuple) else col
        masks = [np.array([c == k for c in col]) for k in order]
        groups = [st for st in map(stats, masks) if st]

        def gap(key, groups=groups):
            return 100 * (max(st[key] for st in groups) - min(st[key] for st in groups))

        pr = [st["PR"] for st in groups]
        out.append({
            "F_FPR": gap("FPR"), "F_OAE": gap("acc"), "F_DP": max(gap("PR"), gap("NR")),
            "F_MEO": max(gap("FPR"), gap("FNR"), gap("TNR"), gap("TPR")), "F_ER": gap("ER"), "F_AUC": gap("auc"),
            "F_G": max(abs(v - everyone["PR"]) for v in pr), "F_S": max(pr) - min(pr),
            "F_EFPR": sum(abs(st["FPR"] - everyone["FPR"]) for st in groups),
            "F_EO": sum(abs(st["FPR"] - everyone["FPR"]) + abs(st["TPR"] - everyone["TPR"]) for st in groups),
            "F_COV": sum(abs(k * z[m].sum() / len(y) - k * m.sum() / len(y) * z.mean()) for k, m in enumerate(masks)),
        })
    for attr in out[:2]:
        attr["F_A"] = (attr["F_G"] + out[2]["F_S"]) / 2
    out[2]["F_A"] = (out[2]["F_G"] + out[2]["F_S"]) / 2
    return out


@pytest.mark.parametrize("seed", range(4))
def test_pgfdd_convention_matches_reference_with_one_class_groups(seed):
    rng = np.random.default_rng(seed)
    n = 160
    gender = rng.choice(["male", "nonmale"], n)
    race = rng.choice(["asian", "white", "black", "others"], n, p=[0.1, 0.5, 0.3, 0.1])
    y = rng.integers(0, 2, n)
    y[(gender == "male") & (race == "asian")] = 1  # a one-class intersection: PG-FDD drops it
    z = rng.normal(size=n) + 1.2 * y
    orders = {"gender": ["male", "nonmale"], "race": ["asian", "white", "black", "others"]}
    ours = fairness_report(y, 1 / (1 + np.exp(-z)), {"gender": gender, "race": race}, convention="pgfdd", logits=z,
                           orders=orders)
    ref = reference_pgfdd(y, z, [gender.tolist(), race.tolist()], [orders["gender"], orders["race"]])
    for name, expected in zip(["gender", "race", "intersection"], ref):
        for key, value in expected.items():
            assert ours[name][key] == pytest.approx(value), (name, key)
    # ours keeps the one-class intersection where a rate is defined, so its gaps differ
    default = fairness_report(y, 1 / (1 + np.exp(-z)), {"gender": gender, "race": race}, logits=z, orders=orders)
    assert default["intersection"]["groups"][("male", "asian")]["fpr"] is None
    assert default["intersection"]["F_G"] >= ours["intersection"]["F_G"]
    with pytest.raises(ValueError, match="two or more attributes"):
        fairness_report(y, z, {"gender": gender})
