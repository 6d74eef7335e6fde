"""Correlation of the feature norm (and P_yi) with image quality, with bootstrap confidence intervals (Fig. 2).

Point estimates are Pearson's r and Spearman's ρ (scipy.stats) of the finite pairs. The 95 % intervals
are percentile bootstrap intervals over **identities** where the rows carry them (:data:`IDENTITY_COLUMN`),
else over images; the ``bootstrap`` column says which (``identity`` | ``image``).
:mod:`.cluster_bootstrap` says why identities and how the resamples are computed.

Each group is resampled by its own seed (:func:`~.cluster_bootstrap.group_rng`), so the tables can spread
their groups over ``workers`` threads (NumPy releases the GIL inside the bootstrap's array operations;
1.96x with 2 threads on the 2-core CPU, identical results; bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from marginlab.analysis.cluster_bootstrap import (
    bootstrap_correlations,
    cluster_codes,
    column_sums,
    group_rng,  # .stage imports it from here too
    item_major_counts,
    percentile_interval,
)
from marginlab.core.device import available_cores

__all__ = [
    "CORRELATION_COLUMNS",
    "IDENTITY_COLUMN",
    "MIN_N",
    "PROGRESS_CORRELATION_COLUMNS",
    "CorrelationResult",
    "correlation_table",
    "correlation_with_ci",
    "eval_correlation_table",
    "nonlinearity_test",
    "progress_correlation_table",
    "resolve_workers",
]

#: Fewer finite pairs than this give no correlation (NaN).
MIN_N = 3
#: The probe's identity (class label) column in the analysis tables (:mod:`.collect` renames the probe's
#: ``label`` to it, ``label`` being the run's configuration there).
IDENTITY_COLUMN = "class_label"

CORRELATION_COLUMNS = [
    "run", "label", "head", "epoch", "pass", "quantity", "target",
    "pearson", "pearson_lo", "pearson_hi", "spearman", "spearman_lo", "spearman_hi", "n", "bootstrap",
]
#: ``correlation_progress.csv``: the progress probes' rows, placed by step (``epoch`` = the step's epoch).
PROGRESS_CORRELATION_COLUMNS = [*CORRELATION_COLUMNS[:3], "step", "images_seen", "progress", *CORRELATION_COLUMNS[3:]]


@dataclass(frozen=True)
class CorrelationResult:
    """Point estimates and percentile bootstrap intervals of one (x, y) sample; ``bootstrap``: what was
    resampled, ``identity`` (identity-cluster bootstrap) or ``image``."""

    pearson: float
    pearson_lo: float
    pearson_hi: float
    spearman: float
    spearman_lo: float
    spearman_hi: float
    n: int
    bootstrap: str = "image"

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


_NAN_RESULT = {"pearson": np.nan, "pearson_lo": np.nan, "pearson_hi": np.nan,
               "spearman": np.nan, "spearman_lo": np.nan, "spearman_hi": np.nan}


def _finite_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]



def _point(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(x) < MIN_N or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan, np.nan
    return float(stats.pearsonr(x, y).statistic), float(stats.spearmanr(x, y).statistic)


def correlation_with_ci(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    rng: np.random.Generator | None = None,
    clusters: np.ndarray | Sequence | None = None,
) -> CorrelationResult:
    """Pearson and Spearman of the finite (x, y) pairs with percentile bootstrap intervals.

    ``clusters``: the identity of each pair (same length as x): the intervals then come from an
    identity-cluster bootstrap (:mod:`.cluster_bootstrap`); None (or unusable labels, :func:`cluster_codes`): image bootstrap.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if clusters is not None:
        x_arr, y_arr = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        x, y = _finite_pairs(x_arr, y_arr)
        clusters = np.asarray(clusters)
        if clusters.shape != x_arr.shape:
            raise ValueError(f"clusters must have the shape of x, got {clusters.shape} and {x_arr.shape}")
        clusters = clusters[np.isfinite(x_arr) & np.isfinite(y_arr)]
    else:
        x, y = _finite_pairs(x, y)
    return _many({"x": x}, y, n_resamples=n_resamples, confidence=confidence,
                 rng=rng if rng is not None else np.random.default_rng(seed), clusters=cluster_codes(clusters))["x"]


def _many(xs: Mapping[str, np.ndarray], y: np.ndarray, *, n_resamples: int, confidence: float,
          rng: np.random.Generator, clusters: np.ndarray | None = None) -> dict[str, CorrelationResult]:
    n = len(y)
    kind = "image" if clusters is None else "identity"
    results: dict[str, CorrelationResult] = {}
    if n < MIN_N:
        return {k: CorrelationResult(**_NAN_RESULT, n=n, bootstrap=kind) for k in xs}
    boot = bootstrap_correlations(xs, y, n_resamples=n_resamples, rng=rng, clusters=clusters)
    for name, x in xs.items():
        pearson, spearman = _point(np.asarray(x, dtype=np.float64), y)
        if np.isnan(pearson):
            results[name] = CorrelationResult(**_NAN_RESULT, n=n, bootstrap=kind)
            continue
        p_lo, p_hi = percentile_interval(boot[name]["pearson"], confidence)
        s_lo, s_hi = percentile_interval(boot[name]["spearman"], confidence)
        results[name] = CorrelationResult(pearson, p_lo, p_hi, spearman, s_lo, s_hi, n, kind)
    return results


def nonlinearity_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = 5,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Is y a non-linear (monotone) function of x? Out-of-sample linear vs isotonic fit.

    ``folds``-fold cross-validation (seeded shuffle) predicts every y_i from the other folds twice: by
    least squares on x (``sklearn.linear_model.LinearRegression``) and by a monotone step function of
    x (``sklearn.isotonic.IsotonicRegression``, direction = sign of the training folds' Spearman ρ). ``gain`` =
    1 − MSE_monotone / MSE_linear: > 0 when the monotone fit predicts held-out points better, i.e. the
    relation bends (e.g. P_yi saturating at 1); for a linear relation the extra flexibility only adds
    variance and the gain is ≤ 0. The interval is a percentile bootstrap over points of the two
    held-out squared-error means (paired). Returns ``{gain, lo, hi, mse_linear, mse_monotone, n}``.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import KFold

    x, y = _finite_pairs(x, y)
    n = len(x)
    empty = {"gain": np.nan, "lo": np.nan, "hi": np.nan, "mse_linear": np.nan, "mse_monotone": np.nan, "n": n}
    if n < max(2 * folds, 10) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return empty
    err_lin, err_iso = np.empty(n), np.empty(n)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(x):
        lin = LinearRegression().fit(x[train, None], y[train])
        err_lin[test] = (y[test] - lin.predict(x[test, None])) ** 2
        increasing = bool(stats.spearmanr(x[train], y[train]).statistic >= 0)  # direction from the training folds
        iso = IsotonicRegression(increasing=increasing, out_of_bounds="clip").fit(x[train], y[train])
        err_iso[test] = (y[test] - iso.predict(x[test])) ** 2
    mse_lin, mse_iso = float(err_lin.mean()), float(err_iso.mean())
    if mse_lin <= 0:
        return empty
    counts_t = item_major_counts(n, n_resamples, np.random.default_rng(seed))
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = 1.0 - column_sums(counts_t, err_iso) / column_sums(counts_t, err_lin)
    lo, hi = percentile_interval(boot, confidence)
    return {"gain": 1.0 - mse_iso / mse_lin, "lo": lo, "hi": hi, "mse_linear": mse_lin, "mse_monotone": mse_iso, "n": n}


def correlation_table(
    probe: pd.DataFrame,
    *,
    quantities: Sequence[str] = ("norm", "p_yi"),
    targets: Sequence[str] = ("iq", "gt_quality"),
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = False,
    workers: int = 1,
) -> pd.DataFrame:
    """Rows of ``correlation.csv`` for every (run, epoch, pass, quantity, target) of the probe tables.

    ``probe`` holds the rows of all runs' ``probe/epoch_XX.parquet`` plus ``run``, ``label``, ``head``
    (the probe's own class label as :data:`IDENTITY_COLUMN`). A (run, epoch, pass, target) group whose target
    is missing everywhere (e.g. ``gt_quality`` on real data) gives no rows; the quantities of one group share
    their bootstrap resamples. The intervals resample identities when the rows carry :data:`IDENTITY_COLUMN`
    (:mod:`.cluster_bootstrap`), else images; the ``bootstrap`` column says which.
    """
    rows = _correlation_rows(probe, "epoch", (), quantities=quantities, targets=targets, n_resamples=n_resamples,
                             confidence=confidence, seed=seed, progress=progress, workers=workers)
    return _frame(rows, CORRELATION_COLUMNS)


def progress_correlation_table(
    progress_probe: pd.DataFrame,
    *,
    quantities: Sequence[str] = ("norm", "p_yi"),
    targets: Sequence[str] = ("iq", "gt_quality"),
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = False,
    workers: int = 1,
) -> pd.DataFrame:
    """Rows of ``correlation_progress.csv`` for every (run, step, pass, quantity, target) of the progress probes.

    ``progress_probe`` holds the rows of all runs' ``probe/progress/step_XXXXXXX.parquet`` plus ``run``,
    ``label``, ``head``; each row carries its step's ``epoch``, ``images_seen`` and ``progress``. Groups
    are resampled by their own seed (``run, "step", step, pass, target``), as :func:`correlation_table`'s.
    """
    rows = _correlation_rows(progress_probe, "step", ("epoch", "images_seen", "progress"), quantities=quantities,
                             targets=targets, n_resamples=n_resamples, confidence=confidence, seed=seed, progress=progress,
                             workers=workers)
    frame = _frame(rows, PROGRESS_CORRELATION_COLUMNS)
    frame["step"] = frame["step"].astype("int64")
    frame["images_seen"] = frame["images_seen"].astype("int64")
    return frame


def _correlation_rows(
    probe: pd.DataFrame,
    by: str,
    carry: Sequence[str],
    *,
    quantities: Sequence[str],
    targets: Sequence[str],
    n_resamples: int,
    confidence: float,
    seed: int,
    progress: bool,
    workers: int = 1,
) -> list[dict]:
    """One row per (run, ``by``, pass, quantity, target); ``carry``: columns copied from the group's first row.

    The bootstrap of a group is seeded by ``run, by-value, pass, target`` (prefixed by ``by`` unless it is
    ``epoch``, which keeps ``correlation.csv``'s draws as they were). The resamples are identity clusters
    when the rows carry :data:`IDENTITY_COLUMN` (:func:`cluster_codes`), else images. ``workers`` threads (0 =
    one per available core) compute the groups; the rows come back in the same order whatever their number.
    """
    need = {"run", "label", "head", by, *carry, "pass", *quantities}
    missing = need - set(probe.columns)
    if missing:
        raise ValueError(f"probe table lacks column(s) {sorted(missing)}")
    prefix = () if by == "epoch" else (by,)
    groups = []  # (row fields, target, xs, y, rng, cluster codes) per bootstrap group
    for (run, key, pass_), frame in probe.groupby(["run", by, "pass"], sort=True, observed=True):
        label, head = frame["label"].iloc[0], frame["head"].iloc[0]
        place = {by: int(key), **{c: frame[c].iloc[0] for c in carry}}
        for target in targets:
            if target not in frame.columns:
                continue
            cols = [frame[q].to_numpy(np.float64) for q in quantities]
            t = frame[target].to_numpy(np.float64)
            ok = np.isfinite(t)
            for c in cols:
                ok &= np.isfinite(c)
            if ok.sum() < MIN_N:
                continue
            ids = cluster_codes(frame[IDENTITY_COLUMN].to_numpy()[ok]) if IDENTITY_COLUMN in frame.columns else None
            groups.append(({"run": run, "label": label, "head": head, **place, "pass": str(pass_)}, target,
                           {q: c[ok] for q, c in zip(quantities, cols)}, t[ok],
                           group_rng(seed, run, *prefix, int(key), pass_, target), ids))

    def bootstrap(group: tuple) -> dict[str, CorrelationResult]:
        _, _, xs, y, rng, ids = group
        return _many(xs, y, n_resamples=n_resamples, confidence=confidence, rng=rng, clusters=ids)

    rows = []
    results = _map_in_threads(bootstrap, groups, workers, progress, f"correlations by {by}")
    for (row, target, *_), res in zip(groups, results):
        for q in quantities:
            rows.append({**row, "quantity": q, "target": target, **res[q].as_dict()})
    return rows


def resolve_workers(workers: int) -> int:
    """Threads for ``workers`` (0 = one per core this process may use)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return workers or available_cores()


def _map_in_threads(fn: Callable, items: Sequence, workers: int, progress: bool, desc: str) -> Iterator:
    """``fn(item)`` for each item, in order, on ``workers`` threads (one: in this thread)."""
    n = min(resolve_workers(workers), max(len(items), 1))
    with ThreadPoolExecutor(n, thread_name_prefix="bootstrap") if n > 1 else contextlib.nullcontext() as pool:
        results = pool.map(fn, items) if pool is not None else map(fn, items)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(items), desc=desc, unit="group")
        yield from results


def eval_correlation_table(
    eval_norms: pd.DataFrame,
    *,
    targets: Sequence[str] = ("iq", "gt_quality"),
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    workers: int = 1,
) -> pd.DataFrame:
    """Norm-quality correlations on the evaluation images (``eval_norms.parquet`` of every run).

    ``eval_norms`` holds ``run, label, head, epoch`` (the evaluated, i.e. selected, epoch) and the
    file's ``split, norm, iq, gt_quality``. Rows get ``pass = "eval:<split>"``, ``quantity = "norm"``.

    The intervals are an **image** bootstrap (``bootstrap = "image"``): ``eval_norms.parquet`` records no
    identity per image (the verification ``.bin`` sets carry only pair labels, and the IJB / TinyFace rows
    only split and index), so there is nothing to cluster on. Should the table carry an
    :data:`IDENTITY_COLUMN`, it is used as in :func:`correlation_table`.
    """
    need = {"run", "label", "head", "epoch", "split", "norm"}
    missing = need - set(eval_norms.columns)
    if missing:
        raise ValueError(f"eval norms table lacks column(s) {sorted(missing)}")
    frame = eval_norms.rename(columns={"split": "pass"}).copy()
    frame["pass"] = "eval:" + frame["pass"].astype(str)
    return correlation_table(frame, quantities=("norm",), targets=targets, n_resamples=n_resamples,
                             confidence=confidence, seed=seed, workers=workers)


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    frame["epoch"] = frame["epoch"].astype("int64")
    frame["n"] = frame["n"].astype("int64")
    return frame
