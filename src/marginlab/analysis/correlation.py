"""Correlation of the feature norm (and P_yi) with image quality, with bootstrap confidence intervals (Fig. 2).

Point estimates are Pearson's r and Spearman's ρ (scipy.stats) of the finite pairs. The 95 % intervals
are percentile bootstrap intervals, by default over **identities** (an identity-cluster bootstrap):

- *Why identities.* The probe holds about 10 images of each identity (1,024 images of ~100 identities),
  and both the feature norm and the IQ score carry identity effects (IQ's identity ICC is ≈ 0.34 among
  clean synthetic images): images of one identity are not independent draws. A bootstrap over images
  treats them as independent and covers only ~80 % instead of 95 % when both variables have identity
  effects (tests/analysis/test_analysis_correlation.py measures it). Resampling whole identities keeps the
  within-identity dependence in every resample.
- *The resample.* The ``G`` identities of a group (its :data:`IDENTITY_COLUMN`, the probe's class label)
  are numbered 0..G-1 in sorted order; resample b draws G identities uniformly with replacement
  (``rng.integers(0, G, (B, G))``, generated in chunks of rows) and takes all images of each drawn
  identity, so every image's multiplicity is its identity's draw count (a resample holds a varying number
  of images). Without an identity column, with every label distinct, or with fewer than
  :data:`MIN_IDENTITIES` identities, the images themselves are resampled (``rng.integers(0, n, (B, n))``,
  the image bootstrap); the ``bootstrap`` column says which (``identity`` | ``image``).

Either way the ``B`` resamples are kept as multiplicity vectors ``c`` (one per resample), so each resampled
statistic is a *weighted* statistic of the original data:

- Pearson: r_w = Σ c (x - x̄_w)(y - ȳ_w) / sqrt(Σ c (x - x̄_w)² · Σ c (y - ȳ_w)²), x̄_w = Σ c x / Σ c;
- Spearman: the Pearson r_w of the within-resample average ranks. With the original items sorted by
  value and grouped into blocks of equal value, a block of total multiplicity t that follows ``before``
  resampled items occupies ranks before+1 … before+t, so each of its items has the average rank
  before + (t + 1) / 2 — exactly what ``scipy.stats.rankdata`` gives on the materialised resample.

This keeps the bootstrap a handful of (B, n) array operations, no per-resample sorting. A resample in
which one side is constant has an undefined correlation (NaN) and is left out of the percentiles.
Resamples are seeded per group (:func:`group_rng`), so a group's interval does not depend on which other
groups were analysed, nor on how many threads compute them: the tables spread their groups over
``workers`` threads (NumPy releases the GIL inside these array operations; 1.96x with 2 threads on the
2-core CPU, identical results; bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from marginlab.device import available_cores

__all__ = [
    "CORRELATION_COLUMNS",
    "IDENTITY_COLUMN",
    "MIN_IDENTITIES",
    "MIN_N",
    "PROGRESS_CORRELATION_COLUMNS",
    "CorrelationResult",
    "bootstrap_correlations",
    "bootstrap_counts",
    "cluster_bootstrap_counts",
    "cluster_codes",
    "correlation_table",
    "correlation_with_ci",
    "eval_correlation_table",
    "group_rng",
    "nonlinearity_test",
    "progress_correlation_table",
    "resample_ranks",
    "resolve_workers",
    "weighted_pearson",
]

#: Fewer finite pairs than this give no correlation (NaN).
MIN_N = 3
#: Fewer identities than this: the images are resampled instead (a cluster bootstrap needs clusters to draw).
MIN_IDENTITIES = 5
#: The probe's identity (class label) column in the analysis tables (:mod:`.collect` renames the probe's
#: ``label`` to it, ``label`` being the run's configuration there).
IDENTITY_COLUMN = "class_label"
#: Bootstrap rows generated at once are limited to about this many (B_chunk × n) cells.
_CHUNK_CELLS = 2_000_000

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


def group_rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator seeded by ``seed`` and a stable hash (CRC-32) of ``keys``."""
    tag = zlib.crc32("|".join(str(k) for k in keys).encode("utf-8"))
    return np.random.default_rng([int(seed), tag])


def _counts_item_major(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n_resamples) float64 multiplicities: column b is resample b (internal layout: rows are items)."""
    if n <= 0 or n_resamples <= 0:
        raise ValueError(f"bootstrap needs n > 0 and n_resamples > 0, got n={n}, n_resamples={n_resamples}")
    draws = rng.integers(0, n, size=(n_resamples, n))
    cells = draws * n_resamples + np.arange(n_resamples)[:, None]
    return np.bincount(cells.ravel(), minlength=n * n_resamples).reshape(n, n_resamples).astype(np.float64)


def bootstrap_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) multiplicities of a bootstrap resample of n items (each row sums to n)."""
    return _counts_item_major(n, n_resamples, rng).T.astype(np.int64)


def cluster_codes(clusters: np.ndarray | Sequence | None) -> np.ndarray | None:
    """Cluster number 0..G-1 of each item (clusters in sorted order), or None when the items are to be
    resampled one by one: no cluster labels, every label distinct, or fewer than :data:`MIN_IDENTITIES`.

    Labels must be finite where they are numbers (a missing identity cannot be resampled with its images).
    """
    if clusters is None:
        return None
    labels = np.asarray(clusters)
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError("identity labels must be finite")
    uniques, codes = np.unique(labels, return_inverse=True)
    if len(uniques) == len(labels) or len(uniques) < MIN_IDENTITIES:
        return None
    return codes.reshape(-1).astype(np.int64)


def _cluster_counts_item_major(codes: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n_resamples) float64 multiplicities of an identity-cluster bootstrap: resample b draws G of the
    G clusters with replacement (``rng.integers(0, G, (n_resamples, G))``); an item's multiplicity is its
    cluster's draw count."""
    n_clusters = int(codes.max()) + 1
    cluster_counts = _counts_item_major(n_clusters, n_resamples, rng)  # (G, B): the draws, counted per cluster
    return cluster_counts[codes]


def _resample_counts(codes: np.ndarray | None, n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Item-major (n, n_resamples) multiplicities: identity-cluster bootstrap if ``codes`` else image bootstrap."""
    return _counts_item_major(n, n_resamples, rng) if codes is None else _cluster_counts_item_major(codes, n_resamples, rng)


def cluster_bootstrap_counts(clusters: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) multiplicities of an identity-cluster bootstrap of n items labelled by ``clusters``:
    the G distinct labels (sorted) are drawn G times with replacement per resample, and every item gets the
    draw count of its label. Falls back to :func:`bootstrap_counts` where :func:`cluster_codes` gives None."""
    codes = cluster_codes(clusters)
    n = len(np.asarray(clusters))
    return _resample_counts(codes, n, n_resamples, rng).T.astype(np.int64)


# Internally the arrays are item-major, (n, B): permuting items then moves whole contiguous rows, and
# the per-resample sums run down the columns. The public functions take and return (B, n).
def _ranks_t(values: np.ndarray, counts_t: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    sorted_counts = counts_t[order]
    cum = np.cumsum(sorted_counts, axis=0)
    new_block = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    if new_block.all():  # no ties: every item is its own block
        sorted_ranks = cum - (sorted_counts - 1.0) / 2.0
    else:
        block_of = np.cumsum(new_block) - 1
        ends = np.r_[np.flatnonzero(new_block)[1:], len(values)] - 1
        block_cum = cum[ends]
        block_total = np.diff(block_cum, axis=0, prepend=np.zeros((1, block_cum.shape[1])))
        block_rank = block_cum - (block_total - 1.0) / 2.0
        sorted_ranks = block_rank[block_of]
    ranks = np.empty_like(sorted_ranks)
    ranks[order] = sorted_ranks
    return ranks


def resample_ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Average (1-based) rank of every original item inside each resample; shape of ``counts`` (B, n).

    Items with multiplicity 0 get the rank they would have; their weight is 0 wherever it is used.
    """
    counts_t = np.ascontiguousarray(np.asarray(counts, dtype=np.float64).T)
    return _ranks_t(np.asarray(values, dtype=np.float64), counts_t).T


def _colsum(w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Column sums Σ_i w[i, b] · a[i(, b)] for a 1-D or 2-D ``a``.

    ``einsum`` rather than ``a @ w``: a threaded BLAS call this small busy-waits badly on a loaded CPU.
    """
    return np.einsum("ib,i->b", w, a) if a.ndim == 1 else np.einsum("ib,ib->b", w, a)


def _pearson_t(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    total = w.sum(axis=0)
    sx, sy = _colsum(w, x), _colsum(w, y)
    sxx, syy = _colsum(w, x * x), _colsum(w, y * y)
    xy = x * y if x.ndim == y.ndim else (x[:, None] if x.ndim == 1 else x) * (y[:, None] if y.ndim == 1 else y)
    sxy = _colsum(w, xy)
    vx = sxx - sx * sx / total
    vy = syy - sy * sy / total
    cov = sxy - sx * sy / total
    # A variance that is only round-off (relative to the second moment) counts as zero: constant side.
    ok = (vx > 1e-10 * sxx) & (vy > 1e-10 * syy) & (vx > 0) & (vy > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(ok, cov / np.sqrt(np.where(ok, vx * vy, 1.0)), np.nan)
    return np.clip(r, -1.0, 1.0)


def weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise weighted Pearson r; ``x``/``y`` (n,) or (B, n), ``w`` (B, n). NaN for a constant side.

    Computed from weighted moments of x and y centred by their plain means (which leaves r unchanged
    and keeps the moment differences well conditioned).
    """
    def item_major(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        return a if a.ndim == 1 else np.ascontiguousarray(a.T)

    return _pearson_t(item_major(x), item_major(y), item_major(w))


def _finite_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def bootstrap_correlations(
    xs: Mapping[str, np.ndarray], y: np.ndarray, *, n_resamples: int, rng: np.random.Generator,
    clusters: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap distributions ``{name: {"pearson": (B,), "spearman": (B,)}}`` of each x against ``y``.

    All xs share the same resamples (so differences between them are paired). Inputs must be finite
    and of equal length. ``clusters``: cluster codes 0..G-1 per item (:func:`cluster_codes`) for an
    identity-cluster bootstrap; None resamples the items.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if clusters is not None and len(clusters) != n:
        raise ValueError(f"clusters has {len(clusters)} entries for {n} items")
    out = {k: {"pearson": np.empty(n_resamples), "spearman": np.empty(n_resamples)} for k in xs}
    chunk = max(1, min(n_resamples, _CHUNK_CELLS // max(n, 1)))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        counts_t = _resample_counts(clusters, n, stop - start, rng)
        ry = _ranks_t(y, counts_t)
        for name, x in xs.items():
            x = np.asarray(x, dtype=np.float64)
            out[name]["pearson"][start:stop] = _pearson_t(x, y, counts_t)
            out[name]["spearman"][start:stop] = _pearson_t(_ranks_t(x, counts_t), ry, counts_t)
    return out


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return np.nan, np.nan
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


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
    identity-cluster bootstrap (module docstring); None (or unusable labels, :func:`cluster_codes`): image bootstrap.
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
        p_lo, p_hi = _interval(boot[name]["pearson"], confidence)
        s_lo, s_hi = _interval(boot[name]["spearman"], confidence)
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
    counts_t = _counts_item_major(n, n_resamples, np.random.default_rng(seed))
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = 1.0 - _colsum(counts_t, err_iso) / _colsum(counts_t, err_lin)
    lo, hi = _interval(boot, confidence)
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
    (module docstring), else images; the ``bootstrap`` column says which.
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
