"""Claim verdict rules on hand-made evidence: each of supported / not supported / inconclusive is reached."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marginlab.analysis.claims.benchmark_claims import claim_ablations, claim_baselines
from marginlab.analysis.claims.margin_form_claim import claim_margin_form
from marginlab.analysis.claims.probe_claims import claim_augmentation, claim_norm_quality
from marginlab.analysis.verdict_rules import NORM_CHANGE_EFFECT, combine, interval_verdict, seed_interval_rule
from marginlab.analysis.correlation import CORRELATION_COLUMNS
from marginlab.analysis.tables import ABLATION_COLUMNS, AGGREGATE_COLUMNS


def test_interval_verdict_and_combine():
    assert interval_verdict([0.1, 0.2], [0.5, 0.6], 0.1) == "supported"
    assert interval_verdict([-0.05, -0.3], [0.08, 0.05], 0.1) == "not supported"
    assert interval_verdict([0.02], [0.08], 0.1) == "not supported"  # real but negligible: the SESOI bound wins
    assert interval_verdict([0.1, -0.1], [0.5, 0.3], 0.1) == "inconclusive"
    assert interval_verdict([], [], 0.1) == "inconclusive"
    assert interval_verdict([float("nan")], [0.5], 0.1) == "inconclusive"
    assert combine(["supported", "supported"]) == "supported"
    assert combine(["supported", "inconclusive"]) == "inconclusive"
    assert combine(["inconclusive", "not supported", "supported"]) == "not supported"  # exact: no p-value
    assert combine([]) == "inconclusive"
    # Holm over the refutable parts: p = 0.03 alone refutes; beside a second refutable part it needs ≤ 0.025
    assert combine(["not supported", "supported"], [0.03, None]) == "not supported"
    assert combine(["not supported", "supported"], [0.03, 0.5]) == "inconclusive"
    assert combine(["not supported", "supported"], [0.02, 0.5]) == "not supported"


def test_seed_interval_rule_hand_computed():
    """The audit's claim-4 gaps 0.066 / 0.149 / 0.213 / 0.115: mean 0.135, t-CI [0.037, 0.234], p = 0.022."""
    res = seed_interval_rule([0.066, 0.149, 0.213, 0.115], 0.10)
    assert res["mean"] == pytest.approx(0.13575)
    assert (res["lo"], res["hi"]) == pytest.approx((0.037, 0.234), abs=1.5e-3)
    assert res["p_value"] == pytest.approx(0.022, abs=1e-3)
    assert res["verdict"] == "supported" and res["df"] == 3
    # against scipy's one-sample t-test
    t = stats.ttest_1samp([0.066, 0.149, 0.213, 0.115], 0.0)
    assert res["p_value"] == pytest.approx(t.pvalue, rel=1e-9)
    assert res["p_support"] == pytest.approx(t.pvalue, rel=1e-9)  # positive mean: directional p = two-sided p
    small = seed_interval_rule([0.01, 0.03, 0.02], 0.10)  # excluded from 0.1: not supported (precedence)
    assert small["verdict"] == "not supported" and small["p_refute"] < 0.05


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
    c = claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4)), ["ada-s0", "ada-s1"], NONLINEAR)
    assert c["id"] == 1 and c["verdict"] == "supported"
    assert [p["verdict"] for p in c["parts"]] == ["supported"] * 3
    assert c["numbers"]["final_spearman_mean"] == 0.5 and c["numbers"]["paper_correlation"] == 0.5235
    assert c["parts"][0]["numbers"]["per_run"]["ada-s0"]["spearman_ci"] == [0.4, 0.6]
    assert c["parts"][1]["name"] == "b: early (end of epoch 1)"
    json.dumps(c)


def _corr_seeds(final: dict[str, float], early: float = 0.3, width: float = 0.1) -> pd.DataFrame:
    """Per-run final Spearman values (bootstrap CI ± width); epoch 1 at ``early`` for all."""
    frames = [_corr((v, v - width, v + width), (early, early - width, early + width), runs=(r,)) for r, v in final.items()]
    return pd.concat(frames, ignore_index=True)


def test_claim1a_is_decided_over_seeds_not_per_run():
    """Four seeds 0.19-0.22 with per-run intervals ± 0.06: the seed mean's t-CI (df 3) is well above 0."""
    runs = {"a": 0.19, "b": 0.21, "c": 0.22, "d": 0.20}
    c = claim_norm_quality(_corr_seeds(runs, width=0.06), list(runs), NONLINEAR)
    a = c["parts"][0]
    seed = a["numbers"]["seed_level"]
    vals = np.array(list(runs.values()))
    half = stats.t.ppf(0.975, 3) * vals.std(ddof=1) / 2
    assert seed["ci"] == pytest.approx([vals.mean() - half, vals.mean() + half], abs=1e-6)
    assert seed["k"] == 4 and seed["df"] == 3 and a["verdict"] == "supported"
    assert "seed-level" in a["rule"]
    # the pooled inverse-variance estimate is information: equal SEs -> the plain mean
    assert a["numbers"]["pooled_inverse_variance"]["estimate"] == pytest.approx(vals.mean(), abs=1e-6)
    # seeds that disagree in sign: inconclusive, however narrow each run's own interval
    split = claim_norm_quality(_corr_seeds({"a": 0.3, "b": -0.1}, width=0.01), ["a", "b"], NONLINEAR)
    assert split["parts"][0]["verdict"] == "inconclusive"


def test_claim1_single_seed_falls_back_to_its_own_interval_and_says_so():
    c = claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4), runs=("ada-s0",)), ["ada-s0"], NONLINEAR)
    a = c["parts"][0]
    assert a["verdict"] == "supported" and a["rule"].startswith("one seed: the interval covers probe sampling only, "
                                                                 "not seed-to-seed variation")
    assert "seed_level" not in a["numbers"] and a["numbers"]["single_run"]["run"] == "ada-s0"
    z = stats.norm.ppf(0.975)
    assert a["decision"]["p_support"] == pytest.approx(2 * stats.norm.sf(0.4 / (0.2 / (2 * z)) + z), rel=1e-4)


def test_claim1_not_supported_when_no_run_shows_even_a_weak_correlation():
    c = claim_norm_quality(_corr_seeds({"a": 0.0, "b": 0.01, "c": -0.01}, width=0.07), ["a", "b", "c"], NONLINEAR)
    assert c["parts"][0]["verdict"] == "not supported" and c["verdict"] == "not supported"


def test_claim1_inconclusive_cases():
    straddle = claim_norm_quality(_corr_seeds({"a": 0.05, "b": 0.2}), ["a", "b"], NONLINEAR)
    assert straddle["parts"][0]["verdict"] == "inconclusive" and straddle["verdict"] == "inconclusive"
    linear = claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4)), ["ada-s0", "ada-s1"],
                                   {"ada-s0": {"gain": -0.01, "lo": -0.03, "hi": 0.01}})
    assert linear["parts"][2]["verdict"] == "inconclusive" and linear["verdict"] == "inconclusive"
    # one seed whose interval lies on the wrong side: p-values stay in [0, 1]
    one = claim_norm_quality(_corr((0.5, 0.4, 0.6), (-0.3, -0.4, -0.2), runs=("ada-s0",)), ["ada-s0"], NONLINEAR)
    for part in one["parts"]:
        for key in ("p_support", "p_refute"):
            p = (part["decision"] or {}).get(key)
            assert p is None or 0.0 <= p <= 1.0, (part["name"], key, p)
    # a gain on the wrong side has p = 1 (a p-value, never above 1; it was 2·sf(negative) = 1.8)
    assert linear["parts"][2]["decision"]["p_support"] == 1.0
    for part in linear["parts"]:
        for key in ("p_support", "p_refute"):
            p = (part["decision"] or {}).get(key)
            assert p is None or 0.0 <= p <= 1.0, (part["name"], key, p)
    nothing = claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4)), [], None)
    assert nothing["verdict"] == "inconclusive" and "no data" in nothing["parts"][0]["rule"]


def test_claim1_early_part_does_not_sink_a_supported_final_part_by_itself():
    """Part b refuted (p_refute tiny), a supported, c supported: the claim is not supported only if b survives
    Holm over the refutable parts (a and b); here it does, and the parts keep their own verdicts."""
    corr = pd.concat([_corr((0.3, 0.25, 0.35), (e, e - 0.05, e + 0.05), runs=(r,))
                      for r, e in (("a", -0.05), ("b", -0.06), ("c", -0.04))], ignore_index=True)
    c = claim_norm_quality(corr, ["a", "b", "c"], {r: {"gain": 0.4, "lo": 0.3, "hi": 0.5} for r in "abc"})
    assert [p["verdict"] for p in c["parts"]] == ["supported", "not supported", "supported"]
    assert c["verdict"] == "not supported"
    assert c["parts"][1]["decision"]["p_refute"] < 0.025


def test_claim1_falls_back_to_ground_truth_without_iq():
    c = claim_norm_quality(_corr((0.5, 0.4, 0.6), (0.3, 0.2, 0.4), target="gt_quality"), ["ada-s0", "ada-s1"], NONLINEAR)
    assert c["parts"][0]["numbers"]["target"] == "gt_quality"
    assert "ground-truth" in c["numbers"]["target"]


# --------------------------------------------------------------------------- claim 2
def test_claim2_over_the_stated_grid():
    """AdaFace defaults: the ordering holds at 45 of the 75 grid points (5/15/25 at cos θ_j = 0/0.2/0.4, as
    the audit found); at 10 unsaturated points it fails (fewer than half): inconclusive, share shown."""
    c = claim_margin_form({"s": 64.0, "m": 0.4, "h": 0.333, "t_alpha": 0.01})
    part = c["parts"][0]
    n = part["numbers"]
    assert n["grid_points"] == 75 and n["holds"] == 45 and n["share_holds"] == pytest.approx(0.6)
    assert [v["holds"] for v in n["by_cos_nontarget"].values()] == [5, 15, 25]
    assert 0 < n["unsaturated_points"] - n["holds_unsaturated"] <= n["unsaturated_points"] / 2
    assert part["verdict"] == c["verdict"] == "inconclusive"
    assert len(n["failures_unsaturated"]) == n["unsaturated_points"] - n["holds_unsaturated"]
    ratios = n["ratios"]
    assert ratios["adaface z_hat=+1"]["hard_over_easy"] > 1 > ratios["adaface z_hat=-1"]["hard_over_easy"]
    # CosFace's GST is s·(P - 1): both samples are misclassified under the margin, so |g| ≈ s for both
    assert ratios["cosface"]["hard_over_easy"] == pytest.approx(1.0, abs=0.01)
    assert "75 points" in part["rule"] and "saturated" in part["rule"]


def test_claim2_grid_counts_match_the_emphasis_definition():
    """The grid counts are gst.emphasis at each point (the one definition), and saturation is 1 - P_y < 0.01."""
    from marginlab.analysis import gst

    hp = {"s": 64.0, "m": 0.4, "h": 0.333}
    grid = gst.emphasis_grid("adaface", [{"z_hat": 1.0}, {"z_hat": -1.0}], hyperparameters=hp)
    for row in grid.sample(6, random_state=0).itertuples(index=False):
        e, h, j = row.easy_cos_target, row.hard_cos_target, row.cos_nontarget
        g = np.abs(gst.target_gst("adaface", [e, h], [j, j], {"z_hat": 1.0}, hyperparameters=hp))
        assert row._3 == pytest.approx(g[1] / g[0], rel=1e-9)  # R[z_hat=1]


def test_claim2_without_margin_is_not_supported():
    # m = 0: no margin at all, so the norm cannot change the emphasis: R(+1) = R(-1) everywhere, the ordering fails
    c = claim_margin_form({"s": 64.0, "m": 0.0, "h": 0.333})
    n = c["parts"][0]["numbers"]
    assert n["ratios"]["adaface z_hat=+1"]["hard_over_easy"] == pytest.approx(n["ratios"]["adaface z_hat=-1"]["hard_over_easy"])
    assert n["holds"] == 0 and c["verdict"] == "not supported"


def test_claim2_uses_the_one_emphasis_definition():
    from marginlab.analysis import gst

    hp = {"s": 64.0, "m": 0.45, "h": 0.333, "t_alpha": 0.01}
    numbers = claim_margin_form(hp)["parts"][0]["numbers"]
    assert numbers["easy_point"] == list(gst.EASY_POINT) and numbers["hard_point"] == list(gst.HARD_POINT)
    for z in (1.0, -1.0):
        expected = gst.emphasis("adaface", {"z_hat": z}, hyperparameters=hp)
        assert numbers["ratios"][f"adaface z_hat={z:+g}"] == pytest.approx(expected, abs=1e-6)
    assert numbers["ratios"]["arcface"] == pytest.approx(gst.emphasis("arcface"), abs=1e-6)


def test_claim2_is_fast():
    import time

    start = time.perf_counter()
    claim_margin_form({"s": 64.0, "m": 0.4, "h": 0.333})
    assert time.perf_counter() - start < 2.0


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
    # pooled seed std 0.5 on df 2 (ada and curr, 2 seeds each) → SE of (2 seeds vs 1 seed) = 0.5·sqrt(1.5) ≈ 0.61;
    # t_crit(0.975, 2) = 4.30: clear beyond ≈ 2.63
    agg = _agg({"ada": (82.0, 0.5, 2), "ada-h022": (79.0, np.nan, 1), "ada-h066": (78.0, np.nan, 1),
                "ada-m03": (79.3, np.nan, 1), "ada-brisque": (77.0, np.nan, 1), "curr": (76.0, 0.5, 2)})
    c = claim_ablations(_ablation(agg), agg)
    verdicts = {p["name"]: p["verdict"] for p in c["parts"]}
    assert verdicts == {"h: paper's best": "supported", "m: paper's best": "supported", "proxy: paper's best": "supported"}
    assert c["verdict"] == "supported" and c["numbers"]["protocol"] == "verification/lq"
    comp = c["parts"][0]["numbers"]["comparisons"][0]
    assert comp["noise_source"] == "seeds" and comp["noise_se"] == pytest.approx(0.5 * math.sqrt(1.5))
    assert comp["df"] == 2 and comp["t_crit"] == pytest.approx(stats.t.ppf(0.975, 2), rel=1e-6)
    assert comp["p_value"] == pytest.approx(2 * stats.t.sf(3.0 / (0.5 * math.sqrt(1.5)), 2), rel=1e-5)
    assert "CurricularFace" in c["statement"] and "claim 5" in c["statement"]  # not counted twice
    assert not any("CurricularFace" in p["name"] for p in c["parts"])


def test_claim3_not_supported_when_another_h_wins_clearly_after_holm():
    # h=0.22 beats the paper's h by 10 points: t = 10/0.612 = 16.3, p(df 2) = 0.0037; Holm over the part's 2
    # comparisons: 0.0075; over the claim's 3 refutable parts: 0.022 ≤ 0.05
    agg = _agg({"ada": (80.0, 0.5, 2), "ada-h022": (90.0, np.nan, 1), "ada-h066": (79.9, np.nan, 1),
                "ada-m03": (80.0, np.nan, 1), "ada-brisque": (78.0, np.nan, 1), "curr": (76.0, 0.5, 2)})
    c = claim_ablations(_ablation(agg), agg)
    h = c["parts"][0]
    assert h["verdict"] == "not supported" and c["verdict"] == "not supported"
    p = h["numbers"]["comparisons"][0]["p_value"]
    assert h["numbers"]["comparisons"][0]["p_holm"] == pytest.approx(2 * p, rel=1e-5)
    assert {p["name"]: p["verdict"] for p in c["parts"]}["m: paper's best"] == "inconclusive"  # 0 difference: tie


def test_claim3_holm_keeps_a_borderline_loss_from_refuting():
    # a loss that clears the unadjusted t criterion (p ≈ 0.03) but not Holm over the part's 2 comparisons
    se = 0.5 * math.sqrt(1.5)
    d = stats.t.isf(0.015, 2) * se
    agg = _agg({"ada": (80.0, 0.5, 2), "ada-h022": (80.0 + d, np.nan, 1), "ada-h066": (80.1, np.nan, 1),
                "curr": (76.0, 0.5, 2)})
    c = claim_ablations(_ablation(agg), agg)
    h = c["parts"][0]
    assert h["numbers"]["comparisons"][0]["judgement"] == "worse"
    assert h["numbers"]["comparisons"][0]["p_holm"] > 0.05 and h["verdict"] == "inconclusive"


def test_claim3_inconclusive_within_noise_and_without_data():
    agg = _agg({"ada": (80.0, 1.0, 2), "ada-h022": (79.5, np.nan, 1), "ada-h066": (79.8, np.nan, 1),
                "ada-m03": (80.1, np.nan, 1), "ada-brisque": (79.0, np.nan, 1), "curr": (79.0, 1.0, 2)})
    c = claim_ablations(_ablation(agg), agg)
    assert all(p["verdict"] == "inconclusive" for p in c["parts"]) and c["verdict"] == "inconclusive"
    empty = claim_ablations(pd.DataFrame(columns=ABLATION_COLUMNS), agg)
    assert empty["verdict"] == "inconclusive" and all("no data" in p["rule"] for p in empty["parts"])


def test_claim3_single_seeds_fall_back_to_test_set_noise_and_the_normal_quantile():
    agg = _agg({"ada": (82.0, np.nan, 1), "ada-h022": (80.0, np.nan, 1), "ada-h066": (81.9, np.nan, 1)})
    c = claim_ablations(_ablation(agg), agg)
    comps = c["parts"][0]["numbers"]["comparisons"]
    assert {x["noise_source"] for x in comps} == {"test set"} and comps[0]["df"] is None
    assert comps[0]["noise_se"] == pytest.approx(math.hypot(0.5, 0.5))
    assert comps[0]["t_crit"] == pytest.approx(stats.norm.ppf(0.975)) and "normal quantile" in comps[0]["criterion"]
    assert [x["judgement"] for x in comps] == ["better", "tie"]
    assert c["parts"][0]["verdict"] == "inconclusive"


# --------------------------------------------------------------------------- claim 4
def _gaps(values, width=0.1):
    return {f"s{i}": {"gap": v, "lo": v - width, "hi": v + width} for i, v in enumerate(values)}


def _changes(values):
    return {f"s{i}": pd.DataFrame({"augmentation": ["none", "any"], "n": [10, 30], "mean_log_ratio": [0.0, v],
                                   "median_ratio": [1.0, math.exp(v)]}) for i, v in enumerate(values)}


def test_claim4_seed_level_parts():
    # the audit's per-seed gaps: 3 of 4 per-run CIs exclude 0 (the old rule: inconclusive); the seed-level t: supported
    gaps = {f"s{i}": {"gap": g, "lo": lo, "hi": hi} for i, (g, lo, hi) in
            enumerate([(0.066, -0.03, 0.16), (0.149, 0.06, 0.24), (0.213, 0.12, 0.31), (0.115, 0.02, 0.21)])}
    c = claim_augmentation(gaps, _changes([-0.20, -0.25, -0.22, -0.18]))
    a, b = c["parts"]
    assert a["name"] == "a: low vs high norm" and a["verdict"] == "supported"
    assert a["numbers"]["seed_level"]["p_value"] == pytest.approx(0.022, abs=1e-3)
    assert a["numbers"]["pooled_inverse_variance"]["estimate"] == pytest.approx(0.136, abs=2e-3)
    assert b["name"] == "b: paired norm change" and b["verdict"] == "supported"
    assert b["numbers"]["seed_level"]["ci"][1] < 0 and b["numbers"]["smallest_effect"] == -NORM_CHANGE_EFFECT
    assert c["verdict"] == "supported"
    json.dumps(c)


def test_claim4_other_outcomes():
    nots = claim_augmentation(_gaps([-0.1, -0.05, -0.08], 0.05), _changes([0.01, 0.012, 0.011]))
    assert [p["verdict"] for p in nots["parts"]] == ["not supported", "not supported"]
    assert nots["verdict"] == "not supported"
    inc = claim_augmentation(_gaps([0.1, -0.05]), _changes([-0.3, 0.1]))
    assert [p["verdict"] for p in inc["parts"]] == ["inconclusive", "inconclusive"]
    assert claim_augmentation({})["verdict"] == "inconclusive"
    one = claim_augmentation(_gaps([0.4]), _changes([-0.2]))
    assert one["parts"][0]["verdict"] == "supported" and one["parts"][0]["rule"].startswith("one seed")
    assert one["parts"][1]["verdict"] == "inconclusive" and "one seed and no interval" in one["parts"][1]["rule"]
    assert one["verdict"] == "inconclusive"
    with_ci = {"s0": _changes([-0.2])["s0"].assign(mean_log_ratio_lo=[-0.01, -0.25], mean_log_ratio_hi=[0.01, -0.15])}
    one = claim_augmentation(_gaps([0.4]), with_ci)  # the run's own interval of the mean log ratio: below 0
    assert one["parts"][1]["verdict"] == "supported" and one["parts"][1]["rule"].startswith("one seed")
    assert one["verdict"] == "supported"
    assert one["parts"][1]["numbers"]["by_augmentation"]["s0"]["any"]["median_ratio"] == pytest.approx(math.exp(-0.2), abs=1e-6)


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


def test_claim5_supported_against_the_prespecified_comparator():
    # SE = 0.2 on df 3 (3 labels × 1) → t_crit 3.18: clear beyond 0.64; NI lower bound -0.1 - 0.64 > -1
    agg = _agg5({"adaface": dict(zip(P, (95.0, 85.0, 70.0))), "curricularface": dict(zip(P, (95.1, 82.0, 69.9))),
                 "arcface": dict(zip(P, (94.9, 90.0, 68.0)))}, std=0.2)
    c = claim_baselines(agg, "adaface", ["curricularface", "arcface"])
    assert [p["verdict"] for p in c["parts"]] == ["supported", "supported"] and c["verdict"] == "supported"
    comps = {x["protocol"]: x for p in c["parts"] for x in p["numbers"]["comparisons"]}
    # arcface is far better on lq, but it is not the pre-specified comparator: no post-hoc best-of pick
    assert {x["comparator"] for x in comps.values()} == {"curricularface"}
    assert comps["verification/lq"]["judgement"] == "better" and comps["verification/lq"]["df"] == 3
    assert comps["verification/hq"]["ni_ci"][0] == pytest.approx(-0.1 - stats.t.ppf(0.975, 3) * 0.2, abs=1e-5)
    assert c["numbers"]["mean_gain_low_quality"] == pytest.approx((3.0 + 0.1) / 2)
    assert c["numbers"]["mean_gain_high_quality"] == pytest.approx(-0.1)


def test_claim5_comparator_not_in_the_grid_is_inconclusive_with_the_reason():
    agg = _agg5({"adaface": dict(zip(P, (95.0, 85.0, 70.0))), "cosface": dict(zip(P, (95.0, 80.0, 70.0)))})
    c = claim_baselines(agg, "adaface", ["cosface"])
    assert c["verdict"] == "inconclusive"
    assert all("'curricularface' (analysis.comparator) is not in the grid" in p["rule"] for p in c["parts"])
    assert claim_baselines(agg, "adaface", ["cosface"], comparator="cosface")["parts"][0]["verdict"] == "supported"


def test_claim5_not_supported_when_adaface_loses_on_low_quality():
    agg = _agg5({"adaface": dict(zip(P, (95.0, 80.0, 70.0))), "curricularface": dict(zip(P, (95.0, 83.0, 70.0)))})
    c = claim_baselines(agg, "adaface", ["curricularface"])
    assert c["parts"][0]["verdict"] == "not supported" and c["verdict"] == "not supported"
    # gains on high quality only: no longer a refutation (the untested gain-order condition is gone): inconclusive
    agg = _agg5({"adaface": dict(zip(P, (97.0, 80.0, 70.0))), "curricularface": dict(zip(P, (95.0, 80.1, 70.0)))})
    assert claim_baselines(agg, "adaface", ["curricularface"])["parts"][0]["verdict"] == "inconclusive"
    # clear gains on low quality, but far behind on high quality: 5b not supported (upper bound below -1)
    agg = _agg5({"adaface": dict(zip(P, (92.0, 85.0, 75.0))), "curricularface": dict(zip(P, (95.0, 80.0, 70.0)))})
    c = claim_baselines(agg, "adaface", ["curricularface"])
    assert [p["verdict"] for p in c["parts"]] == ["supported", "not supported"] and c["verdict"] == "not supported"


def test_claim5b_tie_without_precision_is_inconclusive_not_supported():
    # the audit's case: d = -1.30, SE 1.075 on df 12 → CI ≈ [-3.6, 1.0]: neither above -1 nor below it
    agg = _agg5({"adaface": dict(zip(P, (93.7, 85.0, 70.0))), "curricularface": dict(zip(P, (95.0, 80.0, 70.0))),
                 "a": dict(zip(P, (95.0, 80.0, 70.0))), "b": dict(zip(P, (95.0, 80.0, 70.0)))}, std=1.52, n=4)
    b = claim_baselines(agg, "adaface", ["curricularface", "a", "b"])["parts"][1]
    comp = b["numbers"]["comparisons"][0]
    assert comp["df"] == 12 and comp["noise_se"] == pytest.approx(1.52 * math.sqrt(0.5))
    assert b["verdict"] == "inconclusive"


def test_claim5_inconclusive_on_ties_and_without_baselines():
    # SE 0.2 on df 2: NI lower bound on hq 0 - 4.30·0.2 = -0.86 > -1
    agg = _agg5({"adaface": dict(zip(P, (95.0, 80.3, 70.2))), "curricularface": dict(zip(P, (95.0, 80.0, 70.0)))}, std=0.2)
    c = claim_baselines(agg, "adaface", ["curricularface"])
    assert [p["verdict"] for p in c["parts"]] == ["inconclusive", "supported"] and c["verdict"] == "inconclusive"
    only_lq = agg[agg["protocol"] != "verification/hq"]
    assert claim_baselines(only_lq, "adaface", ["curricularface"])["parts"][1]["verdict"] == "inconclusive"
    assert claim_baselines(agg, "adaface", [])["verdict"] == "inconclusive"
    assert claim_baselines(agg, None, ["curricularface"])["verdict"] == "inconclusive"


def test_claim5_dunnett_compares_every_baseline():
    agg = _agg5({"adaface": dict(zip(P, (95.0, 85.0, 75.0))), "curricularface": dict(zip(P, (95.0, 80.0, 70.0))),
                 "cosface": dict(zip(P, (95.1, 79.0, 70.5)))})
    c = claim_baselines(agg, "adaface", ["curricularface", "cosface"], comparator="dunnett")
    a = c["parts"][0]
    assert a["verdict"] == "supported" and len(a["numbers"]["comparisons"]) == 4  # 2 LQ benchmarks × 2 baselines
    assert all(x["p_dunnett"] >= x["p_value"] for x in a["numbers"]["comparisons"])
    # a clear loss to one baseline on one LQ benchmark refutes after Dunnett and Holm
    agg.loc[(agg["label"] == "cosface") & (agg["protocol"] == "verification/lq"), "mean"] = 90.0
    c = claim_baselines(agg, "adaface", ["curricularface", "cosface"], comparator="dunnett")
    assert c["parts"][0]["verdict"] == "not supported"
