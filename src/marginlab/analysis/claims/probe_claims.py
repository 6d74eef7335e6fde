"""Claims 1 (the feature norm as a quality proxy) and 4 (augmentation and the norm): decided from the
reference AdaFace runs' probe tables, each part by the seed-level interval rule (:mod:`..verdict_rules`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from marginlab.analysis.decision import p_decision
from marginlab.analysis.paper_numbers import (
    FIG2_NORM_IQ_CORRELATION,
)
from marginlab.analysis.power import ci_se
from marginlab.analysis.progress import curve_rows, early_rows
from marginlab.analysis.significance import (
    directional_p,
)
from marginlab.analysis.verdict_rules import (
    ALPHA,
    CORRELATION_EFFECT,
    NORM_CHANGE_EFFECT,
    SHARE_EFFECT,
    seed_interval_rule,
)
from marginlab.analysis.claims.claim_registry import ClaimEvidence, register_claim
from marginlab.analysis.claim_parts import COMBINE_RULE, make_claim, make_part, seed_part

_AUG_PAPER = "the paper's augmentation analysis: share of augmented samples among low- vs high-norm features"


def _whole(value: Any) -> Any:
    """A count read from a float column (step, images seen: NaN where unknown) as an int."""
    return int(value) if isinstance(value, (float, np.floating)) and float(value).is_integer() else value


def _early_place(early: pd.DataFrame) -> tuple[dict[str, Any], str]:
    """Where part b was measured: schedule, progress, step, images seen and epoch (one value when every run
    shares it, else the distinct values), and the same in words."""
    place = {}
    for key in ("schedule", "progress", "step", "images_seen", "epoch"):
        distinct = [_whole(v) for v in pd.unique(early[key])] if len(early) else []
        place[key] = (distinct[0] if len(distinct) == 1 else sorted(distinct, key=str)) if distinct else None
    if place["schedule"] == "epoch" and place["epoch"] == 1:
        return place, "end of epoch 1"
    if place["schedule"] == "progress" and not isinstance(place["step"], list) and place["step"] is not None:
        return place, f"step {int(place['step'])}, inside epoch 1 (no epoch-1 probe)"
    if place["schedule"] == "epoch" and not isinstance(place["epoch"], list) and place["epoch"] is not None:
        return place, f"epoch {int(place['epoch'])} (no epoch-1 probe)"
    return place, "per run"


def _curve(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Per probe point of the reference runs: the seed mean Spearman with its Student-t 95 % CI (one run: its
    own bootstrap interval)."""
    out = []
    if not len(rows):
        return out
    keys = rows.assign(_step=rows["step"].fillna(-1), _key=rows["schedule"].astype(str))
    for (_, schedule, epoch, _), g in keys.groupby(["progress", "_key", "epoch", "_step"], sort=True, dropna=False):
        first = g.iloc[0]
        point = {"schedule": schedule, "progress": first["progress"], "step": _whole(first["step"]),
                 "images_seen": _whole(first["images_seen"]), "epoch": _whole(epoch), "n_runs": len(g)}
        vals = g["spearman"].to_numpy(np.float64)
        vals = vals[np.isfinite(vals)]
        if len(vals) >= 2:
            res = seed_interval_rule(vals, CORRELATION_EFFECT)
            point.update(spearman_mean=float(res["mean"]), ci=[float(res["lo"]), float(res["hi"])],
                         p_value=float(res["p_value"]))
        elif len(vals) == 1:
            point.update(spearman_mean=float(vals[0]), ci=[float(g["spearman_lo"].iloc[0]), float(g["spearman_hi"].iloc[0])],
                         p_value=None)
        out.append(point)
    return out


def claim_norm_quality(
    correlation: pd.DataFrame,
    reference_runs: Sequence[str],
    pyi_nonlinearity: Mapping[str, Mapping[str, float]] | None = None,
    progress_correlation: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Claim 1: feature norm ~ IQ (final epoch and early), and a non-linear P_yi ~ IQ relation.

    ``correlation``: rows of ``correlation.csv``; ``reference_runs``: the reference AdaFace runs (one per seed);
    ``pyi_nonlinearity``: per run :func:`..correlation.nonlinearity_test` of final-epoch clean P_yi against the target;
    ``progress_correlation``: rows of ``correlation_progress.csv`` (part b's curve; the decision uses epoch 1,
    :func:`..progress.early_rows`). Parts a and b: the seed-level interval rule on the clean-probe Spearman
    (module docstring); part c: every run's cross-validated isotonic gain CI above 0 (cannot refute).
    """
    statement = ("The feature norm is a proxy for image quality: it correlates positively with the BRISQUE-based IQ "
                 "score, visibly early in training; P_yi relates to IQ non-linearly.")
    paper = f"Fig. 2; final-epoch correlation of norm and IQ about {FIG2_NORM_IQ_CORRELATION} (coefficient not stated)"
    rows = correlation[correlation["run"].isin(list(reference_runs)) & (correlation["pass"] == "clean")]
    target = "iq" if (rows["target"] == "iq").any() else ("gt_quality" if (rows["target"] == "gt_quality").any() else None)
    if target is None or not len(reference_runs):
        why = "no reference AdaFace run with probe tables" if not len(reference_runs) else "no quality target in the probe tables"
        parts = [make_part(p, "inconclusive", f"no data: {why}", {}) for p in ("a: final epoch", "b: early", "c: P_yi non-linear")]
        return make_claim(1, "Feature norm as a quality proxy", statement, paper, parts, COMBINE_RULE)
    rows = rows[rows["target"] == target]
    norm_rows = rows[rows["quantity"] == "norm"]
    final = norm_rows.loc[norm_rows.groupby("run")["epoch"].idxmax()]
    select = lambda f: f[(f["pass"] == "clean") & (f["target"] == target) & (f["quantity"] == "norm")]  # noqa: E731
    early = select(early_rows(correlation, progress_correlation, reference_runs))
    curve = select(curve_rows(correlation, progress_correlation, reference_runs))
    place, where = _early_place(early)
    target_name = "IQ = 1 - BRISQUE/100" if target == "iq" else "ground-truth quality (no IQ scores available)"

    def per_run(frame: pd.DataFrame, *at: str) -> dict[str, Any]:
        return {r.run: {**{k: _whole(getattr(r, k)) for k in ("epoch", *at)}, "spearman": r.spearman,
                        "spearman_ci": [r.spearman_lo, r.spearman_hi],
                        "pearson": r.pearson, "pearson_ci": [r.pearson_lo, r.pearson_hi], "n": r.n}
                for r in frame.itertuples(index=False)}

    def estimates(frame: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
        return {r.run: (r.spearman, r.spearman_lo, r.spearman_hi) for r in frame.itertuples(index=False)}

    what = f"the clean-probe Spearman(norm, {target}) per run"
    a = seed_part("a: final epoch", estimates(final), CORRELATION_EFFECT, what + " at its final epoch",
                   extra={"target": target, "per_run": per_run(final), "paper_correlation": FIG2_NORM_IQ_CORRELATION})
    b = seed_part(f"b: early ({where})", estimates(early), CORRELATION_EFFECT,
                   what + " at the end of epoch 1 (the first full pass over the training data, the paper's epoch 1; a "
                   "run without an epoch-1 probe uses its last progress probe inside epoch 1, else its earliest trained "
                   "epoch; step 0 never)",
                   extra={"target": target, "per_run": per_run(early, "schedule", "progress", "step", "images_seen"),
                          "curve": _curve(curve),
                          "curve_note": "every probe point of the reference runs (progress probes and epoch ends); the "
                                        "decision uses the end of epoch 1 only"})
    parts = [a, b]
    tests = {r: dict(g) for r, g in (pyi_nonlinearity or {}).items() if r in set(reference_runs)}
    c_rule = ("supported if, for every reference run at the final epoch, a monotone (isotonic) fit of P_yi on the target "
              "predicts held-out images better than a straight line: the bootstrap 95% CI of the 5-fold "
              "cross-validated gain 1 - MSE_monotone / MSE_linear lies above 0 (every run: intersection-union); "
              "otherwise inconclusive (a linear-looking relation at this sample size does not refute the figure)")
    pyi_final = rows[rows["quantity"] == "p_yi"]
    pyi_final = pyi_final.loc[pyi_final.groupby("run")["epoch"].idxmax()] if len(pyi_final) else pyi_final
    if tests:
        los = np.array([g["lo"] for g in tests.values()], dtype=float)
        c_verdict = "supported" if np.isfinite(los).all() and (los > 0).all() else "inconclusive"
        z = float(stats.norm.isf(ALPHA / 2))
        # the estimate lo + z·SE over its SE, as a two-sided-equivalent p in the claimed direction (capped at 1)
        p_sups = [directional_p(g["lo"] / float(ci_se(g["lo"], g["hi"])) + z, np.inf) for g in tests.values()]
        c_dec = p_decision(c_verdict, float(max(p_sups)) if np.isfinite(p_sups).all() else None, None,
                           "every run's gain interval (largest p_support); cannot be refuted")
        c = make_part("c: P_yi non-linear", c_verdict, c_rule,
                  {"target": target, "nonlinearity": tests, "runs": per_run(pyi_final)}, c_dec)
    else:
        c = make_part("c: P_yi non-linear", "inconclusive", "no data: no P_yi measurements for the reference runs; " + c_rule,
                  {"target": target})
    parts.append(c)
    numbers = {
        "target": target_name,
        "final_spearman_mean": float(final["spearman"].mean()),
        "final_pearson_mean": float(final["pearson"].mean()),
        **{f"early_{k}": v for k, v in place.items()},
        "early_spearman_mean": float(early["spearman"].mean()) if len(early) else None,
        "paper_correlation": FIG2_NORM_IQ_CORRELATION,
    }
    return make_claim(1, "Feature norm as a quality proxy", statement, paper, parts, COMBINE_RULE, numbers)


def claim_augmentation(gaps: Mapping[str, Mapping[str, float]], norm_changes: Mapping[str, pd.DataFrame] | None = None,
                       bins: int = 5) -> dict[str, Any]:
    """Claim 4: low-norm features are more often augmented.

    ``gaps``: per reference run :func:`..augmentation.low_high_gap` (last epoch); ``norm_changes``: per run
    :func:`..augmentation.norm_change`. Part a (the paper's analysis): the seed-level interval rule on the
    per-run gap share_any(lowest norm bin) - share_any(highest), SESOI 0.10. Part b (paired, within image):
    the seed-level rule on the per-run mean log(norm augmented / norm clean) over the images that were
    augmented (``norm_change``'s ``any`` row): supported if the CI's upper bound < 0 (augmented images have
    lower norms); not supported if its lower bound > -0.02 (the data exclude even a 2 % mean reduction,
    :data:`NORM_CHANGE_EFFECT`); inconclusive otherwise. With one seed: that run's own bootstrap interval of its
    mean log ratio (``mean_log_ratio_lo``/``_hi``; inconclusive when ``norm_change`` gives none).
    """
    statement = ("Augmented samples (crop, low resolution, photometric) are over-represented among low-norm features "
                 "and under-represented among high-norm ones; augmented images get lower norms than their clean versions.")
    title = "Augmentation and the norm"
    what_a = (f"share_any(lowest of {bins} norm bins) - share_any(highest bin) on the augmented probe pass at the last "
              "epoch, per run")
    if not gaps:
        a = make_part("a: low vs high norm", "inconclusive", "no data: no augmented probe rows for the reference runs", {})
    else:
        a = seed_part("a: low vs high norm", {r: (g["gap"], g["lo"], g["hi"]) for r, g in gaps.items()}, SHARE_EFFECT,
                       what_a, extra={"per_run": {r: dict(g) for r, g in gaps.items()}})
    changes = {}
    for r, f in (norm_changes or {}).items():
        row = f[f["augmentation"] == "any"] if "augmentation" in f else f.iloc[:0]
        if len(row) and int(row["n"].iloc[0]) > 0:
            lo = float(row["mean_log_ratio_lo"].iloc[0]) if "mean_log_ratio_lo" in row else np.nan
            hi = float(row["mean_log_ratio_hi"].iloc[0]) if "mean_log_ratio_hi" in row else np.nan
            changes[r] = (float(row["mean_log_ratio"].iloc[0]), lo, hi)
    what_b = "the mean log(norm augmented / norm clean) over each run's augmented probe images (same image, paired)"
    by_group = {r: {row.augmentation: {"n": row.n, "mean_log_ratio": row.mean_log_ratio, "median_ratio": row.median_ratio}
                    for row in f.itertuples(index=False)} for r, f in (norm_changes or {}).items()}
    if changes:
        b = seed_part("b: paired norm change", changes, NORM_CHANGE_EFFECT, what_b, direction=-1.0,
                       extra={"by_augmentation": by_group})
    else:
        why = "no paired norm changes for the reference runs"
        b = make_part("b: paired norm change", "inconclusive", f"no data: {why}; seed-level t rule on {what_b}",
                  {"by_augmentation": by_group})
    return make_claim(4, title, statement, _AUG_PAPER, [a, b], COMBINE_RULE)


@register_claim("1", order=10)
def claim_1(ev: ClaimEvidence) -> dict[str, Any]:
    """Claim 1 over the reference runs that have correlation rows."""
    with_rows = set(ev.correlation["run"])
    return claim_norm_quality(ev.correlation, [r for r in ev.reference_runs if r in with_rows], ev.pyi_nonlinearity,
                              ev.progress_correlation)


@register_claim("4", order=40)
def claim_4(ev: ClaimEvidence) -> dict[str, Any]:
    """Claim 4 from the reference runs' augmentation gaps and paired norm changes."""
    return claim_augmentation(ev.augmentation_gaps, ev.norm_changes, bins=ev.norm_bins)
