"""Correlations with bootstrap intervals and the augmentation-by-norm analysis (marginlab.analysis); the bootstrap's
building blocks and coverage are in test_cluster_bootstrap.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marginlab.analysis import augmentation as aug
from marginlab.analysis.cluster_bootstrap import bootstrap_counts, cluster_bootstrap_counts, group_rng
from marginlab.analysis.correlation import (
    CORRELATION_COLUMNS,
    PROGRESS_CORRELATION_COLUMNS,
    correlation_table,
    correlation_with_ci,
    eval_correlation_table,
    nonlinearity_test,
    progress_correlation_table,
    resolve_workers,
)


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

def _with_identities(probe: pd.DataFrame, per_id: int, seed: int = 0) -> pd.DataFrame:
    """``class_label`` (the probe's identity) for the _probe rows: ``per_id`` consecutive images per identity, and
    an identity effect added to both norm and iq."""
    out = probe.copy()
    position = out.groupby(["run", "epoch", "pass"]).cumcount().to_numpy()
    out["class_label"] = position // per_id
    effect = np.random.default_rng(seed).normal(0, 1, position.max() // per_id + 1)[out["class_label"]]
    out["norm"] = out["norm"] + effect
    out["iq"] = out["iq"] + 0.5 * effect
    return out


def test_tables_resample_identities_and_say_so():
    probe = _with_identities(_probe("a-s0", "a", "adaface", n=120), per_id=6)
    table = correlation_table(probe, n_resamples=1000, seed=1)
    assert set(table["bootstrap"]) == {"identity"}
    row = table[(table["epoch"] == 1) & (table["pass"] == "clean") & (table["quantity"] == "norm")
                & (table["target"] == "iq")].iloc[0]
    sel = probe[(probe["epoch"] == 1) & (probe["pass"] == "clean")]
    expected = correlation_with_ci(sel["norm"].to_numpy(), sel["iq"].to_numpy(), n_resamples=1000,
                                   rng=group_rng(1, "a-s0", 1, "clean", "iq"), clusters=sel["class_label"].to_numpy())
    assert (row["spearman_lo"], row["spearman_hi"], row["pearson_lo"]) == pytest.approx(
        (expected.spearman_lo, expected.spearman_hi, expected.pearson_lo), abs=1e-12)
    image = correlation_table(probe.drop(columns="class_label"), n_resamples=1000, seed=1)
    assert set(image["bootstrap"]) == {"image"}
    assert image["spearman"].tolist() == pytest.approx(table["spearman"].tolist())  # same points, other intervals
    # at epoch 0 norm and iq are related only through their shared identity effects: there the image
    # bootstrap's intervals are far too narrow
    both = ((table["quantity"] == "norm") & (table["target"] == "iq") & (table["epoch"] == 0)).to_numpy()
    width = {k: (t["spearman_hi"] - t["spearman_lo"]).to_numpy()[both] for k, t in (("id", table), ("im", image))}
    assert (width["id"] > 1.3 * width["im"]).all(), width
    # every label distinct: the image bootstrap, draw for draw
    distinct = correlation_table(probe.assign(class_label=np.arange(len(probe))), n_resamples=1000, seed=1)
    pd.testing.assert_frame_equal(distinct, image)
    progress = probe.rename(columns={"epoch": "step"}).assign(epoch=1, images_seen=0, progress=0.0)
    one = progress_correlation_table(progress, n_resamples=1000, workers=1)
    assert set(one["bootstrap"]) == {"identity"} and list(one.columns) == PROGRESS_CORRELATION_COLUMNS
    pd.testing.assert_frame_equal(one, progress_correlation_table(progress, n_resamples=1000, workers=2))


# --------------------------------------------------------------------------- augmentation: identity-cluster intervals
def _aug_probe(n_ids: int = 30, seed: int = 0, round_norm: bool = False) -> pd.DataFrame:
    """Augmented probe rows of one run: 1–7 images per identity, an identity effect in the norm, augmented images
    with lower norms; ``round_norm`` makes ties across images."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), rng.integers(1, 8, n_ids))
    n = len(ids)
    flags = rng.random((n, 3)) < 0.25
    norm = 20 + rng.normal(0, 2, n_ids)[ids] + rng.normal(0, 1, n) - 2.0 * flags.any(axis=1)
    return pd.DataFrame({"index": rng.permutation(10 * n)[:n], "class_label": 500 + ids,
                         "norm": np.round(norm) if round_norm else norm, "crop": flags[:, 0], "lowres": flags[:, 1],
                         "photometric": flags[:, 2], "flip": rng.random(n) < 0.5})


@pytest.mark.parametrize("round_norm", [False, True])
def test_low_high_gap_interval_equals_brute_force_with_bins_recomputed_per_resample(round_norm):
    frame = _aug_probe(round_norm=round_norm)
    n_res, bins = 300, 5
    res = aug.low_high_gap(frame, bins, n_resamples=n_res, seed=4)
    assert res["bootstrap"] == "identity" and res["n_identities"] == 30
    counts = cluster_bootstrap_counts(frame["class_label"].to_numpy(), n_res, np.random.default_rng(4))
    norm, any_aug = frame["norm"].to_numpy(), frame[["crop", "lowres", "photometric"]].to_numpy().any(axis=1)
    gaps = []
    for c in counts:  # materialise the resample in probe order and cut it as the statistic does
        idx = np.repeat(np.arange(len(frame)), c)
        b = aug.norm_bins(norm[idx], bins)
        gaps.append(any_aug[idx][b == 1].mean() - any_aug[idx][b == b.max()].mean())
    assert (res["lo"], res["hi"]) == pytest.approx(tuple(np.quantile(gaps, [0.025, 0.975])), abs=1e-12)
    b = aug.norm_bins(norm, bins)
    assert res["gap"] == pytest.approx(any_aug[b == 1].mean() - any_aug[b == 5].mean())
    # without identities: the images are resampled (same draws as bootstrap_counts), and it says so
    image = aug.low_high_gap(frame.drop(columns="class_label"), bins, n_resamples=n_res, seed=4)
    assert image["bootstrap"] == "image" and image["n_identities"] == 0 and image["gap"] == res["gap"]
    counts = bootstrap_counts(len(frame), n_res, np.random.default_rng(4))
    gaps = []
    for c in counts:
        idx = np.repeat(np.arange(len(frame)), c)
        b = aug.norm_bins(norm[idx], bins)
        gaps.append(any_aug[idx][b == 1].mean() - any_aug[idx][b == b.max()].mean())
    assert (image["lo"], image["hi"]) == pytest.approx(tuple(np.quantile(gaps, [0.025, 0.975])), abs=1e-12)


def test_norm_change_mean_log_ratio_interval_by_identity():
    aug_rows = _aug_probe(n_ids=40, seed=3)
    rng = np.random.default_rng(5)
    # the log ratio carries an identity effect: each identity's augmented images lose a different share of norm
    loss = rng.normal(-0.2, 0.15, 40)[aug_rows["class_label"] - 500]
    applied = aug_rows[["crop", "lowres", "photometric"]].to_numpy().any(axis=1)
    clean = aug_rows.assign(norm=aug_rows["norm"] * np.exp(-np.where(applied, loss, 0.0)))
    table = aug.norm_change(clean, aug_rows, n_resamples=500, seed=2).set_index("augmentation")
    assert {"mean_log_ratio", "mean_log_ratio_lo", "mean_log_ratio_hi", "bootstrap", "n_identities"} <= set(table.columns)
    anyrow = table.loc["any"]
    assert anyrow["mean_log_ratio"] == pytest.approx(loss[applied].mean())
    assert anyrow["bootstrap"] == "identity" and anyrow["n_identities"] == len(np.unique(aug_rows["class_label"][applied]))
    # brute force on the same identity draws: the weighted mean of the materialised resample
    log_ratio = np.log(aug_rows["norm"].to_numpy() / clean["norm"].to_numpy())
    counts = cluster_bootstrap_counts(aug_rows["class_label"].to_numpy(), 500, np.random.default_rng(2))
    means = [log_ratio[np.repeat(np.arange(len(aug_rows)), c)][applied[np.repeat(np.arange(len(aug_rows)), c)]].mean()
             for c in counts]
    assert (anyrow["mean_log_ratio_lo"], anyrow["mean_log_ratio_hi"]) == pytest.approx(
        tuple(np.quantile(means, [0.025, 0.975])), abs=1e-12)
    image = aug.norm_change(clean.drop(columns="class_label"), aug_rows.drop(columns="class_label"), n_resamples=500,
                            seed=2).set_index("augmentation")
    assert image.loc["any", "bootstrap"] == "image" and image.loc["any", "n_identities"] == 0
    # the identity effect makes the identity interval clearly wider than the image one
    width = {k: t.loc["any", "mean_log_ratio_hi"] - t.loc["any", "mean_log_ratio_lo"] for k, t in (("id", table), ("im", image))}
    assert width["id"] > 1.5 * width["im"], width
