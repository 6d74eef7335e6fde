"""Minimum detectable effects and threshold distances (marginlab.analysis.power) against hand-computed
values and a simulation of the tests themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from marginlab.analysis.power import (
    clear_rule_mde,
    is_borderline,
    paired_t_mde,
    paired_t_power,
    seeds_for_mde,
    threshold_distance,
)


def test_large_n_tends_to_the_normal_formula():
    # (z_0.975 + z_0.8) · sd / sqrt(n) = (1.959964 + 0.841621) / sqrt(2000) = 0.062645...
    hand = (1.959964 + 0.841621) / math.sqrt(2000)
    assert paired_t_mde(1.0, 2000) == pytest.approx(hand, rel=2e-3)
    assert paired_t_mde(1.0, 2000) > hand  # t has heavier tails than the normal


def test_published_table_values():
    # Cohen's d_z for a two-sided paired t-test, alpha 0.05, power 0.80 (as G*Power tabulates):
    # n = 10 -> 0.996, n = 20 -> 0.660, n = 100 -> 0.283; scales with the spread.
    assert paired_t_mde(1.0, 10) == pytest.approx(0.996, abs=1e-3)
    assert paired_t_mde(1.0, 20) == pytest.approx(0.660, abs=1e-3)
    assert paired_t_mde(1.0, 100) == pytest.approx(0.283, abs=1e-3)
    assert paired_t_mde(2.5, 10) == pytest.approx(2.5 * paired_t_mde(1.0, 10))
    assert paired_t_power(paired_t_mde(1.0, 7), 1.0, 7) == pytest.approx(0.8, abs=1e-9)


@pytest.mark.parametrize("n", [3, 6, 12])
def test_simulated_paired_t_test_rejects_at_the_stated_power(n):
    rng = np.random.default_rng(n)
    sd, trials = 1.7, 40_000
    delta = paired_t_mde(sd, n)
    diffs = rng.normal(delta, sd, size=(trials, n))
    t = diffs.mean(axis=1) / (diffs.std(axis=1, ddof=1) / math.sqrt(n))
    rejected = np.abs(t) > stats.t.ppf(0.975, n - 1)
    assert rejected.mean() == pytest.approx(0.80, abs=0.01)  # 3.5 binomial SEs
    null = rng.normal(0.0, sd, size=(trials, n))
    t0 = null.mean(axis=1) / (null.std(axis=1, ddof=1) / math.sqrt(n))
    assert (np.abs(t0) > stats.t.ppf(0.975, n - 1)).mean() == pytest.approx(0.05, abs=0.006)


def test_clear_rule_mde_by_hand_and_by_simulation():
    assert clear_rule_mde(1.5) == pytest.approx((2.0 + 0.8416212) * 1.5, rel=1e-6)
    rng = np.random.default_rng(0)
    se = 0.7
    d = rng.normal(clear_rule_mde(se), se, size=100_000)
    assert (d > 2.0 * se).mean() == pytest.approx(0.80, abs=0.005)


def test_seed_count_for_a_target_effect():
    n = seeds_for_mde(1.0, 0.5)
    assert paired_t_mde(1.0, n) <= 0.5 < paired_t_mde(1.0, n - 1)
    assert n == 34
    with pytest.raises(ValueError, match="positive target"):
        seeds_for_mde(1.0, 0.0)


def test_degenerate_inputs():
    assert math.isnan(paired_t_mde(1.0, 1)) and math.isnan(paired_t_mde(float("nan"), 5))
    assert paired_t_mde(0.0, 5) == 0.0
    assert math.isnan(clear_rule_mde(float("nan")))
    with pytest.raises(ValueError, match="alpha < power"):
        paired_t_mde(1.0, 5, alpha=0.9, power=0.8)


def test_threshold_distance_and_borderline():
    assert threshold_distance(3.0, 2.0, 0.5) == pytest.approx(2.0)
    assert threshold_distance(1.8, 2.0, 0.5) == pytest.approx(-0.4)
    assert is_borderline(-0.4) and not is_borderline(2.0) and not is_borderline(float("nan"))
    assert math.isnan(threshold_distance(1.0, 2.0, 0.0))


def test_claim_comparisons_report_what_they_could_see():
    import pandas as pd

    from marginlab.analysis.claims.benchmark_claims import versus

    agg = pd.DataFrame({"protocol": ["lq", "lq"], "std": [1.0, 2.0], "n_seeds": [3, 3]})
    a = {"label": "adaface", "mean": 80.0, "n_seeds": 3, "se": 0.5}
    b = {"label": "arcface", "mean": 77.5, "n_seeds": 3, "se": 0.5}
    out = versus(agg, "lq", a, b)
    s = math.sqrt((2 * 1.0**2 + 2 * 2.0**2) / 4)  # pooled seed std
    se = s * math.sqrt(2 / 3)
    assert out["seed_std_pooled"] == pytest.approx(s) and out["noise_se"] == pytest.approx(se)
    # the MDE of the test actually run: pooled t on Σ(n_i - 1) = 4 df at this SE (not a zero-correlation paired t)
    from scipy import stats

    from marginlab.analysis.power import t_test_mde

    assert out["df"] == 4 and out["t_crit"] == pytest.approx(stats.t.ppf(0.975, 4), rel=1e-9)
    assert out["mde"] == pytest.approx(t_test_mde(se, 4)) and out["mde"] < paired_t_mde(s * math.sqrt(2), 3)
    assert out["t"] == pytest.approx(2.5 / se) and out["p_value"] == pytest.approx(2 * stats.t.sf(2.5 / se, 4))
    assert out["judgement"] == "tie"  # t = 1.94 < 2.78
