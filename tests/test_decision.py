"""Distances of verdicts to their thresholds (marginlab.analysis.decision) and their use in the claims."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marginlab.analysis.claims import claim_ablations, claim_augmentation, claim_baselines, claim_margin_form
from marginlab.analysis.decision import (
    all_of,
    any_of,
    comparison_sides,
    decision,
    interval_item,
    part_decision,
    verdict_distance,
)

Z95 = stats.norm.ppf(0.975)


def test_interval_item_hand_computed():
    # CI [0.05, 0.25] of a 95 % normal interval: se = 0.2 / (2·1.95996) = 0.051021
    item = interval_item(0.15, 0.05, 0.25, effect=0.1)
    assert item["se"] == pytest.approx(0.2 / (2 * 1.959964), rel=1e-6)
    assert item["to_supported"] == pytest.approx(0.05 / 0.0510213, rel=1e-5)  # 0.98: supported, but borderline
    assert item["to_not_supported"] == pytest.approx((0.1 - 0.25) / 0.0510213, rel=1e-5)  # -2.94
    assert item["mde"] == pytest.approx((1.959964 + 0.841621) * 0.0510213, rel=1e-5)  # 0.1429


def test_interval_item_without_interval_is_unknown():
    item = interval_item(0.1, float("nan"), 0.2, effect=0.1)
    assert all(math.isnan(item[k]) for k in ("se", "to_supported", "to_not_supported", "mde"))


def test_comparison_sides():
    assert comparison_sides(3.0, 1.0, 2.0) == (1.0, -5.0)
    assert comparison_sides(-2.5, 0.5, 2.0) == (-7.0, 3.0)
    assert all(math.isnan(v) for v in comparison_sides(1.0, float("nan"), 2.0))


def test_all_of_and_any_of():
    assert all_of([1.0, -0.5, 2.0]) == -0.5
    assert math.isnan(all_of([1.0, float("nan")]))  # every item is needed: one unknown → unknown
    assert any_of([1.0, float("nan"), -3.0]) == 1.0  # any item suffices: the strongest known
    assert math.isnan(any_of([float("nan")]))


@pytest.mark.parametrize("verdict,sup,neg,expected", [
    ("supported", 2.5, -4.0, 2.5),
    ("not supported", -4.0, 1.5, 1.5),
    ("inconclusive", -0.3, -2.0, -0.3),  # the nearer decisive verdict: 0.3 SE short of supported
    ("inconclusive", None, -2.0, -2.0),
    ("inconclusive", None, None, None),
])
def test_verdict_distance(verdict, sup, neg, expected):
    assert verdict_distance(verdict, sup, neg) == expected


def test_decision_borderline():
    assert decision("supported", 0.98, -3.0)["borderline"] is True
    assert decision("supported", 1.02, -3.0)["borderline"] is False
    assert decision("inconclusive", -0.5, -3.0)["borderline"] is True  # half an SE from becoming supported
    assert decision("supported", None, None)["borderline"] is False  # analytic: exact


def test_part_decision_combines_like_combine():
    a = {"verdict": "supported", "decision": decision("supported", 3.0, -5.0)}
    b = {"verdict": "supported", "decision": decision("supported", 1.2, -2.0)}
    c = {"verdict": "not supported", "decision": decision("not supported", -6.0, 0.4)}
    d = part_decision([a, b], "supported")
    assert d["distance_se"] == 1.2 and not d["borderline"]  # the weakest part decides
    d = part_decision([a, b, c], "not supported")
    assert d["distance_se"] == 0.4 and d["borderline"]  # one not-supported part suffices, and it is close
    assert part_decision([{"verdict": "inconclusive", "decision": None}], "inconclusive")["distance_se"] is None


def test_interval_mde_against_a_bootstrap_simulation():
    """The MDE of the interval rule, from a percentile bootstrap CI of a mean (what the claims' intervals are):
    data with a true mean at the MDE get a CI above 0 in about 80 % of replications."""
    rng = np.random.default_rng(0)
    n, sd, reps, boots = 200, 1.0, 400, 400
    se = sd / np.sqrt(n)
    mde = interval_item(0.0, -Z95 * se, Z95 * se, effect=0.1)["mde"]
    hits = 0
    for _ in range(reps):
        x = rng.normal(mde, sd, size=n)
        means = x[rng.integers(0, n, size=(boots, n))].mean(axis=1)
        hits += np.quantile(means, 0.025) > 0
    assert hits / reps == pytest.approx(0.8, abs=0.06)  # binomial SE at 400 replications: 0.02


def _gaps(**los):
    return {r: {"gap": lo + 0.1, "lo": lo, "hi": lo + 0.2, "share_low": 0.5, "share_high": 0.4,
                "n_low": 100, "n_high": 100} for r, lo in los.items()}


def test_claim_augmentation_decision_and_what_it_could_see():
    claim = claim_augmentation(_gaps(a=0.05, b=0.30))
    part = claim["parts"][0]
    assert part["verdict"] == "supported"
    se = 0.2 / (2 * Z95)
    seed_std = np.std([0.15, 0.40], ddof=1)  # the two runs' gaps: another seed moves a bound by about this much
    assert part["decision"]["distance_se"] == pytest.approx(0.05 / np.hypot(se, seed_std), rel=1e-4)  # run a
    assert part["decision"]["borderline"] is True
    assert claim["decision"]["distance_se"] == part["decision"]["distance_se"]
    seen = part["numbers"]["what_it_could_see"]
    assert seen["runs"]["a"]["mde"] == pytest.approx((Z95 + stats.norm.ppf(0.8)) * se, rel=1e-4)
    assert seen["seed_std"] == pytest.approx(np.std([0.15, 0.40], ddof=1), rel=1e-4)


def test_claim_margin_form_is_exact():
    claim = claim_margin_form({"s": 64.0, "m": 0.4, "h": 0.333, "t_alpha": 0.01})
    assert claim["decision"]["distance_se"] is None and claim["decision"]["borderline"] is False


def _agg(rows):
    return pd.DataFrame(rows, columns=["label", "protocol", "quality", "mean", "std", "n_seeds", "se"])


def test_claim_baselines_b_distance_hand_computed():
    # pooled seed std 1.0 over 2 seeds each → SE of a difference = sqrt(1/2 + 1/2) = 1.0
    agg = _agg([
        ("adaface", "verification/hq", "high", 90.0, 1.0, 2, 0.5),
        ("cosface", "verification/hq", "high", 90.5, 1.0, 2, 0.5),
        ("adaface", "verification/lq", "low", 80.0, 1.0, 2, 0.5),
        ("cosface", "verification/lq", "low", 76.5, 1.0, 2, 0.5),
    ])
    claim = claim_baselines(agg, "adaface", ["cosface"])
    a, b = claim["parts"]
    # b: d = -0.5 on high quality; worse side = 0.5 - 2 = -1.5 → supported, 1.5 SE from 'clearly worse'
    assert b["verdict"] == "supported" and b["decision"]["distance_se"] == pytest.approx(1.5)
    # a: d = +3.5 on low quality → better side 1.5; not-worse side 5.5 → supported at 1.5 SE
    assert a["verdict"] == "supported" and a["decision"]["distance_se"] == pytest.approx(1.5)
    assert claim["verdict"] == "supported" and claim["decision"]["distance_se"] == pytest.approx(1.5)


def test_claim_ablations_best_of_distance():
    agg = _agg([
        ("adaface", "verification/lq", "low", 80.0, 1.0, 2, 0.5),
        ("adaface-h022", "verification/lq", "low", 77.5, 1.0, 2, 0.5),
    ])
    ablation = pd.DataFrame({
        "set": ["verification/lq"] * 2, "factor": ["h", "h"], "setting": ["h=0.33", "h=0.22"],
        "label": ["adaface", "adaface-h022"], "mean": [80.0, 77.5],
    })
    claim = claim_ablations(ablation, agg)
    part = next(p for p in claim["parts"] if p["name"] == "h: paper's best")
    assert part["verdict"] == "supported"
    assert part["decision"]["distance_se"] == pytest.approx(0.5) and part["decision"]["borderline"]


def test_inconclusive_held_back_by_a_non_noise_condition_counts_only_the_side_short_of_its_threshold():
    """Claim 5a: AdaFace clearly better on both HQ (+5) and LQ (+4): supported's side is past its threshold,
    yet the verdict is inconclusive (the gain is not larger on low quality) - that side is no distance. The
    not-supported side (clearly better on HQ but on no LQ benchmark) is 2 SE away: LQ's 4 SE gain would have
    to fall below 2 SE."""
    agg = _agg([
        ("adaface", "verification/hq", "high", 95.0, 1.0, 2, 0.5),
        ("cosface", "verification/hq", "high", 90.0, 1.0, 2, 0.5),
        ("adaface", "verification/lq", "low", 84.0, 1.0, 2, 0.5),
        ("cosface", "verification/lq", "low", 80.0, 1.0, 2, 0.5),
    ])
    a = claim_baselines(agg, "adaface", ["cosface"])["parts"][0]
    assert a["verdict"] == "inconclusive" and a["decision"]["to_supported_se"] > 0
    assert a["decision"]["distance_se"] == pytest.approx(-2.0) and a["decision"]["borderline"] is False
    only_past = part_decision([{"verdict": "inconclusive", "decision": decision("inconclusive", 2.0, None)}], "inconclusive")
    assert only_past["distance_se"] is None  # nothing short of a threshold: no noise distance to state


def test_a_part_without_data_leaves_supported_unknown():
    a = {"verdict": "supported", "decision": decision("supported", 3.0, -5.0)}
    missing = {"verdict": "inconclusive", "decision": None}
    d = part_decision([a, missing], "inconclusive")
    assert d["to_supported_se"] is None and d["distance_se"] == -5.0  # only 'not supported' is in reach
