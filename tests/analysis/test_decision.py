"""Distances of verdicts to their thresholds (marginlab.analysis.decision) and their use in the claims."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marginlab.analysis.claims.benchmark_claims import claim_ablations, claim_baselines
from marginlab.analysis.claims.margin_form_claim import claim_margin_form
from marginlab.analysis.claims.probe_claims import claim_augmentation
from marginlab.analysis.decision import (
    claim_decision,
    decision,
    interval_item,
    p_decision,
    p_distance,
    verdict_distance,
)
from marginlab.analysis.power import t_test_mde
from marginlab.analysis.significance import holm

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


def test_p_distance_and_p_decision():
    z = stats.norm.ppf(0.975)
    assert p_distance(0.05) == pytest.approx(0.0, abs=1e-12)
    assert p_distance(2 * stats.norm.sf(3.0)) == pytest.approx(3.0 - z)  # normal statistic: |d|/SE - 1.96
    assert p_distance(0.2) < 0 < p_distance(0.01) and math.isnan(p_distance(None))
    d = p_decision("supported", 0.001, 0.9, "x")
    assert d["p_support"] == 0.001 and d["to_supported_se"] == pytest.approx(stats.norm.isf(0.0005) - z)
    assert d["distance_se"] == d["to_supported_se"] and not d["borderline"]
    inc = p_decision("inconclusive", 0.08, 0.6)
    assert inc["distance_se"] == pytest.approx(stats.norm.isf(0.04) - z) and inc["borderline"]  # 0.21 SE short


def test_claim_decision_combines_parts_like_combine():
    a = {"verdict": "supported", "decision": p_decision("supported", 0.01, 0.9)}
    b = {"verdict": "supported", "decision": p_decision("supported", 0.03, 0.8)}
    c = {"verdict": "not supported", "decision": p_decision("not supported", 0.9, 0.02)}
    d = claim_decision([a, b], "supported")
    assert d["p_support"] == 0.03  # intersection-union: the weakest part
    d = claim_decision([a, b, c], "not supported")
    assert d["p_refute"] == pytest.approx(min(holm([0.9, 0.8, 0.02])))  # Holm over the parts: 0.06
    assert d["distance_se"] < 0  # ... which is why such a claim is not 'not supported' (claims.combine agrees)
    from marginlab.analysis.verdict_rules import combine

    assert combine(["supported", "supported", "not supported"], [0.9, 0.8, 0.02]) == "inconclusive"
    assert claim_decision([{"verdict": "inconclusive", "decision": None}], "inconclusive")["distance_se"] is None


def test_claim_augmentation_decision_and_what_it_could_see():
    gaps = {r: {"gap": g, "lo": g - 0.1, "hi": g + 0.1} for r, g in (("a", 0.25), ("b", 0.40), ("c", 0.30), ("d", 0.35))}
    claim = claim_augmentation(gaps)
    part = claim["parts"][0]
    vals = np.array([0.25, 0.40, 0.30, 0.35])
    t = stats.ttest_1samp(vals, 0.0)
    assert part["verdict"] == "supported"
    assert part["decision"]["p_support"] == pytest.approx(t.pvalue, abs=1e-6)
    assert part["decision"]["distance_se"] == pytest.approx(stats.norm.isf(t.pvalue / 2) - Z95, abs=1e-5)
    seen = part["numbers"]["seed_level"]
    se = vals.std(ddof=1) / np.sqrt(4)
    assert seen["se"] == pytest.approx(se, abs=1e-6) and seen["mde"] == pytest.approx(t_test_mde(se, 3, sides=1), abs=1e-6)


def test_claim_margin_form_is_exact():
    claim = claim_margin_form({"s": 64.0, "m": 0.4, "h": 0.333, "t_alpha": 0.01})
    assert claim["decision"]["distance_se"] is None and claim["decision"]["borderline"] is False
    assert "analytic" in claim["decision"]["deciding"]


def _agg(rows):
    return pd.DataFrame(rows, columns=["label", "protocol", "quality", "mean", "std", "n_seeds", "se"])


def test_claim_baselines_hand_computed():
    # pooled seed std 1.0 over 2 seeds each, df = 2 (two labels × 1) → SE of a difference = 1.0; t_crit(2) = 4.303.
    # No 'head' column: labels are the heads.
    agg = _agg([
        ("adaface", "verification/hq", "high", 90.0, 1.0, 2, 0.5),
        ("curricularface", "verification/hq", "high", 90.5, 1.0, 2, 0.5),
        ("adaface", "verification/lq", "low", 80.0, 1.0, 2, 0.5),
        ("curricularface", "verification/lq", "low", 74.0, 1.0, 2, 0.5),
    ])
    claim = claim_baselines(agg, "adaface", ["curricularface"], margin=5.0)
    a, b = claim["parts"]
    # a: d = +6, t = 6 on df 2: p = 0.0267, one LQ benchmark (Holm = itself) → supported
    assert a["verdict"] == "supported" and a["decision"]["p_support"] == pytest.approx(2 * stats.t.sf(6.0, 2), abs=1e-6)
    # b: d = -0.5, NI margin 5: lower bound -0.5 - 4.303 = -4.80 > -5 → supported; p = 2·P(T > 4.5)
    assert b["verdict"] == "supported"
    assert b["numbers"]["comparisons"][0]["ni_ci"][0] == pytest.approx(-0.5 - stats.t.ppf(0.975, 2), abs=1e-5)
    assert b["decision"]["p_support"] == pytest.approx(2 * stats.t.sf(4.5, 2), abs=1e-6)
    assert claim["verdict"] == "supported"
    assert claim["decision"]["p_support"] == pytest.approx(max(2 * stats.t.sf(6.0, 2), 2 * stats.t.sf(4.5, 2)), abs=1e-6)


def test_claim_ablations_decision():
    agg = _agg([
        ("adaface", "verification/lq", "low", 80.0, 1.0, 2, 0.5),
        ("adaface-h022", "verification/lq", "low", 70.0, 1.0, 2, 0.5),
    ])
    ablation = pd.DataFrame({
        "set": ["verification/lq"] * 2, "factor": ["h", "h"], "setting": ["h=0.33", "h=0.22"],
        "label": ["adaface", "adaface-h022"], "mean": [80.0, 70.0],
    })
    claim = claim_ablations(ablation, agg)
    part = next(p for p in claim["parts"] if p["name"] == "h: paper's best")
    assert part["verdict"] == "supported"  # t = 10 on df 2: p = 0.0099
    assert part["decision"]["p_support"] == pytest.approx(2 * stats.t.sf(10.0, 2), abs=1e-6)
    assert part["decision"]["p_refute"] == 1.0
