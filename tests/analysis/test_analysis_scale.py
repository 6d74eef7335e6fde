"""The scale study (marginlab.analysis.scale): the weighted fit, its sentences, scale.csv, the figure and the
report section, on hand-computed points and on fixture trees of fake runs (tests/fixtures_runs.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_runs import build_fixture_tree
from scipy import stats

from marginlab.analysis import scale as sc
from marginlab.analysis import scale_fit as sf
from marginlab.analysis import training_length as tl
from marginlab.analysis.cluster_bootstrap import cluster_bootstrap_counts, group_rng
from marginlab.analysis.paper_numbers import FIG2_NORM_IQ_CORRELATION as PAPER
from marginlab.analysis.paper_numbers import PAPER_IMAGES_SEEN
from marginlab.analysis.scale_figure import scale_figure
from marginlab.analysis.stage import run_analyze
from marginlab.core.config import load_params
from marginlab.report.render import run_report


# --------------------------------------------------------------------------- the fit
def test_exact_line_gives_exact_slope_and_hand_computed_interval():
    x = np.array([3.0, 4.0, 5.0])
    r = sc.wls_fit(np.column_stack([np.ones(3), x]), 0.1 + 0.05 * x, np.full(3, 0.02))
    assert r["coef"] == pytest.approx([0.1, 0.05], abs=1e-12)
    assert r["dof"] == 1 and r["scatter_factor"] == 1.0  # no residual: the intervals alone set the uncertainty
    # var(b) = se² / Σ(x - x̄)² = 0.0004 / 2; t(0.975, 1 dof) = 12.7062
    assert r["coef_se"][1] == pytest.approx(np.sqrt(0.0002))
    assert r["coef_hi"][1] - 0.05 == pytest.approx(12.7062047 * np.sqrt(0.0002))


def test_noisy_points_with_equal_weights_match_linregress():
    rng = np.random.default_rng(5)
    x = np.linspace(4, 7, 9)
    y = 0.05 + 0.04 * x + rng.normal(0, 0.03, x.size)
    r = sc.wls_fit(np.column_stack([np.ones(x.size), x]), y, np.full(x.size, 1e-3))  # scatter ≫ intervals
    ref = stats.linregress(x, y)
    assert r["coef"] == pytest.approx([ref.intercept, ref.slope])
    assert r["coef_se"] == pytest.approx([ref.intercept_stderr, ref.stderr])
    assert r["scatter_factor"] > 1


def test_weights_match_numpy_polyfit():
    rng = np.random.default_rng(6)
    x = np.linspace(4, 7, 7)
    se = rng.uniform(0.01, 0.1, x.size)
    y = 0.2 + 0.03 * x + rng.normal(0, se)
    r = sc.wls_fit(np.column_stack([np.ones(x.size), x]), y, se)
    slope, intercept = np.polyfit(x, y, 1, w=1 / se)  # polyfit weights the residuals: w = 1/σ
    assert r["coef"] == pytest.approx([intercept, slope])


@pytest.mark.parametrize("X, se, match", [
    (np.column_stack([np.ones(2), [1.0, 2.0]]), [0.1, 0.1], "more than 2 points"),
    (np.column_stack([np.ones(3), [1.0, 1.0, 1.0]]), [0.1] * 3, "independent columns"),
    (np.column_stack([np.ones(3), [1.0, 2.0, 3.0]]), [0.1, 0.0, 0.1], "finite and positive"),
])
def test_wls_refuses_what_it_cannot_fit(X, se, match):
    with pytest.raises(ValueError, match=match):
        sc.wls_fit(X, np.zeros(len(X)), np.asarray(se))


# --------------------------------------------------------------------------- fits and sentences
def _table(head_points: dict[str, list[tuple[int, int, float]]], half_width: float = 0.005) -> pd.DataFrame:
    """scale.csv rows: per head, (identities, images_seen, spearman) with a ± half_width interval."""
    rows = []
    for head, points in head_points.items():
        for k, (ids, seen, rho) in enumerate(points):
            rows.append({"run": f"{head}-{k}", "label": head, "head": head, "identities": ids, "train_images": 8 * ids,
                         "epochs": 1, "steps": seen // 32, "batch_size": 32, "images_seen": seen, "probe_epoch": 1,
                         "spearman_iq": rho, "spearman_iq_lo": rho - half_width, "spearman_iq_hi": rho + half_width,
                         "n_iq": 500, "spearman_gt_quality": np.nan, "spearman_gt_quality_lo": np.nan,
                         "spearman_gt_quality_hi": np.nan, "n_gt_quality": 0})
    return pd.DataFrame(rows, columns=sc.SCALE_COLUMNS)


def _line(a: float, b: float, seen=(1e4, 1e5, 1e6), ids: int = 100) -> list[tuple[int, int, float]]:
    return [(ids, int(s), a + b * np.log10(s)) for s in seen]


def _fit(table: pd.DataFrame, head: str = "adaface", scope: str = "all sizes") -> dict:
    return next(f for f in sc.fit_trends(table) if f["head"] == head and f["scope"] == scope
                and f["model"] == "log10(images_seen)" and f["target"] == "iq")


def test_rising_line_below_the_paper_states_rate_and_extrapolation():
    fit = _fit(_table({"adaface": _line(-0.1, 0.05)}))
    assert fit["slope"] == pytest.approx(0.05) and fit["established"] and fit["direction"] == "approaches"
    at = 10 ** ((PAPER + 0.1) / 0.05)
    assert fit["reaches_reference_at"] == pytest.approx(at) and fit["extrapolation_factor"] == pytest.approx(at / 1e6)
    s = fit["statement"]
    assert s.startswith("adaface (all sizes): final Spearman(norm, IQ) rises by 0.050 per 10× images seen (95% CI")
    assert f"approaching the paper's {PAPER}" in s and f"{at:.1e} images seen" in s
    assert f"an extrapolation {at / 1e6:.2g}× beyond the largest run" in s and "3 runs, 10 k to 1 M images seen" in s
    # the slope's CI, anchored at the fitted value at the largest run (1e6 images: 0.2), bounds the crossing
    near, far = fit["reaches_reference_range"]
    expected = sorted(10 ** (6 + (PAPER - 0.2) / b) for b in (fit["slope_lo"], fit["slope_hi"]))
    assert fit["slope_lo"] > 0 and (near, far) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    assert near < at < far and "with the slope's CI, anywhere from" in s


def test_line_crossing_the_paper_within_the_data_range():
    fit = _fit(_table({"adaface": _line(PAPER - 0.05 * 5, 0.05)}))  # reaches the paper value at 1e5
    assert fit["direction"] == "crosses" and fit["reaches_reference_at"] == pytest.approx(1e5)
    assert "crosses the paper's 0.5235 within the data range, at about 100 k images seen" in fit["statement"]
    assert "extrapolation" not in fit["statement"]


@pytest.mark.parametrize("a, b, direction, verb, side", [
    (0.4, -0.03, "moves away", "falls", "below"), (1.2, -0.05, "approaches", "falls", None),
    (0.4, 0.05, "moves away", "rises", "above"),
])
def test_lines_moving_away_from_or_approaching_the_paper_from_either_side(a, b, direction, verb, side):
    fit = _fit(_table({"adaface": _line(a, b)}))
    assert fit["established"] and fit["direction"] == direction and f"{verb} by" in fit["statement"]
    if side:
        assert f"moves away from the paper's {PAPER} as scale grows (the fitted line is {side} it)." in fit["statement"]
    assert (fit["reaches_reference_at"] is None) == (direction == "moves away")


def test_slope_interval_including_zero_is_no_trend():
    rho = [0.20, 0.26, 0.19, 0.25]
    fit = _fit(_table({"adaface": [(100, int(s), r) for s, r in zip((1e4, 3e4, 1e5, 3e5), rho)]}, half_width=0.05))
    assert fit["slope_lo"] < 0 < fit["slope_hi"] and not fit["established"]
    assert fit["reaches_reference_at"] is None and fit["direction"] is None
    assert "no trend is established: the slope, " in fit["statement"] and "could be 0. The slope's" in fit["statement"]
    assert "0.190 to 0.260 vs the paper's 0.5235" in fit["statement"]
    # the slope that would reach the paper's value at the paper's scale lies inside this wide interval
    assert fit["slope_lo"] <= fit["slope_needed"] <= fit["slope_hi"] and fit["slope_ci_includes_needed"]
    assert f"[{fit['slope_lo']:+.3f}, {fit['slope_hi']:+.3f}] includes the {fit['slope_needed']:+.3f} per 10× images " \
           "seen needed to reach 0.52 at the paper's scale (151 M images seen" in fit["statement"]


@pytest.mark.parametrize("seen, k", [((5e4,), 1), ((5e4, 5e4, 2e5), 2)])
def test_fewer_than_three_images_seen_values_is_no_trend(seen, k):
    fit = _fit(_table({"adaface": [(100, int(s), 0.2) for s in seen]}))
    assert fit["slope"] is None and not fit["established"]
    plural = "s" if k != 1 else ""
    assert fit["statement"] == (f"adaface (all sizes): final Spearman(norm, IQ) is 0.200 vs the paper's {PAPER}; no trend "
                                f"is established: {k} distinct images-seen value{plural} (a fit needs at least 3).")


def test_per_size_fits_and_data_size_as_a_second_factor():
    # ρ = 0.1 + 0.04·log10(seen) + 0.06·log10(ids): 3 training lengths at each of 2 sizes
    pts = [(ids, int(s), 0.1 + 0.04 * np.log10(s) + 0.06 * np.log10(ids)) for ids in (50, 400) for s in (1e4, 4e4, 1.6e5)]
    fits = sc.fit_trends(_table({"adaface": pts}))
    scopes = [f["scope"] for f in fits if f["model"] == "log10(images_seen)"]
    assert scopes == ["all sizes", "50 identities", "400 identities"]
    assert all(f["slope"] == pytest.approx(0.04) for f in fits if f["scope"].endswith("identities"))
    two = next(f for f in fits if f["model"] == "log10(images_seen) + log10(identities)")
    assert (two["slope"], two["size_slope"]) == (pytest.approx(0.04), pytest.approx(0.06))
    assert "+0.040" in two["statement"] and "+0.060" in two["statement"] and "per 10× identities" in two["statement"]


def test_headline_summary_and_json_safety():
    table = _table({"cosface": _line(0.2, 0.0), "adaface": _line(-0.3, 0.001, seen=(1e4, 1e5, 1e6))}, half_width=1e-5)
    fits = sc.fit_trends(table)
    assert sf.headline(fits, {}).startswith("adaface (all sizes)")
    assert sf.headline([], {"a": "why"}) == ("No scale trend can be stated: no run has both a train summary and "
                                             "clean-probe correlations (1 run skipped).")
    summary = sf.scale_summary(fits, {"x": "no train_summary.json (not trained yet)"}, 0.95)
    text = json.dumps(summary, allow_nan=False)  # the far-away crossing (10^824) is written as null
    assert summary["method"] == sc.FIT_METHOD and summary["reference"] == {"iq": PAPER}
    ada = next(f for f in summary["fits"] if f["head"] == "adaface" and f["model"] == "log10(images_seen)")
    assert ada["reaches_reference_at"] is None and "only beyond 1e+300 images seen" in ada["statement"]
    assert json.loads(text)["skipped"] == {"x": "no train_summary.json (not trained yet)"}


def test_slope_needed_to_reach_the_paper_at_the_paper_scale():
    assert PAPER_IMAGES_SEEN == pytest.approx(5.8e6 * 26) and PAPER_IMAGES_SEEN == pytest.approx(1.508e8)
    fit = _fit(_table({"adaface": _line(-0.1, 0.05)}))  # fitted value 0.2 at the largest run (1e6 images)
    decades = np.log10(5.8e6 * 26) - 6
    assert fit["fitted_at_largest_run"] == pytest.approx(0.2) and fit["decades_to_reference_scale"] == pytest.approx(decades)
    assert fit["slope_needed"] == pytest.approx((PAPER - 0.2) / decades)  # +0.149 per 10×
    assert fit["slope_hi"] < fit["slope_needed"] and fit["slope_ci_includes_needed"] is False
    assert (f"The slope's 95% CI [{fit['slope_lo']:+.3f}, {fit['slope_hi']:+.3f}] excludes the +0.149 per 10× images seen "
            f"needed to reach 0.52 at the paper's scale (151 M images seen, {decades:.1f} decades beyond the largest run, "
            "from the fitted 0.200 there).") in fit["statement"]
    # runs at or beyond the paper's scale: nothing is needed
    beyond = _fit(_table({"adaface": _line(0.1, 0.05, seen=(1e7, 1e8, 1e9))}))
    assert beyond["slope_needed"] is None and "needed to reach" not in beyond["statement"]
    # no paper value for ground-truth quality: nothing is stated
    table = _table({"adaface": _line(-0.1, 0.05)}).assign(spearman_gt_quality=lambda t: t["spearman_iq"],
                                                            spearman_gt_quality_lo=lambda t: t["spearman_iq_lo"],
                                                            spearman_gt_quality_hi=lambda t: t["spearman_iq_hi"])
    gt = next(f for f in sc.fit_trends(table) if f["target"] == "gt_quality" and f["scope"] == "all sizes")
    assert gt["slope_needed"] is None and gt["reference_images_seen"] is None
    summary = sf.scale_summary(sc.fit_trends(table), {}, 0.95)
    assert summary["reference_images_seen"] == PAPER_IMAGES_SEEN and "excludes the +0.149" in summary["headline"]


# --------------------------------------------------------------------------- training-length pairs
def _pair_probe(run: str, index: np.ndarray, strength: float, seed: int, epoch: int) -> pd.DataFrame:
    """Clean and augmented probe rows of one run at its last epoch (and noise at epoch 1): 6 images per
    identity (class_label = index // 6), IQ with an identity effect, norm = strength · IQ + noise."""
    rng = np.random.default_rng([seed, 7])
    ids = index // 6
    iq = np.random.default_rng(99).normal(0, 1, 2000)[ids] * 0.5 + np.random.default_rng(98).normal(0, 1, 2000)[index]
    frames = []
    for e, s in ((1, 0.0), (epoch, strength)):
        norm = 20 + s * iq + rng.normal(0, 1, len(index))
        for pass_ in ("clean", "augmented"):
            frames.append(pd.DataFrame({"run": run, "label": run[:-3], "head": run.split("-")[0], "epoch": e,
                                        "pass": pass_, "index": index, "class_label": ids, "norm": norm, "iq": iq,
                                        "gt_quality": np.nan, "p_yi": 0.5}))
    return pd.concat(frames, ignore_index=True)


def _pair_tree():
    """adaface at 3 sizes × (6, 24) epochs, seed 0, same probe images per size; a 4th size whose e24 probe holds
    other images; a seed-1 e24 run (no e6 partner). Longer training: a stronger norm–IQ relation."""
    probes, rows, runs = [], [], []
    specs = [(10, 6, 0, 0.4), (10, 24, 0, 0.9), (20, 6, 0, 0.5), (20, 24, 0, 0.8), (40, 6, 0, 0.6), (40, 24, 0, 0.7),
             (80, 6, 0, 0.6), (80, 24, 0, 0.7), (20, 24, 1, 0.8)]
    for ids, epochs, seed, strength in specs:
        run = f"adaface-n{ids}-e{epochs}-s{seed}"
        index = np.arange(120) + (1 if (ids, epochs) == (80, 24) else 0) + 200 * (ids // 10)
        probes.append(_pair_probe(run, index, strength, seed + ids + epochs, epochs))
        steps = epochs * ids // 4
        rows.append({"run": run, "label": run[:-3], "head": "adaface", "identities": ids, "train_images": 8 * ids,
                     "epochs": epochs, "steps": steps, "batch_size": 32, "images_seen": 32 * steps, "probe_epoch": epochs})
        runs.append({"run": run, "label": run[:-3], "head": "adaface", "seed": seed, "proxy": "norm",
                     "head_params": {"m": 0.4, "h": 0.333}})
    return (pd.concat(probes, ignore_index=True), pd.DataFrame(rows).reindex(columns=sc.SCALE_COLUMNS),
            pd.DataFrame(runs))


def test_training_length_pairs_paired_identity_bootstrap_and_t_over_pairs():
    probe, table, runs = _pair_tree()
    out = tl.training_length_pairs(probe, table, runs, n_resamples=400, seed=3)
    assert out["method"] == tl.PAIR_METHOD
    assert [(p["short_run"], p["long_run"]) for p in out["pairs"]] == [
        (f"adaface-n{n}-e6-s0", f"adaface-n{n}-e24-s0") for n in (10, 20, 40)]
    assert out["not_paired"] == {"adaface-n80-e6-s0 / adaface-n80-e24-s0": "probe images differ (119 shared of 120 and 120)"}
    for p in out["pairs"]:
        short = probe[(probe["run"] == p["short_run"]) & (probe["pass"] == "clean") & (probe["epoch"] == 6)]
        long = probe[(probe["run"] == p["long_run"]) & (probe["pass"] == "clean") & (probe["epoch"] == 24)]
        rho_s = stats.spearmanr(short["norm"], short["iq"]).statistic
        rho_l = stats.spearmanr(long["norm"], long["iq"]).statistic
        assert p["difference"] == pytest.approx(rho_l - rho_s) and p["target"] == "iq"
        assert (p["n_images"], p["n_identities"], p["bootstrap"], p["short_epochs"], p["long_epochs"]) == (
            120, short["class_label"].nunique(), "identity", 6, 24)
        # brute force: one draw of identities per resample, applied to both runs
        counts = cluster_bootstrap_counts(short["class_label"].to_numpy(), 400,
                                          group_rng(3, "training_length", p["short_run"], p["long_run"], "iq"))
        diffs = []
        for c in counts:
            idx = np.repeat(np.arange(len(short)), c)
            diffs.append(stats.spearmanr(long["norm"].to_numpy()[idx], long["iq"].to_numpy()[idx]).statistic
                         - stats.spearmanr(short["norm"].to_numpy()[idx], short["iq"].to_numpy()[idx]).statistic)
        assert (p["difference_lo"], p["difference_hi"]) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])), abs=1e-12)
        assert p["established"] == (p["difference_lo"] > 0 or p["difference_hi"] < 0)
    (summary,) = out["summary"]
    d = np.array([p["difference"] for p in out["pairs"]])
    ref = stats.ttest_1samp(d, 0.0)
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert (summary["mean"], summary["t"], summary["p"], summary["t_lo"], summary["t_hi"], summary["dof"]) == pytest.approx(
        (d.mean(), ref.statistic, ref.pvalue, lo, hi, 2))
    assert summary["n_pairs"] == 3 and summary["n_positive"] == int((d > 0).sum())
    assert summary["statement"].startswith(f"adaface: at a fixed data size and seed, training longer changes the final "
                                           f"Spearman(norm, IQ) by {d.mean():+.3f} on average over 3 pairs (95% t-CI "
                                           f"{lo:+.3f} to {hi:+.3f}, p = {ref.pvalue:.2g}")
    first = out["pairs"][0]
    assert (f"10 identities, 6→24 epochs {first['difference']:+.3f} [{first['difference_lo']:+.3f}, "
            f"{first['difference_hi']:+.3f}]") in summary["statement"] and "bootstrap CI over identities" in summary["statement"]
    # into scale_fit.json (JSON-safe) and the headline after the trend sentence
    fits = sc.fit_trends(table)
    written = json.loads(json.dumps(sf.scale_summary(fits, {}, 0.95, pairs=out), allow_nan=False))
    assert written["training_length_pairs"]["summary"][0]["mean"] == pytest.approx(d.mean())
    assert len(written["training_length_pairs"]["pairs"]) == 3
    assert written["headline"] == sf.headline(fits, {}) + " " + summary["statement"]


def test_training_length_pairs_need_matching_runs_and_identical_images():
    probe, table, runs = _pair_tree()
    # another head's parameters, or an unknown seed: not a candidate pair at all
    changed = runs.copy()
    changed.loc[changed["run"] == "adaface-n10-e24-s0", "head_params"] = [{"m": 0.5, "h": 0.333}]
    out = tl.training_length_pairs(probe, table, changed, n_resamples=200)
    assert [p["identities"] for p in out["pairs"]] == [20, 40]
    out = tl.training_length_pairs(probe, table, runs.drop(columns="seed"), n_resamples=200)
    assert out["pairs"] == [] and out["summary"] == [] and out["not_paired"] == {}
    assert sf.headline([], {}, out) == sf.headline([], {})
    # no identities: the paired image bootstrap, and it says so
    out = tl.training_length_pairs(probe.drop(columns="class_label"), table, runs, n_resamples=200)
    assert {p["bootstrap"] for p in out["pairs"]} == {"image"} and "bootstrap CI over images" in out["summary"][0]["statement"]
    # one pair: no t over pairs
    one = tl.training_length_pairs(probe, table[table["identities"].isin([10, 80])], runs, n_resamples=200)
    assert one["summary"][0]["n_pairs"] == 1 and one["summary"][0]["p"] is None
    assert "in the one pair" in one["summary"][0]["statement"]
    assert tl.training_length_pairs(probe.iloc[:0], table, runs)["pairs"] == []


# --------------------------------------------------------------------------- scale.csv from correlation rows
def test_scale_table_takes_the_last_clean_epoch_and_says_why_runs_are_skipped():
    rows = []
    for run, epochs in (("a-s0", 3), ("b-s0", 2), ("c-s0", 2)):
        for epoch in range(epochs + 1):
            for pass_ in ("clean", "augmented"):
                for quantity in ("norm", "p_yi"):
                    for target in ("iq", "gt_quality"):
                        v = epoch / 10 + (0.5 if pass_ == "augmented" else 0) + (0.3 if quantity == "p_yi" else 0) \
                            + (0.01 if target == "gt_quality" else 0)
                        rows.append({"run": run, "label": run[:1], "head": "adaface", "epoch": epoch, "pass": pass_,
                                     "quantity": quantity, "target": target, "spearman": v, "spearman_lo": v - 0.1,
                                     "spearman_hi": v + 0.1, "n": 100})
    corr = pd.DataFrame(rows + [{**rows[0], "pass": "eval:bin:lq", "epoch": 9}])
    runs = pd.DataFrame({"run": ["a-s0", "b-s0", "c-s0", "d-s0", "e-s0"], "label": list("abcde"), "head": "adaface"})
    size = {"num_classes": 50, "train_images": 400, "epochs": 3, "global_steps": 36, "batch_size": 32}
    summaries = {"a-s0": size, "b-s0": {k: v for k, v in size.items() if k != "global_steps"}, "e-s0": size}
    table, skipped = sc.scale_table(corr[corr["run"] != "c-s0"], runs, {**summaries, "c-s0": size})
    assert list(table.columns) == sc.SCALE_COLUMNS and table["run"].tolist() == ["a-s0"]
    row = table.iloc[0]
    assert (row["probe_epoch"], row["images_seen"], row["identities"], row["steps"]) == (3, 36 * 32, 50, 36)
    assert (row["spearman_iq"], row["spearman_iq_lo"], row["spearman_gt_quality"]) == pytest.approx((0.3, 0.2, 0.31))
    assert skipped == {"b-s0": "train_summary.json lacks global_steps",
                       "c-s0": "no clean-probe correlation in correlation.csv (no probe tables, or fewer than 3 finite pairs)",
                       "d-s0": "no train_summary.json (not trained yet)",
                       "e-s0": "no clean-probe correlation in correlation.csv (no probe tables, or fewer than 3 finite pairs)"}


def test_figure_draws_any_number_of_runs_and_says_no_data(tmp_path):
    table = _table({"adaface": _line(-0.1, 0.05), "cosface": [(50, 20000, 0.2)]})
    for path, rows in ((tmp_path / "many.png", table), (tmp_path / "one.png", table.iloc[:1]),
                       (tmp_path / "none.png", table.iloc[:0])):
        scale_figure(rows, sc.fit_trends(rows), path, skipped={"x": "why"})
        assert path.stat().st_size > 5_000


# --------------------------------------------------------------------------- stage and report on fixture trees
SIZES, LENGTHS = (10, 20, 40), (2, 4)


def _analyze_and_report(root: Path, params_path: Path) -> tuple[dict, str]:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run_analyze(load_params(params_path), "analysis", n_resamples=1000, progress=False)
    finally:
        os.chdir(cwd)
    fit = json.loads((root / "analysis" / "scale_fit.json").read_text())
    return fit, run_report(root).read_text()


def test_scale_study_tree_end_to_end(tmp_path):
    """AdaFace and CosFace × 3 sizes × 2 lengths; AdaFace's planted norm–quality strength grows with images seen."""
    runs = {f"{head}-n{ids}-e{ep}": {"head": head, "seed": 0, "tags": ["main"] if (ids, ep) == (20, 2) else [],
                                     "train": {"identities": ids, "epochs": ep}}
            for head in ("adaface", "cosface") for ids in SIZES for ep in LENGTHS}  # as configs/scale-study.yaml tags them
    strength = {name: (0.3 * np.log2(spec["train"]["identities"] * spec["train"]["epochs"] / 10) if spec["head"] == "adaface"
                       else 0.5) for name, spec in runs.items()}
    params_path = build_fixture_tree(tmp_path, runs=runs, epochs=2, probe_size=120, run_strength=strength)
    fit, html = _analyze_and_report(tmp_path, params_path)
    table = pd.read_csv(tmp_path / "analysis" / "scale.csv")
    corr = pd.read_csv(tmp_path / "analysis" / "correlation.csv")
    assert sorted(table["run"]) == sorted(runs) and not fit["skipped"]
    for r in table.itertuples():
        ids, ep = runs[r.run]["train"]["identities"], runs[r.run]["train"]["epochs"]
        assert (r.identities, r.epochs, r.train_images, r.steps) == (ids, ep, 8 * ids, ep * (8 * ids // 32))
        assert r.images_seen == r.steps * 32 and r.probe_epoch == ep
        hit = corr[(corr["run"] == r.run) & (corr["epoch"] == ep) & (corr["pass"] == "clean") & (corr["quantity"] == "norm")
                   & (corr["target"] == "iq")].iloc[0]
        assert (r.spearman_iq, r.spearman_iq_lo, r.spearman_iq_hi) == pytest.approx((hit.spearman, hit.spearman_lo, hit.spearman_hi))
    ada = next(f for f in fit["fits"] if f["head"] == "adaface" and f["target"] == "iq" and f["scope"] == "all sizes"
               and f["model"] == "log10(images_seen)")
    assert ada["established"] and ada["slope"] > 0 and fit["headline"].startswith(ada["statement"])
    # the fixture draws each run's probe images from its name: the e2/e4 runs of a size hold different images,
    # so no training-length pair is formed, and the headline says why
    pairs = fit["training_length_pairs"]
    assert pairs["pairs"] == [] and len(pairs["not_paired"]) == 6
    assert all(why.startswith("probe images differ") for why in pairs["not_paired"].values())
    assert fit["headline"].endswith("could not be paired (" + next(iter(pairs["not_paired"].values())) + ").")
    assert any(f["model"] == "log10(images_seen) + log10(identities)" for f in fit["fits"])
    assert (tmp_path / "analysis" / "figures" / sc.SCALE_FIGURE).stat().st_size > 20_000
    assert 'id="scale-runs"' in html and html.count("<tr data-run=\"adaface-n10-e2\">") >= 1
    assert ada["statement"].replace("'", "&#39;") in html and 'alt="scale_vs_images_seen.png"' in html


def test_one_run_tree_gives_a_row_and_no_trend(tmp_path):
    params_path = build_fixture_tree(tmp_path, runs={"adaface-s0": {"head": "adaface", "seed": 0, "tags": ["main"]},
                                                     "cosface-s0": {"head": "cosface", "seed": 0, "tags": ["main"]}},
                                     epochs=2, probe_size=60, skip=("cosface-s0",))
    fit, html = _analyze_and_report(tmp_path, params_path)
    table = pd.read_csv(tmp_path / "analysis" / "scale.csv")
    assert table["run"].tolist() == ["adaface-s0"] and table["images_seen"].tolist() == [2 * 6 * 32]
    assert fit["skipped"] == {"cosface-s0": "no train_summary.json (not trained yet)"}
    assert "no trend is established: 1 distinct images-seen value (a fit needs at least 3)" in fit["headline"]
    assert fit["headline"].replace("'", "&#39;") in html and "skipped: cosface-s0: no train_summary.json" in html
    assert (tmp_path / "analysis" / "figures" / sc.SCALE_FIGURE).is_file()


def test_scale_study_tree_with_shared_probe_images_states_the_training_length_pairs(tmp_path):
    """As configs/scale-study.yaml: runs of one size and seed differing only in epochs share their probe images. The
    fixture draws each run's probe from its name, so the longer run's probe tables are rewritten on the shorter
    run's images (same index, identities, IQ and ground truth) with a stronger norm–quality relation."""
    runs = {f"adaface-n{ids}-e{ep}": {"head": "adaface", "seed": 0, "tags": ["main"] if (ids, ep) == (20, 2) else [],
                                      "train": {"identities": ids, "epochs": ep}} for ids in SIZES for ep in LENGTHS}
    params_path = build_fixture_tree(tmp_path, runs=runs, epochs=2, probe_size=120)
    rng = np.random.default_rng(0)
    for ids in SIZES:
        short_dir, long_dir = (tmp_path / "runs" / f"adaface-n{ids}-e{ep}" / "probe" for ep in LENGTHS)
        final = pd.read_parquet(short_dir / f"epoch_{LENGTHS[0]:02d}.parquet")
        for path in sorted(long_dir.glob("epoch_*.parquet")):
            frame = pd.read_parquet(path)
            epoch = int(frame["epoch"].iloc[0])
            new = final.assign(epoch=np.int32(epoch))
            base = 12.0 + 24.0 * epoch / LENGTHS[1] * new["gt_quality"].to_numpy() + rng.normal(0, 0.5, len(new))
            new["norm"] = (base * np.where(new[["crop", "lowres", "photometric"]].any(axis=1), 0.75, 1.0)).astype(np.float32)
            new.to_parquet(path, index=False)
    fit, html = _analyze_and_report(tmp_path, params_path)
    pairs = fit["training_length_pairs"]
    assert not pairs["not_paired"]
    assert sorted((p["target"], p["identities"]) for p in pairs["pairs"]) == sorted(
        (t, ids) for t in ("iq", "gt_quality") for ids in SIZES)
    corr = pd.read_csv(tmp_path / "analysis" / "correlation.csv")
    assert set(corr[corr["pass"] == "clean"]["bootstrap"]) == {"identity"}  # the probes record 25 identities
    for p in pairs["pairs"]:
        assert p["bootstrap"] == "identity" and p["n_images"] == 120 and (p["short_epochs"], p["long_epochs"]) == LENGTHS
        hit = {run: corr[(corr["run"] == run) & (corr["pass"] == "clean") & (corr["quantity"] == "norm")
                         & (corr["target"] == p["target"]) & (corr["epoch"] == corr[corr["run"] == run]["epoch"].max())]
               ["spearman"].iloc[0] for run in (p["short_run"], p["long_run"])}
        assert p["difference"] == pytest.approx(hit[p["long_run"]] - hit[p["short_run"]], abs=1e-5)
        assert p["difference_lo"] > 0  # a far tighter relation on the same images: clearly positive per pair
    summary = next(s for s in pairs["summary"] if s["target"] == "iq")
    assert summary["n_pairs"] == 3 and summary["t_lo"] > 0 and summary["p"] < 0.05
    assert fit["headline"].endswith(summary["statement"])
    assert summary["statement"].replace("'", "&#39;") in html
    assert "training-length pairs: runs of one head, seed and data size" in html
    table = html[html.index('id="scale-pairs"'):]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 1 + len(pairs["pairs"])  # the header and one row per pair and target
