"""Claim verdict rules on hand-made evidence: each of supported / not supported / inconclusive is reached."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from marginlab.analysis import claims as cl
from marginlab.analysis.correlation import CORRELATION_COLUMNS
from marginlab.analysis.tables import ABLATION_COLUMNS, AGGREGATE_COLUMNS


def test_interval_verdict_and_combine():
    assert cl.interval_verdict([0.1, 0.2], [0.5, 0.6], 0.1) == "supported"
    assert cl.interval_verdict([-0.05, -0.3], [0.08, 0.05], 0.1) == "not supported"
    assert cl.interval_verdict([0.1, -0.1], [0.5, 0.3], 0.1) == "inconclusive"
    assert cl.interval_verdict([], [], 0.1) == "inconclusive"
    assert cl.interval_verdict([float("nan")], [0.5], 0.1) == "inconclusive"
    assert cl.combine(["supported", "supported"]) == "supported"
    assert cl.combine(["supported", "inconclusive"]) == "inconclusive"
    assert cl.combine(["inconclusive", "not supported", "supported"]) == "not supported"
    assert cl.combine([]) == "inconclusive"


# --------------------------------------------------------------------------- claim 1
def _corr(final: tuple[float, float, float], early: tuple[float, float, float], runs=("ada-s0", "ada-s1"),
          target="iq") -> pd.DataFrame:
    rows = []
    for run in runs:
        for epoch, (est, lo, hi) in ((0, (0.0, -0.1, 0.1)), (1, early), (5, final)):
            for quantity in ("norm", "p_yi"):
                rows.append({"run": run, "label": "ada", "head": "adaface", "epoch": epoch, "pass": "clean",
                             "quantity": quantity, "target": target, "pearson": est, "pearson_lo": lo, "pearson_hi": hi,
                             "spearman": est, "spearman_lo": lo, "spearman_hi": hi, "n": 512})
            rows.append({**rows[-1], "pass": "augmented", "spearman_lo": -0.9, "spearman_hi": -0.8})  # ignored
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


NONLINEAR = {"ada-s0": {"gain": 0.4, "lo": 0.3, "hi": 0.5}, "ada-s1": {"gain": 0.35, "lo": 0.2, "hi": 0.45}}


def test_claim1_supported():
    c = cl.claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4)), ["ada-s0", "ada-s1"], NONLINEAR)
    assert c["id"] == 1 and c["verdict"] == "supported"
    assert [p["verdict"] for p in c["parts"]] == ["supported"] * 3
    assert c["numbers"]["final_spearman_mean"] == 0.5 and c["numbers"]["paper_correlation"] == 0.5235
    assert c["parts"][0]["numbers"]["runs"]["ada-s0"]["spearman_ci"] == [0.4, 0.6]
    json.dumps(c)


def test_claim1_not_supported_when_no_run_shows_even_a_weak_correlation():
    c = cl.claim_norm_quality(_corr((0.0, -0.08, 0.07), (0.3, 0.2, 0.4)), ["ada-s0", "ada-s1"], NONLINEAR)
    assert c["parts"][0]["verdict"] == "not supported" and c["verdict"] == "not supported"


def test_claim1_inconclusive_cases():
    straddle = cl.claim_norm_quality(_corr((0.1, -0.05, 0.25), (0.3, 0.2, 0.4)), ["ada-s0", "ada-s1"], NONLINEAR)
    assert straddle["parts"][0]["verdict"] == "inconclusive" and straddle["verdict"] == "inconclusive"
    linear = cl.claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4)), ["ada-s0", "ada-s1"],
                                   {"ada-s0": {"gain": -0.01, "lo": -0.03, "hi": 0.01}})
    assert linear["parts"][2]["verdict"] == "inconclusive" and linear["verdict"] == "inconclusive"
    nothing = cl.claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4)), [], None)
    assert nothing["verdict"] == "inconclusive" and "no data" in nothing["parts"][0]["rule"]


def test_claim1_falls_back_to_ground_truth_without_iq():
    c = cl.claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4), target="gt_quality"), ["ada-s0", "ada-s1"], NONLINEAR)
    assert c["parts"][0]["numbers"]["target"] == "gt_quality"
    assert "ground-truth" in c["numbers"]["target"]


# --------------------------------------------------------------------------- claim 2
def test_claim2_adaface_defaults_supported_and_cosface_flat():
    c = cl.claim_margin_form({"s": 64.0, "m": 0.4, "h": 0.333, "t_alpha": 0.01})
    assert c["verdict"] == "supported"
    ratios = c["parts"][0]["numbers"]["ratios"]
    assert ratios["adaface z_hat=+1"]["hard_over_easy"] > 1 > ratios["adaface z_hat=-1"]["hard_over_easy"]
    # CosFace's GST is s·(P - 1): both samples are misclassified under the margin, so |g| ≈ s for both
    assert ratios["cosface"]["hard_over_easy"] == pytest.approx(1.0, abs=0.01)


def test_claim2_without_margin_is_inconclusive():
    # m = 0: no margin at all, so the norm cannot change the emphasis (both ratios are the softmax's).
    c = cl.claim_margin_form({"s": 64.0, "m": 0.0, "h": 0.333})
    ratios = c["parts"][0]["numbers"]["ratios"]
    assert ratios["adaface z_hat=+1"]["hard_over_easy"] == pytest.approx(ratios["adaface z_hat=-1"]["hard_over_easy"])
    assert c["verdict"] == "inconclusive"


def test_claim2_uses_the_one_emphasis_definition():
    """Claim 2's ratios are marginlab.analysis.gst.emphasis at its EASY/HARD points, nothing computed beside it."""
    from marginlab.analysis import gst

    hp = {"s": 64.0, "m": 0.45, "h": 0.333, "t_alpha": 0.01}
    numbers = cl.claim_margin_form(hp)["parts"][0]["numbers"]
    assert numbers["easy_point"] == list(gst.EASY_POINT) and numbers["hard_point"] == list(gst.HARD_POINT)
    for z in (1.0, -1.0):
        expected = gst.emphasis("adaface", {"z_hat": z}, hyperparameters=hp)
        assert numbers["ratios"][f"adaface z_hat={z:+g}"] == pytest.approx(expected, abs=1e-6)  # claims round to 6 decimals
    assert numbers["ratios"]["arcface"] == pytest.approx(gst.emphasis("arcface"), abs=1e-6)


# --------------------------------------------------------------------------- claim 3
def _agg(means: dict[str, tuple[float, float, int]], protocol="verification/lq") -> pd.DataFrame:
    rows = [{"label": lab, "head": "curricularface" if lab.startswith("curr") else "adaface", "protocol": protocol,
             "family": "verification", "set": "lq", "metric": "accuracy", "quality": "low", "mean": m, "std": s,
             "n_seeds": n, "se": 0.5} for lab, (m, s, n) in means.items()]
    return pd.DataFrame(rows, columns=AGGREGATE_COLUMNS)


def _ablation(agg: pd.DataFrame) -> pd.DataFrame:
    settings = {"ada": ("h", "h=0.333"), "ada-h022": ("h", "h=0.22"), "ada-h066": ("h", "h=0.66"),
                "ada-m03": ("m", "m=0.3"), "ada-brisque": ("proxy", "proxy=brisque"), "curr": ("baseline", "CurricularFace")}
    rows = []
    for r in agg.itertuples(index=False):
        factor, setting = settings[r.label]
        rows.append({"factor": factor, "setting": setting, "label": r.label, "is_reference": r.label == "ada",
                     "set": r.protocol, "mean": r.mean, "std": r.std, "n_seeds": r.n_seeds})
        if r.label == "ada":
            rows += [{**rows[-1], "factor": "m", "setting": "m=0.4"}, {**rows[-1], "factor": "proxy", "setting": "proxy=norm"}]
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def test_claim3_supported_with_clear_margins():
    # pooled seed std 0.5 → SE of (2 seeds vs 1 seed) = 0.5·sqrt(1.5) ≈ 0.61; clear beyond ≈ 1.22.
    agg = _agg({"ada": (82.0, 0.5, 2), "ada-h022": (80.0, np.nan, 1), "ada-h066": (79.0, np.nan, 1),
                "ada-m03": (80.5, np.nan, 1), "ada-brisque": (78.0, np.nan, 1), "curr": (76.0, 0.5, 2)})
    c = cl.claim_ablations(_ablation(agg), agg)
    verdicts = {p["name"]: p["verdict"] for p in c["parts"]}
    assert verdicts == {"h: paper's best": "supported", "h: all beat CurricularFace": "supported",
                        "m: paper's best": "supported", "proxy: paper's best": "supported"}
    assert c["verdict"] == "supported" and c["numbers"]["protocol"] == "verification/lq"
    comp = c["parts"][0]["numbers"]["comparisons"][0]
    assert comp["noise_source"] == "seeds" and comp["noise_se"] == pytest.approx(0.5 * math.sqrt(1.5))


def test_claim3_not_supported_when_another_h_wins_clearly():
    agg = _agg({"ada": (80.0, 0.5, 2), "ada-h022": (83.0, np.nan, 1), "ada-h066": (79.9, np.nan, 1),
                "ada-m03": (80.0, np.nan, 1), "ada-brisque": (78.0, np.nan, 1), "curr": (76.0, 0.5, 2)})
    c = cl.claim_ablations(_ablation(agg), agg)
    assert c["parts"][0]["verdict"] == "not supported" and c["verdict"] == "not supported"
    assert {p["name"]: p["verdict"] for p in c["parts"]}["m: paper's best"] == "inconclusive"  # 0 difference: tie


def test_claim3_inconclusive_within_noise_and_without_data():
    agg = _agg({"ada": (80.0, 1.0, 2), "ada-h022": (79.5, np.nan, 1), "ada-h066": (79.8, np.nan, 1),
                "ada-m03": (80.1, np.nan, 1), "ada-brisque": (79.0, np.nan, 1), "curr": (79.0, 1.0, 2)})
    c = cl.claim_ablations(_ablation(agg), agg)
    assert all(p["verdict"] == "inconclusive" for p in c["parts"]) and c["verdict"] == "inconclusive"
    empty = cl.claim_ablations(pd.DataFrame(columns=ABLATION_COLUMNS), agg)
    assert empty["verdict"] == "inconclusive" and all("no data" in p["rule"] for p in empty["parts"])


def test_claim3_single_seeds_fall_back_to_test_set_noise():
    agg = _agg({"ada": (82.0, np.nan, 1), "ada-h022": (80.0, np.nan, 1), "ada-h066": (81.9, np.nan, 1)})
    c = cl.claim_ablations(_ablation(agg), agg)
    comps = c["parts"][0]["numbers"]["comparisons"]
    assert {x["noise_source"] for x in comps} == {"test set"}
    assert comps[0]["noise_se"] == pytest.approx(math.hypot(0.5, 0.5))
    assert [x["judgement"] for x in comps] == ["better", "tie"]
    assert c["parts"][0]["verdict"] == "inconclusive"


# --------------------------------------------------------------------------- claim 4
def test_claim4_three_outcomes():
    sup = cl.claim_augmentation({"a": {"gap": 0.4, "lo": 0.25, "hi": 0.55}, "b": {"gap": 0.3, "lo": 0.1, "hi": 0.5}})
    assert sup["verdict"] == "supported"
    nots = cl.claim_augmentation({"a": {"gap": -0.1, "lo": -0.2, "hi": 0.05}})
    assert nots["verdict"] == "not supported"
    inc = cl.claim_augmentation({"a": {"gap": 0.1, "lo": -0.05, "hi": 0.25}})
    assert inc["verdict"] == "inconclusive"
    assert cl.claim_augmentation({})["verdict"] == "inconclusive"
    changes = {"a": pd.DataFrame({"augmentation": ["crop"], "n": [3], "mean_log_ratio": [-0.2], "median_ratio": [0.8]})}
    c = cl.claim_augmentation({"a": {"gap": 0.4, "lo": 0.25, "hi": 0.55}}, changes)
    assert c["parts"][0]["numbers"]["norm_change"]["a"]["crop"]["median_ratio"] == 0.8


# --------------------------------------------------------------------------- claim 5
def _agg5(values: dict[str, dict[str, float]], std=0.3, n=2) -> pd.DataFrame:
    rows = []
    for label, by_protocol in values.items():
        for protocol, mean in by_protocol.items():
            family, _, rest = protocol.partition("/")
            name = rest.split(" ")[0]
            quality = "high" if protocol == "verification/hq" else "low"
            rows.append({"label": label, "head": label, "protocol": protocol, "family": family, "set": name,
                         "metric": "x", "quality": quality, "mean": mean, "std": std, "n_seeds": n, "se": 0.2})
    return pd.DataFrame(rows, columns=AGGREGATE_COLUMNS)


P = ("verification/hq", "verification/lq", "ijb/x TAR@FAR=1e-04")


def test_claim5_supported():
    agg = _agg5({"adaface": dict(zip(P, (95.0, 85.0, 70.0))), "cosface": dict(zip(P, (95.1, 82.0, 69.9))),
                 "arcface": dict(zip(P, (94.9, 81.0, 68.0)))})
    c = cl.claim_baselines(agg, "adaface", ["cosface", "arcface"])
    assert c["verdict"] == "supported" and [p["verdict"] for p in c["parts"]] == ["supported", "supported"]
    nums = c["numbers"]
    comps = {x["protocol"]: x for p in c["parts"] for x in p["numbers"]["comparisons"]}
    assert comps["verification/lq"]["best_baseline"] == "cosface" and comps["verification/lq"]["judgement"] == "better"
    assert comps["verification/hq"]["judgement"] == "tie"
    assert nums["mean_gain_low_quality"] == pytest.approx((3.0 + 0.1) / 2)
    assert nums["mean_gain_high_quality"] == pytest.approx(-0.1)


def test_claim5_not_supported_when_adaface_loses_on_low_quality():
    agg = _agg5({"adaface": dict(zip(P, (95.0, 80.0, 70.0))), "cosface": dict(zip(P, (95.0, 83.0, 70.0)))})
    assert cl.claim_baselines(agg, "adaface", ["cosface"])["verdict"] == "not supported"
    # gains on high quality only: also not supported
    agg = _agg5({"adaface": dict(zip(P, (97.0, 80.0, 70.0))), "cosface": dict(zip(P, (95.0, 80.1, 70.0)))})
    c = cl.claim_baselines(agg, "adaface", ["cosface"])
    assert c["parts"][0]["verdict"] == "not supported" and c["verdict"] == "not supported"
    # clear gains on low quality, but clearly behind on high quality: part b fails
    agg = _agg5({"adaface": dict(zip(P, (93.0, 85.0, 75.0))), "cosface": dict(zip(P, (95.0, 80.0, 70.0)))})
    c = cl.claim_baselines(agg, "adaface", ["cosface"])
    assert [p["verdict"] for p in c["parts"]] == ["supported", "not supported"] and c["verdict"] == "not supported"


def test_claim5_inconclusive_on_ties_and_without_baselines():
    agg = _agg5({"adaface": dict(zip(P, (95.0, 80.3, 70.2))), "cosface": dict(zip(P, (95.0, 80.0, 70.0)))})
    c = cl.claim_baselines(agg, "adaface", ["cosface"])
    assert [p["verdict"] for p in c["parts"]] == ["inconclusive", "supported"] and c["verdict"] == "inconclusive"
    only_lq = agg[agg["protocol"] != "verification/hq"]
    assert cl.claim_baselines(only_lq, "adaface", ["cosface"])["parts"][1]["verdict"] == "inconclusive"
    assert cl.claim_baselines(agg, "adaface", [])["verdict"] == "inconclusive"
    assert cl.claim_baselines(agg, None, ["cosface"])["verdict"] == "inconclusive"


def test_claim1_decisions_hand_computed():
    """Final CI [0.4, 0.6] → se 0.1/1.96; lower bound 0.4 lies 7.84 SE above 0. The early CI [0.2, 0.4] (se
    0.05102) decides the claim: 3.92 SE past 0. P_yi gain CIs: ada-s1's [0.2, 0.45] is nearest (3.14 SE)."""
    c = cl.claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4)), ["ada-s0", "ada-s1"], NONLINEAR)
    z = 1.959964
    a, b, pyi = c["parts"]
    assert a["decision"]["distance_se"] == pytest.approx(0.4 / (0.1 / z), rel=1e-4)
    assert b["decision"]["distance_se"] == pytest.approx(0.2 / (0.1 / z), rel=1e-4)
    # P_yi gains 0.40 and 0.35 spread over the runs: the distance counts in sqrt(SE² + seed spread²)
    pyi_noise = np.hypot(0.125 / z, np.std([0.4, 0.35], ddof=1))
    assert pyi["decision"]["distance_se"] == pytest.approx(0.2 / pyi_noise, rel=1e-4)
    assert pyi["decision"]["to_not_supported_se"] is None  # part c cannot be refuted
    assert c["decision"]["distance_se"] == pytest.approx(min(0.2 / (0.1 / z), 0.2 / pyi_noise), rel=1e-4)
    seen = a["numbers"]["what_it_could_see"]
    assert seen["runs"]["ada-s0"]["mde"] == pytest.approx((z + 0.841621) * 0.1 / z, rel=1e-4)
    assert seen["seed_std"] == 0.0  # both runs have the same final estimate: the interval's SE alone


def test_claim1_not_supported_says_how_far_below_the_effect_size():
    # every final CI below 0.1: hi = 0.07, se = 0.15/3.92 → (0.1 - 0.07)/se = 0.78 SE: a borderline refutation
    c = cl.claim_norm_quality(_corr((0.0, -0.08, 0.07), (0.3, 0.2, 0.4)), ["ada-s0", "ada-s1"], NONLINEAR)
    part = c["parts"][0]
    assert part["verdict"] == "not supported"
    assert part["decision"]["distance_se"] == pytest.approx(0.03 / (0.15 / 3.919928), rel=1e-4)
    assert part["decision"]["borderline"] is True and c["decision"]["borderline"] is True
