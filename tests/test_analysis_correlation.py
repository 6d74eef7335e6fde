"""Correlations with bootstrap intervals and the augmentation-by-norm analysis (marginlab.analysis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marginlab.analysis import augmentation as aug
from marginlab.analysis.correlation import (
    CORRELATION_COLUMNS,
    bootstrap_counts,
    correlation_table,
    correlation_with_ci,
    eval_correlation_table,
    nonlinearity_test,
    progress_correlation_table,
    resample_ranks,
    resolve_workers,
    weighted_pearson,
)


# --------------------------------------------------------------------------- building blocks
def test_bootstrap_counts_are_multiplicities_of_n_draws():
    c = bootstrap_counts(7, 50, np.random.default_rng(0))
    assert c.shape == (50, 7)
    assert (c.sum(axis=1) == 7).all() and (c >= 0).all()
    with pytest.raises(ValueError, match="n > 0"):
        bootstrap_counts(0, 10, np.random.default_rng(0))


def test_resample_ranks_equal_scipy_rankdata_on_the_materialised_resample():
    rng = np.random.default_rng(1)
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 1.0, 4.0, 2.0])  # ties inside and across items
    counts = bootstrap_counts(len(x), 40, rng)
    ranks = resample_ranks(x, counts)
    for b in range(40):
        idx = np.repeat(np.arange(len(x)), counts[b])
        expected = stats.rankdata(x[idx])  # average ranks, 1-based
        got = np.repeat(ranks[b], counts[b])
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_resample_ranks_hand_example():
    # x = [10, 20, 20, 30], resample counts [2, 1, 0, 1]: sorted resample 10 10 20 30 → ranks 1.5 1.5 3 4.
    ranks = resample_ranks(np.array([10.0, 20.0, 20.0, 30.0]), np.array([[2, 1, 0, 1]]))
    assert ranks[0, 0] == 1.5 and ranks[0, 1] == 3.0 and ranks[0, 3] == 4.0
    # items 1 and 2 tie: block of total 1 after 2 items → rank 3 for both
    assert ranks[0, 2] == 3.0


def test_weighted_pearson_unit_weights_and_duplicates_match_scipy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=30), rng.normal(size=30)
    r = weighted_pearson(x, y, np.ones((1, 30)))
    assert r[0] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    w = np.zeros((1, 30))
    w[0, :5] = [3, 1, 2, 1, 1]
    idx = np.repeat(np.arange(5), [3, 1, 2, 1, 1])
    assert weighted_pearson(x, y, w)[0] == pytest.approx(stats.pearsonr(x[idx], y[idx]).statistic, abs=1e-12)


def test_weighted_pearson_constant_side_is_nan():
    x = np.full(6, 20.0)  # constant with a large offset: round-off must not create a correlation
    y = np.arange(6.0)
    assert np.isnan(weighted_pearson(x, y, np.ones((1, 6)))[0])
    w = np.array([[0, 6, 0, 0, 0, 0]])  # a resample of one item
    assert np.isnan(weighted_pearson(y, y, w)[0])


# --------------------------------------------------------------------------- correlation_with_ci
def test_exact_monotone_relation_gives_spearman_one_with_a_degenerate_interval():
    x = np.linspace(0, 3, 200)
    res = correlation_with_ci(x, np.exp(x), n_resamples=1000, seed=0)
    assert res.spearman == pytest.approx(1.0)
    assert res.spearman_lo == pytest.approx(1.0) and res.spearman_hi == pytest.approx(1.0)
    assert res.pearson < 0.95  # non-linear: Pearson is below 1
    assert res.pearson_lo <= res.pearson <= res.pearson_hi


def test_independent_samples_give_an_interval_covering_zero():
    rng = np.random.default_rng(3)
    res = correlation_with_ci(rng.normal(size=400), rng.normal(size=400), n_resamples=1000, seed=1)
    assert res.pearson_lo < 0 < res.pearson_hi
    assert res.spearman_lo < 0 < res.spearman_hi
    assert res.n == 400


def test_bivariate_normal_interval_matches_fisher_z():
    rho, n = 0.6, 1500
    rng = np.random.default_rng(4)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    res = correlation_with_ci(z[:, 0], z[:, 1], n_resamples=2000, seed=2)
    assert res.pearson == pytest.approx(stats.pearsonr(z[:, 0], z[:, 1]).statistic)
    assert res.spearman == pytest.approx(stats.spearmanr(z[:, 0], z[:, 1]).statistic)
    # Independent reference: the Fisher z interval tanh(atanh(r) ± 1.96 / sqrt(n - 3)).
    half = 1.959964 / np.sqrt(n - 3)
    lo, hi = np.tanh(np.arctanh(res.pearson) - half), np.tanh(np.arctanh(res.pearson) + half)
    assert res.pearson_lo == pytest.approx(lo, abs=0.015)
    assert res.pearson_hi == pytest.approx(hi, abs=0.015)
    assert res.pearson_lo < rho < res.pearson_hi


def test_intervals_are_seeded():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=100), rng.normal(size=100)
    a = correlation_with_ci(x, y, n_resamples=1000, seed=7)
    b = correlation_with_ci(x, y, n_resamples=1000, seed=7)
    c = correlation_with_ci(x, y, n_resamples=1000, seed=8)
    assert a == b
    assert a.pearson_lo != c.pearson_lo


def test_non_finite_pairs_are_dropped_and_small_samples_give_nan():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    y = np.array([1.0, 3.0, 2.0, np.inf, 6.0])
    res = correlation_with_ci(x, y, n_resamples=1000)
    assert res.n == 3
    assert res.spearman == pytest.approx(1.0)
    tiny = correlation_with_ci([1.0, 2.0], [2.0, 1.0], n_resamples=1000)
    assert tiny.n == 2 and np.isnan(tiny.pearson) and np.isnan(tiny.spearman_hi)
    with pytest.raises(ValueError, match="equal length"):
        correlation_with_ci([1.0, 2.0, 3.0], [1.0, 2.0], n_resamples=1000)
    with pytest.raises(ValueError, match="confidence"):
        correlation_with_ci([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], confidence=1.5)


def test_nonlinearity_test_detects_saturation_but_not_a_linear_relation():
    rng = np.random.default_rng(6)
    q = rng.uniform(0, 1, 400)
    saturating = 1 - np.exp(-12 * q) + rng.normal(0, 0.02, 400)
    res = nonlinearity_test(q, saturating, n_resamples=1000, seed=0)
    assert res["lo"] > 0.3 and res["mse_monotone"] < res["mse_linear"]
    # A linear relation with uniform x: the rank correlation exceeds Pearson here, but the
    # out-of-sample monotone fit gains nothing over the line.
    linear = q + rng.normal(0, 0.2, 400)
    assert stats.spearmanr(q, linear).statistic > stats.pearsonr(q, linear).statistic - 0.01
    res = nonlinearity_test(q, linear, n_resamples=1000, seed=0)
    assert res["gain"] < 0.02 and res["lo"] < 0
    assert res["n"] == 400
    assert np.isnan(nonlinearity_test(q[:5], linear[:5])["gain"])


# --------------------------------------------------------------------------- tables of runs
def _probe(run: str, label: str, head: str, epochs=(0, 1), n=60, with_gt=True, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    q = rng.uniform(0, 1, n)
    frames = []
    for epoch in epochs:
        for pass_ in ("clean", "augmented"):
            frames.append(pd.DataFrame({
                "run": run, "label": label, "head": head, "epoch": epoch, "pass": pass_,
                "norm": 10 + epoch * 5 * q + rng.normal(0, 0.5, n), "p_yi": rng.uniform(0, 1, n),
                "iq": q, "gt_quality": q if with_gt else np.nan,
            }))
    return pd.concat(frames, ignore_index=True)


def test_correlation_table_rows_columns_and_missing_targets():
    probe = pd.concat([_probe("a-s0", "a", "adaface"), _probe("b-s0", "b", "cosface", with_gt=False, seed=1)])
    table = correlation_table(probe, n_resamples=1000)
    assert list(table.columns) == CORRELATION_COLUMNS
    # run a: 2 epochs × 2 passes × 2 quantities × 2 targets; run b: no gt_quality → 1 target
    assert (table["run"] == "a-s0").sum() == 16 and (table["run"] == "b-s0").sum() == 8
    assert set(table[table["run"] == "b-s0"]["target"]) == {"iq"}
    row = table[(table["run"] == "a-s0") & (table["epoch"] == 1) & (table["pass"] == "clean")
                & (table["quantity"] == "norm") & (table["target"] == "iq")].iloc[0]
    sel = probe[(probe["run"] == "a-s0") & (probe["epoch"] == 1) & (probe["pass"] == "clean")]
    assert row["spearman"] == pytest.approx(stats.spearmanr(sel["norm"], sel["iq"]).statistic)
    assert row["spearman_lo"] > 0.5 and row["n"] == 60


def test_a_groups_interval_does_not_depend_on_other_runs():
    a = _probe("a-s0", "a", "adaface")
    alone = correlation_table(a, n_resamples=1000, seed=3)
    together = correlation_table(pd.concat([_probe("0-s0", "z", "cosface", seed=9), a]), n_resamples=1000, seed=3)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True),
                                  together[together["run"] == "a-s0"].reset_index(drop=True))


def test_threads_give_the_same_tables_as_one():
    """The bootstrap groups are spread over threads; each seeds its own generator, so the tables are equal."""
    probe = pd.concat([_probe("a-s0", "a", "adaface"), _probe("b-s0", "b", "cosface", with_gt=False, seed=1)])
    one = correlation_table(probe, n_resamples=1000, seed=5, workers=1)
    for workers in (2, 3, 0):
        pd.testing.assert_frame_equal(one, correlation_table(probe, n_resamples=1000, seed=5, workers=workers))
    progress = probe.rename(columns={"epoch": "step"}).assign(epoch=1, images_seen=0, progress=0.0)
    pd.testing.assert_frame_equal(progress_correlation_table(progress, n_resamples=1000, workers=1),
                                  progress_correlation_table(progress, n_resamples=1000, workers=2))


def test_resolve_workers():
    assert resolve_workers(3) == 3
    assert resolve_workers(0) >= 1
    with pytest.raises(ValueError, match="workers"):
        resolve_workers(-1)


def test_correlation_table_requires_columns():
    with pytest.raises(ValueError, match="p_yi"):
        correlation_table(pd.DataFrame({"run": [], "label": [], "head": [], "epoch": [], "pass": [], "norm": []}))


def test_eval_correlation_rows_are_tagged_by_split():
    rng = np.random.default_rng(0)
    q = rng.uniform(0, 1, 50)
    frame = pd.DataFrame({"run": "a-s0", "label": "a", "head": "adaface", "epoch": 3, "split": "bin:lq",
                          "index": np.arange(50), "norm": 10 + 5 * q, "iq": q, "gt_quality": np.nan})
    table = eval_correlation_table(frame, n_resamples=1000)
    assert list(table["pass"]) == ["eval:bin:lq"] and list(table["quantity"]) == ["norm"]
    assert table["spearman"].iloc[0] == pytest.approx(1.0)


# --------------------------------------------------------------------------- augmentation
def test_norm_bins_are_equal_count_by_rank():
    norm = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])
    b = aug.norm_bins(norm, 5)
    # ranks: 1,2 → bin 1; 3,4 → bin 2; ... 9,10 → bin 5
    assert list(b) == [3, 1, 5, 2, 4, 1, 4, 2, 3, 5]
    assert list(aug.norm_bins(np.array([2.0, 1.0]), 5)) == [2, 1]
    with pytest.raises(ValueError, match="finite"):
        aug.norm_bins(np.array([1.0, np.nan]), 2)


def _aug_frame() -> pd.DataFrame:
    # 10 images, norms 1..10 (index = norm); the lowest four are cropped, image 3 also low-res,
    # image 9 photometric.
    norm = np.arange(1.0, 11.0)
    return pd.DataFrame({"index": np.arange(10), "norm": norm, "crop": norm <= 4, "lowres": norm == 3,
                         "photometric": norm == 9, "flip": True})


def test_augmentation_by_norm_hand_example():
    table = aug.augmentation_by_norm(_aug_frame(), bins=5)
    assert list(table["norm_bin"]) == [1, 2, 3, 4, 5]
    assert list(table["n"]) == [2] * 5
    assert list(table["share_crop"]) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert list(table["share_lowres"]) == [0.0, 0.5, 0.0, 0.0, 0.0]
    assert list(table["share_photometric"]) == [0.0, 0.0, 0.0, 0.0, 0.5]
    assert list(table["share_any"]) == [1.0, 1.0, 0.0, 0.0, 0.5]  # flip does not count
    assert list(table["norm_min"]) == [1, 3, 5, 7, 9] and list(table["norm_max"]) == [2, 4, 6, 8, 10]


def test_low_high_gap_planted_and_null():
    frame = _aug_frame()
    gap = aug.low_high_gap(frame, bins=5, n_resamples=1000)
    assert gap["share_low"] == 1.0 and gap["share_high"] == 0.5 and gap["gap"] == 0.5
    assert gap["n_low"] == 2 and gap["n_high"] == 2
    rng = np.random.default_rng(0)
    null = pd.DataFrame({"norm": rng.normal(size=1000), "crop": rng.random(1000) < 0.3,
                         "lowres": False, "photometric": False})
    gap = aug.low_high_gap(null, bins=5, n_resamples=2000, seed=1)
    assert gap["lo"] < 0 < gap["hi"]
    assert gap["hi"] - gap["lo"] == pytest.approx(2 * 1.96 * np.sqrt(2 * 0.3 * 0.7 / 200), rel=0.2)


def test_augmentation_table_uses_the_last_epoch_of_the_augmented_pass():
    f = _aug_frame()
    rows = []
    for epoch in (0, 2):
        for pass_ in ("clean", "augmented"):
            g = f.copy()
            g["norm"] = f["norm"] if epoch == 2 else -f["norm"]  # epoch 0 reversed: must not be used
            rows.append(g.assign(run="r-s0", label="r", head="adaface", epoch=epoch, **{"pass": pass_}))
    table = aug.augmentation_table(pd.concat(rows), bins=5)
    assert set(table["epoch"]) == {2}
    assert list(table["share_crop"]) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert list(table.columns) == aug.AUGMENTATION_COLUMNS


def test_norm_change_is_the_paired_log_ratio():
    aug_rows = _aug_frame()
    clean = aug_rows.assign(norm=aug_rows["norm"] * 2.0)  # every augmented image has half its clean norm...
    clean.loc[clean["norm"] == 20.0, "norm"] = 10.0  # ...except image 10 (unchanged, not augmented)
    table = aug.norm_change(clean, aug_rows).set_index("augmentation")
    assert table.loc["crop", "n"] == 4 and table.loc["crop", "mean_log_ratio"] == pytest.approx(np.log(0.5))
    assert table.loc["any", "n"] == 5 and table.loc["none", "n"] == 5
    assert table.loc["none", "mean_log_ratio"] == pytest.approx(4 * np.log(0.5) / 5)
    assert table.loc["photometric", "median_ratio"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="pair"):
        aug.norm_change(clean.iloc[:5], aug_rows)
