"""Percentile bootstrap of correlations over identities (an identity-cluster bootstrap), as weighted statistics.

- *Why identities.* The probe holds about 10 images of each identity (1,024 images of ~100 identities),
  and both the feature norm and the IQ score carry identity effects (IQ's identity ICC is ≈ 0.34 among
  clean synthetic images): images of one identity are not independent draws. A bootstrap over images
  treats them as independent and covers only ~80 % instead of 95 % when both variables have identity
  effects (tests/analysis/test_cluster_bootstrap.py measures it). Resampling whole identities keeps the
  within-identity dependence in every resample.
- *The resample.* The ``G`` identities of a group (the probe's class label) are numbered 0..G-1 in sorted
  order; resample b draws G identities uniformly with replacement (``rng.integers(0, G, (B, G))``,
  generated in chunks of rows) and takes all images of each drawn identity, so every image's multiplicity
  is its identity's draw count (a resample holds a varying number of images). Without identities, with
  every label distinct, or with fewer than :data:`MIN_IDENTITIES` identities, the images themselves are
  resampled (``rng.integers(0, n, (B, n))``, the image bootstrap).

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
groups were analysed, nor on how many threads compute them.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "CHUNK_CELLS",
    "MIN_IDENTITIES",
    "bootstrap_correlations",
    "bootstrap_counts",
    "cluster_bootstrap_counts",
    "cluster_codes",
    "column_sums",
    "group_rng",
    "item_major_counts",
    "percentile_interval",
    "resample_counts",
    "resample_ranks",
    "weighted_pearson",
]

#: Fewer identities than this: the images are resampled instead (a cluster bootstrap needs clusters to draw).
MIN_IDENTITIES = 5
#: Bootstrap rows generated at once are limited to about this many (B_chunk × n) cells.
CHUNK_CELLS = 2_000_000


def group_rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator for one group: ``seed`` and a CRC-32 of ``keys`` (unlike ``hash``, the same in every process)."""
    tag = zlib.crc32("|".join(str(k) for k in keys).encode("utf-8"))
    return np.random.default_rng([int(seed), tag])


# Internally the arrays are item-major, (n, B): permuting items then moves whole contiguous rows, and
# the per-resample sums run down the columns. bootstrap_counts, resample_ranks and weighted_pearson take and
# return (B, n); item_major_counts, resample_counts and column_sums keep (n, B) for the analyses that build
# their own weighted statistics on the resamples (the nonlinearity test, the augmentation analysis).
def item_major_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n_resamples) float64 multiplicities: column b is resample b."""
    if n <= 0 or n_resamples <= 0:
        raise ValueError(f"bootstrap needs n > 0 and n_resamples > 0, got n={n}, n_resamples={n_resamples}")
    draws = rng.integers(0, n, size=(n_resamples, n))
    cells = draws * n_resamples + np.arange(n_resamples)[:, None]
    return np.bincount(cells.ravel(), minlength=n * n_resamples).reshape(n, n_resamples).astype(np.float64)


def bootstrap_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) multiplicities of a bootstrap resample of n items (each row sums to n)."""
    return item_major_counts(n, n_resamples, rng).T.astype(np.int64)


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


def _cluster_counts(codes: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n_resamples) float64 multiplicities of an identity-cluster bootstrap: resample b draws G of the
    G clusters with replacement (``rng.integers(0, G, (n_resamples, G))``); an item's multiplicity is its
    cluster's draw count."""
    n_clusters = int(codes.max()) + 1
    cluster_counts = item_major_counts(n_clusters, n_resamples, rng)  # (G, B): the draws, counted per cluster
    return cluster_counts[codes]


def resample_counts(codes: np.ndarray | None, n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Item-major (n, n_resamples) multiplicities: identity-cluster bootstrap if ``codes`` else image bootstrap."""
    return item_major_counts(n, n_resamples, rng) if codes is None else _cluster_counts(codes, n_resamples, rng)


def cluster_bootstrap_counts(clusters: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) multiplicities of an identity-cluster bootstrap of n items labelled by ``clusters``:
    the G distinct labels (sorted) are drawn G times with replacement per resample, and every item gets the
    draw count of its label. Falls back to :func:`bootstrap_counts` where :func:`cluster_codes` gives None."""
    codes = cluster_codes(clusters)
    n = len(np.asarray(clusters))
    return resample_counts(codes, n, n_resamples, rng).T.astype(np.int64)


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


def column_sums(w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Column sums Σ_i w[i, b] · a[i(, b)] for a 1-D or 2-D ``a``.

    ``einsum`` rather than ``a @ w``: a threaded BLAS call this small busy-waits badly on a loaded CPU.
    """
    return np.einsum("ib,i->b", w, a) if a.ndim == 1 else np.einsum("ib,ib->b", w, a)


def _pearson_t(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    total = w.sum(axis=0)
    sx, sy = column_sums(w, x), column_sums(w, y)
    sxx, syy = column_sums(w, x * x), column_sums(w, y * y)
    xy = x * y if x.ndim == y.ndim else (x[:, None] if x.ndim == 1 else x) * (y[:, None] if y.ndim == 1 else y)
    sxy = column_sums(w, xy)
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
    chunk = max(1, min(n_resamples, CHUNK_CELLS // max(n, 1)))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        counts_t = resample_counts(clusters, n, stop - start, rng)
        ry = _ranks_t(y, counts_t)
        for name, x in xs.items():
            x = np.asarray(x, dtype=np.float64)
            out[name]["pearson"][start:stop] = _pearson_t(x, y, counts_t)
            out[name]["spearman"][start:stop] = _pearson_t(_ranks_t(x, counts_t), ry, counts_t)
    return out


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Central ``confidence`` interval of the finite samples: resamples with an undefined statistic are NaN."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return np.nan, np.nan
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)

