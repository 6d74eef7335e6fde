"""The scale study: how the final norm–quality correlation grows with training data and training length.

:func:`scale_table` — ``scale.csv``, one row per run that has a ``train_summary.json`` and clean-probe
correlations::

    run, label, head, identities, train_images, epochs, steps, batch_size, images_seen, probe_epoch,
    spearman_iq, spearman_iq_lo, spearman_iq_hi, n_iq,
    spearman_gt_quality, spearman_gt_quality_lo, spearman_gt_quality_hi, n_gt_quality

``identities`` is the head's number of classes (``num_classes``: ``train.identities`` or every identity),
``images_seen`` = global steps × global batch size. The Spearman columns are Spearman(norm, target) with
its bootstrap interval (identity-cluster bootstrap when the probe carries identities), copied from the
``correlation.csv`` row of the run's last probe epoch, clean pass (:mod:`.correlation`, computed once by the
analysis stage; nothing is recomputed here). NaN where the
target is absent (no ground truth on real data). Runs lacking either input are skipped with the reason.

:func:`fit_trends` — Spearman = a + b·log10(images_seen) per (head, target), so b is the change per 10×
images seen. **Method**: weighted least squares with weights 1/SE², SE = (hi − lo) / (2·z) from each
run's bootstrap interval (z the normal quantile of the confidence); the coefficients' covariance is
(XᵀWX)⁻¹ multiplied by max(1, χ²_w / (n − p)), so scatter between runs beyond what the intervals explain
(seed effects, for instance) widens the interval rather than being ignored; the interval of b uses
Student's t with n − p degrees of freedom. A fit needs at least 3 distinct images-seen values; a trend is
"established" only when b's interval excludes 0. Also fitted: the same line per data size (when that size
has 3 distinct images-seen values) and, when identifiable, data size as a second factor
(a + b·log10(images_seen) + c·log10(identities): b per 10× images at a fixed size, c per 10× identities at
fixed images seen). :func:`trend_statement` says in one sentence whether the runs approach the paper's
final-epoch correlation (:data:`.paper_numbers.FIG2_NORM_IQ_CORRELATION`) as scale grows, at what rate,
and — only for an established trend — where the fitted line would reach it, flagged as an extrapolation
(×N of the largest run) when it lies beyond the data. Every line with a paper value also records the
slope per 10× images seen that would carry the fitted line's value at the largest run to the paper's value at
the paper's scale (:data:`.paper_numbers.PAPER_IMAGES_SEEN` ≈ 1.5 × 10⁸ images seen): ``slope_needed``, and
``slope_ci_includes_needed`` — whether the fitted slope's interval includes it (if it does, the study cannot
rule out that scale alone closes the gap); the statement says so.
The training-length contrast at a fixed data size: :mod:`.training_length`; ``scale_fit.json``: :mod:`.scale_fit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from marginlab.analysis.paper_numbers import FIG2_NORM_IQ_CORRELATION, PAPER_IMAGES_SEEN
from marginlab.analysis.power import ci_se

__all__ = [
    "FIT_METHOD",
    "REFERENCE",
    "SCALE_COLUMNS",
    "SCALE_FIGURE",
    "TARGETS",
    "fit_trends",
    "format_images",
    "scale_table",
    "trend_statement",
    "wls_fit",
]

#: Targets of Spearman(norm, target) in the study, with their names in sentences.
TARGETS = {"iq": "Spearman(norm, IQ)", "gt_quality": "Spearman(norm, ground-truth quality)"}
#: Paper value each target is compared with (None: the paper has none).
REFERENCE = {"iq": FIG2_NORM_IQ_CORRELATION, "gt_quality": None}
#: The study's figure in the analysis stage's figures/ (:mod:`.scale_figure`).
SCALE_FIGURE = "scale_vs_images_seen.png"
#: Fewest distinct images-seen values a line is fitted to.
MIN_DISTINCT = 3
SIZE_COLUMNS = ["run", "label", "head", "identities", "train_images", "epochs", "steps", "batch_size", "images_seen",
                "probe_epoch"]
SCALE_COLUMNS = SIZE_COLUMNS + [col for t in TARGETS
                                for col in (f"spearman_{t}", f"spearman_{t}_lo", f"spearman_{t}_hi", f"n_{t}")]
FIT_METHOD = ("weighted least squares of Spearman on log10(images seen), weights 1/SE² with SE = (CI high − CI low) "
              "/ (2z) from each run's bootstrap interval; covariance (XᵀWX)⁻¹ × max(1, χ²/(n − p)); slope interval "
              "from Student's t with n − p degrees of freedom")



# --------------------------------------------------------------------------- table
def _final_clean_norm(correlation: pd.DataFrame) -> pd.DataFrame:
    """The norm rows of each run's last probe epoch, clean pass, of ``correlation.csv``."""
    rows = correlation[(correlation["pass"] == "clean") & (correlation["quantity"] == "norm")]
    return rows[rows["epoch"] == rows.groupby("run")["epoch"].transform("max")]


def _run_size(summary: Mapping[str, Any] | None) -> dict[str, Any] | str:
    """Data size and training length of one run from its ``train_summary.json``, or why they are unknown."""
    if summary is None:
        return "no train_summary.json (not trained yet)"
    need = ("num_classes", "train_images", "epochs", "global_steps", "batch_size")
    absent = [k for k in need if summary.get(k) is None]
    if absent:
        return f"train_summary.json lacks {', '.join(absent)}"
    steps, batch = int(summary["global_steps"]), int(summary["batch_size"])
    return {"identities": int(summary["num_classes"]), "train_images": int(summary["train_images"]),
            "epochs": int(summary["epochs"]), "steps": steps, "batch_size": batch, "images_seen": steps * batch}


def scale_table(correlation: pd.DataFrame, runs: pd.DataFrame,
                summaries: Mapping[str, Mapping[str, Any]]) -> tuple[pd.DataFrame, dict[str, str]]:
    """``(scale.csv rows, {skipped run: reason})`` from the correlation table, run table and train summaries."""
    final = _final_clean_norm(correlation) if len(correlation) else correlation
    rows, skipped = [], {}
    for info in runs.to_dict("records"):
        run = info["run"]
        size = _run_size(summaries.get(run))
        mine = final[final["run"] == run] if len(final) else final
        if isinstance(size, str):
            skipped[run] = size
            continue
        if mine.empty:
            skipped[run] = "no clean-probe correlation in correlation.csv (no probe tables, or fewer than 3 finite pairs)"
            continue
        row = {"run": run, "label": info["label"], "head": info["head"], **size, "probe_epoch": int(mine["epoch"].iloc[0])}
        for target in TARGETS:
            hit = mine[mine["target"] == target]
            r = hit.iloc[0] if len(hit) else {}
            row.update({f"spearman_{target}": r.get("spearman", np.nan), f"spearman_{target}_lo": r.get("spearman_lo", np.nan),
                        f"spearman_{target}_hi": r.get("spearman_hi", np.nan), f"n_{target}": r.get("n", 0)})
        rows.append(row)
    table = pd.DataFrame(rows, columns=SCALE_COLUMNS)
    return table.sort_values(["head", "identities", "images_seen", "run"], ignore_index=True), skipped


# --------------------------------------------------------------------------- fit
def wls_fit(X: np.ndarray, y: np.ndarray, se: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """Weighted least squares of ``y`` on the columns of ``X`` with weights 1/se² (module docstring).

    Returns ``coef``, ``coef_se``, ``coef_lo``, ``coef_hi`` (arrays, one per column), ``dof`` (n − p) and
    ``scatter_factor`` = max(1, χ²_w / dof), the factor applied to (XᵀWX)⁻¹. Needs n > p and full rank.
    """
    X, y, se = (np.asarray(a, dtype=np.float64) for a in (X, y, se))
    n, p = X.shape
    if n <= p or np.linalg.matrix_rank(X) < p:
        raise ValueError(f"a fit of {p} coefficients needs more than {p} points and independent columns (got {n} points)")
    if not (np.all(np.isfinite(se)) and np.all(se > 0)):
        raise ValueError("standard errors must be finite and positive")
    w = 1.0 / se**2
    inv = np.linalg.inv(X.T @ (w[:, None] * X))
    coef = inv @ (X.T @ (w * y))
    dof = n - p
    chi2 = float(np.sum(w * (y - X @ coef) ** 2))
    scatter = max(1.0, chi2 / dof)
    coef_se = np.sqrt(np.diag(inv) * scatter)
    t = float(stats.t.ppf(0.5 + confidence / 2.0, dof))
    return {"coef": coef, "coef_se": coef_se, "coef_lo": coef - t * coef_se, "coef_hi": coef + t * coef_se,
            "dof": dof, "scatter_factor": scatter}


def _points(table: pd.DataFrame, target: str, confidence: float) -> pd.DataFrame:
    """Runs with a finite Spearman and interval for ``target``, with ``x`` = log10(images seen) and ``se``."""
    col = f"spearman_{target}"
    ok = table[np.isfinite(table[[col, f"{col}_lo", f"{col}_hi"]].astype(float)).all(axis=1) & (table["images_seen"] > 0)]
    se = np.maximum(ci_se(ok[f"{col}_lo"].astype(float), ok[f"{col}_hi"].astype(float), confidence), 1e-4)
    return ok.assign(x=np.log10(ok["images_seen"].astype(float)), y=ok[col].astype(float), se=se)


def _line(points: pd.DataFrame, head: str, target: str, scope: str, confidence: float) -> dict[str, Any]:
    """The fitted line a + b·log10(images_seen) of ``points`` (or why there is none) and its statement."""
    fit: dict[str, Any] = {
        "head": head, "target": target, "scope": scope, "model": "log10(images_seen)", "n_points": len(points),
        "n_images_seen": int(points["images_seen"].nunique()),
        "images_seen_min": float(points["images_seen"].min()) if len(points) else None,
        "images_seen_max": float(points["images_seen"].max()) if len(points) else None,
        "spearman_min": float(points["y"].min()) if len(points) else None,
        "spearman_max": float(points["y"].max()) if len(points) else None,
        "intercept": None, "slope": None, "slope_se": None, "slope_lo": None, "slope_hi": None, "dof": None,
        "scatter_factor": None, "established": False, "direction": None, "reaches_reference_at": None,
        "extrapolation_factor": None, "reaches_reference_range": None,
        "reference": REFERENCE[target],
        "reference_images_seen": PAPER_IMAGES_SEEN if REFERENCE[target] is not None else None,
        "fitted_at_largest_run": None, "decades_to_reference_scale": None, "slope_needed": None,
        "slope_ci_includes_needed": None,
    }
    if fit["n_images_seen"] >= MIN_DISTINCT:
        r = wls_fit(np.column_stack([np.ones(len(points)), points["x"]]), points["y"], points["se"], confidence)
        fit.update(intercept=float(r["coef"][0]), slope=float(r["coef"][1]), slope_se=float(r["coef_se"][1]),
                   slope_lo=float(r["coef_lo"][1]), slope_hi=float(r["coef_hi"][1]), dof=r["dof"],
                   scatter_factor=r["scatter_factor"])
        fit["established"] = bool(fit["slope_lo"] > 0 or fit["slope_hi"] < 0)
        if fit["reference"] is not None:
            fit.update(_needed_slope(fit))
        if fit["established"] and fit["reference"] is not None:
            fit.update(_reference_crossing(fit))
    fit["statement"] = trend_statement(fit, confidence)
    return fit


def _needed_slope(fit: Mapping[str, Any]) -> dict[str, Any]:
    """The slope per 10× images seen that takes the fitted line's value at the largest run to the paper's value at
    the paper's images seen, and whether the slope's interval includes it (none when the runs reach that scale)."""
    x_max = float(np.log10(fit["images_seen_max"]))
    at_max = fit["intercept"] + fit["slope"] * x_max
    decades = float(np.log10(PAPER_IMAGES_SEEN)) - x_max
    if decades <= 0:
        return {"fitted_at_largest_run": at_max}
    needed = (fit["reference"] - at_max) / decades
    return {"fitted_at_largest_run": at_max, "decades_to_reference_scale": decades, "slope_needed": needed,
            "slope_ci_includes_needed": bool(fit["slope_lo"] <= needed <= fit["slope_hi"])}


def _needed_clause(fit: Mapping[str, Any], confidence: float) -> str:
    """' Its 95% CI [a, b] includes the +0.121 per 10× images seen needed to reach 0.52 at the paper's scale (...).'"""
    if fit.get("slope_needed") is None:
        return ""
    verb = "includes" if fit["slope_ci_includes_needed"] else "excludes"
    return (f" The slope's {confidence:.0%} CI [{fit['slope_lo']:+.3f}, {fit['slope_hi']:+.3f}] {verb} the "
            f"{fit['slope_needed']:+.3f} per 10× images seen needed to reach {fit['reference']:.2f} at the paper's scale "
            f"({format_images(fit['reference_images_seen'])} images seen, {fit['decades_to_reference_scale']:.1f} decades "
            f"beyond the largest run, from the fitted {fit['fitted_at_largest_run']:.3f} there).")


def _reference_crossing(fit: Mapping[str, Any]) -> dict[str, Any]:
    """How an established line relates to the paper's value: ``direction`` (``crosses`` it within the data
    range, ``approaches`` it beyond the largest run, or ``moves away``), and where it meets it (not for
    ``moves away``) with ``extrapolation_factor`` = that point / the largest run's images seen."""
    ref, a, b = fit["reference"], fit["intercept"], fit["slope"]
    gap_lo = ref - (a + b * np.log10(fit["images_seen_min"]))
    gap_hi = ref - (a + b * np.log10(fit["images_seen_max"]))
    if np.sign(gap_lo) != np.sign(gap_hi):
        direction = "crosses"
    elif np.sign(gap_hi) == np.sign(b):
        direction = "approaches"
    else:
        return {"direction": "moves away"}
    log_x = (ref - a) / b
    at = float(10.0**log_x) if log_x < 300 else float("inf")
    return {"direction": direction, "reaches_reference_at": at, "extrapolation_factor": at / fit["images_seen_max"],
            "reaches_reference_range": _crossing_range(fit)}


def _crossing_range(fit: Mapping[str, Any]) -> list[float]:
    """Where lines with the slope's CI bounds, anchored at the fitted value at the largest run, meet the paper's
    value: [nearer, farther] images seen (inf where a bound does not approach it). An approximation that
    ignores the intercept's own uncertainty; it shows how loosely the data pin the crossing down."""
    ref, x_max = fit["reference"], np.log10(fit["images_seen_max"])
    y_max = fit["intercept"] + fit["slope"] * x_max
    out = []
    for b in (fit["slope_lo"], fit["slope_hi"]):
        log_x = x_max + (ref - y_max) / b if b != 0 and np.sign(ref - y_max) == np.sign(b) else np.inf
        out.append(float(10.0**log_x) if log_x < 300 else float("inf"))
    return sorted(out)


def _size_factor(points: pd.DataFrame, head: str, target: str, confidence: float) -> dict[str, Any] | None:
    """a + b·log10(images_seen) + c·log10(identities), when the two factors are identifiable; else None."""
    X = np.column_stack([np.ones(len(points)), points["x"], np.log10(points["identities"].astype(float))])
    if len(points) <= 3 or np.linalg.matrix_rank(X) < 3:
        return None
    r = wls_fit(X, points["y"], points["se"], confidence)
    fit = {"head": head, "target": target, "scope": "all sizes", "model": "log10(images_seen) + log10(identities)",
           "n_points": len(points), "dof": r["dof"], "scatter_factor": r["scatter_factor"],
           **{f"{name}{suffix}": float(r[key][i]) for i, name in ((0, "intercept"), (1, "slope"), (2, "size_slope"))
              for suffix, key in (("", "coef"), ("_se", "coef_se"), ("_lo", "coef_lo"), ("_hi", "coef_hi"))}}
    fit["statement"] = _size_factor_statement(fit, confidence)
    return fit


def _size_factor_statement(fit: Mapping[str, Any], confidence: float) -> str:
    """One sentence on the two-factor fit: the images-seen slope at a fixed size and the size slope."""
    def part(name: str) -> str:
        lo, hi = fit[f"{name}_lo"], fit[f"{name}_hi"]
        sure = "" if lo > 0 or hi < 0 else ", could be 0"
        return f"{fit[name]:+.3f} ({confidence:.0%} CI {lo:+.3f} to {hi:+.3f}{sure})"

    return (f"{fit['head']}: final {TARGETS[fit['target']]} changes by {part('slope')} per 10× images seen at a fixed "
            f"number of identities, and by {part('size_slope')} per 10× identities at a fixed number of images seen "
            f"({fit['n_points']} runs).")


def fit_trends(table: pd.DataFrame, confidence: float = 0.95) -> list[dict[str, Any]]:
    """Every fit of the study (module docstring): per (head, target) over all sizes, per data size when it has
    enough points, and with data size as a second factor when identifiable. Heads without points are left out."""
    fits = []
    for head in sorted(table["head"].unique()):
        for target in TARGETS:
            points = _points(table[table["head"] == head], target, confidence)
            if points.empty:
                continue
            fits.append(_line(points, head, target, "all sizes", confidence))
            sizes = sorted(points["identities"].unique())
            for size in sizes if len(sizes) > 1 else []:
                one = points[points["identities"] == size]
                if one["images_seen"].nunique() >= MIN_DISTINCT:
                    fits.append(_line(one, head, target, f"{size} identities", confidence))
            two = _size_factor(points, head, target, confidence)
            if two is not None:
                fits.append(two)
    return fits


# --------------------------------------------------------------------------- statement
def format_images(x: float) -> str:
    """An images-seen count for sentences: ``35 k``, ``1.2 M``, ``3.4e+09``."""
    if x >= 1e9:
        return f"{x:.1e}"
    if x >= 1e6:
        return f"{x / 1e6:.3g} M"
    return f"{x / 1e3:.3g} k" if x >= 1e3 else f"{x:.0f}"


def _range(fit: Mapping[str, Any]) -> str:
    lo, hi = fit["spearman_min"], fit["spearman_max"]
    return f"{lo:.3f}" if abs(hi - lo) < 5e-4 else f"{lo:.3f} to {hi:.3f}"


def _crossing(fit: Mapping[str, Any]) -> str:
    """Where an established line meets the paper's value, relative to the data range (:func:`_reference_crossing`)."""
    ref, at = fit["reference"], fit["reaches_reference_at"]
    if fit["direction"] == "moves away":
        above = fit["intercept"] + fit["slope"] * np.log10(fit["images_seen_max"]) > ref
        return f"it moves away from the paper's {ref} as scale grows (the fitted line is {'above' if above else 'below'} it)"
    if fit["direction"] == "crosses":
        return f"the fitted line crosses the paper's {ref} within the data range, at about {format_images(at)} images seen"
    if not np.isfinite(at):
        return f"approaching the paper's {ref} so slowly that the fitted line would reach it only beyond 1e+300 images seen"
    near, far = fit["reaches_reference_range"]
    spread = (f"with the slope's CI, anywhere from {format_images(near)} to "
              f"{format_images(far) if np.isfinite(far) else 'never'}")
    return (f"approaching the paper's {ref}: the fitted line would reach it at about {format_images(at)} images seen "
            f"({spread}), an extrapolation {fit['extrapolation_factor']:.2g}× beyond the largest run, not a prediction")


def trend_statement(fit: Mapping[str, Any], confidence: float = 0.95) -> str:
    """One sentence on a :func:`_line` fit: the rate per 10× images seen and whether it approaches the paper."""
    what = f"{fit['head']} ({fit['scope']}): final {TARGETS[fit['target']]}"
    ref = fit["reference"]
    versus = f" vs the paper's {ref}" if ref is not None else ""
    if fit["slope"] is None:
        k = fit["n_images_seen"]
        return (f"{what} is {_range(fit)}{versus}; no trend is established: {k} distinct images-seen "
                f"value{'s' if k != 1 else ''} (a fit needs at least {MIN_DISTINCT}).")
    support = (f"({confidence:.0%} CI {fit['slope_lo']:+.3f} to {fit['slope_hi']:+.3f}; {fit['n_points']} runs, "
               f"{format_images(fit['images_seen_min'])} to {format_images(fit['images_seen_max'])} images seen)")
    needed = _needed_clause(fit, confidence)
    if not fit["established"]:
        return (f"{what} is {_range(fit)}{versus}; no trend is established: the slope, {fit['slope']:+.3f} per 10× "
                f"images seen {support}, could be 0.{needed}")
    verb = "rises" if fit["slope"] > 0 else "falls"
    sentence = f"{what} {verb} by {abs(fit['slope']):.3f} per 10× images seen {support}"
    return f"{sentence}; {_crossing(fit)}.{needed}" if ref is not None else f"{sentence}."
