"""Which features are augmented: augmentation shares by feature-norm bin (claim 4).

The probe's augmented pass (``pass == "augmented"``) embeds every probe image once with the training
augmentations drawn from a fixed per-image seed, and records what was applied (``crop``, ``lowres``,
``photometric``, ``flip``). Per run, at the last epoch:

- the images are cut into ``bins`` equal-count bins of the feature norm by rank (bin 1 = lowest
  norms; ties broken by probe order; ``np.array_split`` sizes, so bins differ by at most one image);
- per bin: the share of images with each quality-changing augmentation (crop, low resolution,
  photometric) and ``share_any`` = at least one of the three (flip is left out: it does not change
  image quality);
- :func:`low_high_gap`: share_any(lowest bin) − share_any(highest bin) with a percentile bootstrap
  interval;
- :func:`norm_change`: per image, ``log(norm_augmented / norm_clean)`` of the same image, grouped by
  what was applied — a paired measure of how much each augmentation lowers the norm — with the mean log
  ratio's percentile bootstrap interval; the ``any`` row (every image with at least one quality-changing
  augmentation) is the run's mean log ratio over augmented images.

Both intervals come from an **identity-cluster bootstrap** when the rows carry the probe's identity
(:data:`.correlation.IDENTITY_COLUMN`): the probe holds about 10 images per identity, whose norms share
an identity effect, so resampling images one by one would understate the run's uncertainty (the same
reasoning and the same resamples as :mod:`.cluster_bootstrap`). Each resample draws the identities with
replacement and takes all their images; without identities (or with every label distinct) the images are
resampled (``bootstrap`` says which). The gap's resample recomputes the norm bins on the resampled
images, as the statistic itself does: with the items sorted by norm (ties by probe order) and the
resample kept as multiplicities, the equal-count bins of ``np.array_split`` are read off cumulative counts,
exactly as :func:`norm_bins` would cut the materialised resample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from marginlab.analysis.cluster_bootstrap import CHUNK_CELLS, cluster_codes, percentile_interval, resample_counts
from marginlab.analysis.correlation import IDENTITY_COLUMN

__all__ = [
    "AUGMENTATION_COLUMNS", "QUALITY_FLAGS", "augmentation_by_norm", "augmentation_table", "low_high_gap",
    "norm_bins", "norm_change",
]

#: Augmentations that change image quality (flip does not).
QUALITY_FLAGS = ("crop", "lowres", "photometric")

AUGMENTATION_COLUMNS = [
    "run", "label", "head", "epoch", "norm_bin", "norm_min", "norm_max",
    "share_crop", "share_lowres", "share_photometric", "share_any", "n",
]


def norm_bins(norm: np.ndarray, bins: int) -> np.ndarray:
    """Bin number 1..k (k = min(bins, n)) of each value: equal-count bins of the rank (1 = lowest)."""
    norm = np.asarray(norm, dtype=np.float64)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if not np.isfinite(norm).all():
        raise ValueError("feature norms must be finite")
    out = np.zeros(len(norm), dtype=np.int64)
    order = np.argsort(norm, kind="stable")
    for b, chunk in enumerate(np.array_split(order, min(bins, max(len(norm), 1)))):
        out[chunk] = b + 1
    return out


def _check(frame: pd.DataFrame, flags: Sequence[str] = QUALITY_FLAGS) -> None:
    missing = {"norm", *flags} - set(frame.columns)
    if missing:
        raise ValueError(f"augmented probe rows lack column(s) {sorted(missing)}")


def _any(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(QUALITY_FLAGS)].to_numpy(bool).any(axis=1)


def augmentation_by_norm(frame: pd.DataFrame, bins: int = 5) -> pd.DataFrame:
    """Per norm bin of one run's augmented probe rows: norm range, shares of each augmentation, n."""
    _check(frame)
    b = norm_bins(frame["norm"].to_numpy(), bins)
    work = pd.DataFrame({"norm_bin": b, "norm": frame["norm"].to_numpy(np.float64),
                         **{f"share_{f}": frame[f].to_numpy(bool) for f in QUALITY_FLAGS},
                         "share_any": _any(frame)})
    grouped = work.groupby("norm_bin", sort=True)
    out = grouped[[f"share_{f}" for f in QUALITY_FLAGS] + ["share_any"]].mean()
    out.insert(0, "norm_max", grouped["norm"].max())
    out.insert(0, "norm_min", grouped["norm"].min())
    out["n"] = grouped.size()
    return out.reset_index()


def augmentation_table(probe: pd.DataFrame, bins: int = 5, epoch: int | None = None) -> pd.DataFrame:
    """Rows of ``augmentation.csv``: :func:`augmentation_by_norm` per run at ``epoch`` (default: its last)."""
    need = {"run", "label", "head", "epoch", "pass"}
    missing = need - set(probe.columns)
    if missing:
        raise ValueError(f"probe table lacks column(s) {sorted(missing)}")
    rows = []
    aug = probe[probe["pass"].astype(str) == "augmented"]
    for run, frame in aug.groupby("run", sort=True, observed=True):
        e = int(frame["epoch"].max()) if epoch is None else int(epoch)
        at = frame[frame["epoch"] == e]
        if at.empty:
            continue
        table = augmentation_by_norm(at, bins)
        table.insert(0, "epoch", e)
        table.insert(0, "head", at["head"].iloc[0])
        table.insert(0, "label", at["label"].iloc[0])
        table.insert(0, "run", run)
        rows.append(table)
    if not rows:
        return pd.DataFrame(columns=AUGMENTATION_COLUMNS)
    return pd.concat(rows, ignore_index=True)[AUGMENTATION_COLUMNS]


def _identities(frame: pd.DataFrame) -> np.ndarray | None:
    """Cluster codes of the frame's identities (:func:`.cluster_bootstrap.cluster_codes`), or None: image bootstrap."""
    return cluster_codes(frame[IDENTITY_COLUMN].to_numpy()) if IDENTITY_COLUMN in frame.columns else None


def _first_positions(cum: np.ndarray, cum_aug: np.ndarray, aug_sorted: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Augmented images among the first ``p[b]`` positions of each sorted resample b.

    ``cum`` / ``cum_aug``: (n, B) cumulative multiplicities / augmented multiplicities in sorted item order.
    Position p lies in item i = #{items with cum < p}; the items before it count whole, item i counts
    p − cum[i − 1] copies.
    """
    n, b = cum.shape
    cols = np.arange(b)
    i = (cum < p[None, :]).sum(axis=0)
    before = np.vstack([np.zeros((1, b)), cum])[i, cols]
    before_aug = np.vstack([np.zeros((1, b)), cum_aug])[i, cols]
    return before_aug + aug_sorted[np.minimum(i, n - 1)] * (p - before)


def _gap_resamples(norm: np.ndarray, augmented: np.ndarray, bins: int, counts_t: np.ndarray) -> np.ndarray:
    """The gap of each resample (item-major multiplicities ``counts_t``), bins recomputed on the resample."""
    order = np.argsort(norm, kind="stable")
    aug_sorted = augmented[order].astype(np.float64)
    sorted_counts = counts_t[order]
    cum = np.cumsum(sorted_counts, axis=0)
    cum_aug = np.cumsum(sorted_counts * aug_sorted[:, None], axis=0)
    total = cum[-1]
    k = np.minimum(bins, total)
    with np.errstate(invalid="ignore", divide="ignore"):
        low_size = np.floor_divide(total, np.maximum(k, 1)) + (np.mod(total, np.maximum(k, 1)) > 0)
        high_size = np.floor_divide(total, np.maximum(k, 1))
        low = _first_positions(cum, cum_aug, aug_sorted, low_size) / low_size
        high = (cum_aug[-1] - _first_positions(cum, cum_aug, aug_sorted, total - high_size)) / high_size
        return np.where(k >= 2, low - high, np.nan)


def low_high_gap(
    frame: pd.DataFrame, bins: int = 5, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """share_any(lowest-norm bin) − share_any(highest-norm bin) of one run's augmented probe rows.

    Returns ``{gap, lo, hi, share_low, share_high, n_low, n_high, bootstrap, n_identities}``; the interval
    is the percentile interval of ``n_resamples`` bootstrap resamples of the run's probe — of its identities
    (``bootstrap = "identity"``) when the rows carry :data:`.correlation.IDENTITY_COLUMN`, else of its images
    — with the norm bins recomputed in every resample (module docstring). ``n_identities``: identities
    resampled (0 for the image bootstrap).
    """
    _check(frame)
    norm = frame["norm"].to_numpy(np.float64)
    b = norm_bins(norm, bins)
    augmented = _any(frame)
    k = int(b.max()) if len(b) else 0
    ids = _identities(frame) if len(frame) else None
    kind = {"bootstrap": "image" if ids is None else "identity", "n_identities": 0 if ids is None else int(ids.max()) + 1}
    if k < 2:
        return {"gap": np.nan, "lo": np.nan, "hi": np.nan, "share_low": np.nan, "share_high": np.nan,
                "n_low": int((b == 1).sum()), "n_high": 0, **kind}
    low, high = augmented[b == 1], augmented[b == k]
    p_low, p_high = float(low.mean()), float(high.mean())
    rng = np.random.default_rng(seed)
    n = len(norm)
    boot = np.empty(n_resamples)
    chunk = max(1, min(n_resamples, CHUNK_CELLS // max(n, 1)))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        boot[start:stop] = _gap_resamples(norm, augmented, bins, resample_counts(ids, n, stop - start, rng))
    lo, hi = percentile_interval(boot, confidence)
    return {"gap": p_low - p_high, "lo": lo, "hi": hi, "share_low": p_low, "share_high": p_high,
            "n_low": len(low), "n_high": len(high), **kind}


def norm_change(clean: pd.DataFrame, augmented: pd.DataFrame, *, n_resamples: int = 2000, confidence: float = 0.95,
                seed: int = 0) -> pd.DataFrame:
    """Paired ``log(norm_augmented / norm_clean)`` per augmentation group of one run and epoch.

    Rows ``augmentation`` ∈ {none, crop, lowres, photometric, any} (``none``: none of the three;
    a flag's row: every image where it was applied, possibly with others), ``n``,
    ``mean_log_ratio``, ``median_ratio`` (exp of the median log ratio), ``mean_log_ratio_lo`` /
    ``mean_log_ratio_hi`` (percentile bootstrap interval of the mean log ratio), ``bootstrap``
    (``identity``: identity-cluster bootstrap of the run's probe images, when the augmented rows carry
    :data:`.correlation.IDENTITY_COLUMN`; else ``image``) and ``n_identities`` (identities among the group's
    images; 0 without identities). All groups share the resamples (seeded by ``seed``). The ``any`` row is the
    run's mean log ratio over the augmented images, with its interval.
    """
    _check(augmented)
    if "index" not in clean.columns or "index" not in augmented.columns:
        raise ValueError("probe rows need an 'index' column to pair the clean and augmented passes")
    merged = augmented.merge(clean[["index", "norm"]], on="index", suffixes=("", "_clean"), how="inner")
    if len(merged) != len(augmented):
        raise ValueError(f"augmented probe has {len(augmented)} images but only {len(merged)} pair with the clean pass")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(merged["norm"].to_numpy(np.float64) / merged["norm_clean"].to_numpy(np.float64))
    flags = {f: merged[f].to_numpy(bool) for f in QUALITY_FLAGS}
    applied = np.column_stack(list(flags.values())).any(axis=1)
    groups = {"none": ~applied, **flags, "any": applied}
    finite = np.isfinite(log_ratio)
    value = np.where(finite, log_ratio, 0.0)
    ids = _identities(merged) if len(merged) else None
    masks = np.column_stack([(m & finite).astype(np.float64) for m in groups.values()])  # (n, groups)
    boot = np.empty((n_resamples, len(groups)))
    n = len(merged)
    if n:
        rng = np.random.default_rng(seed)
        chunk = max(1, min(n_resamples, CHUNK_CELLS // max(n, 1)))
        for start in range(0, n_resamples, chunk):
            stop = min(n_resamples, start + chunk)
            counts_t = resample_counts(ids, n, stop - start, rng)  # (n, B)
            with np.errstate(invalid="ignore", divide="ignore"):
                # einsum, not @: a threaded BLAS call this small busy-waits on a loaded CPU (cluster_bootstrap.column_sums)
                boot[start:stop] = (np.einsum("ib,ig->bg", counts_t, masks * value[:, None])
                                    / np.einsum("ib,ig->bg", counts_t, masks))
    labels = merged[IDENTITY_COLUMN].to_numpy() if ids is not None else None
    rows = []
    for j, (name, mask) in enumerate(groups.items()):
        v = log_ratio[mask & finite]
        lo, hi = percentile_interval(boot[:, j], confidence) if v.size else (np.nan, np.nan)
        rows.append({"augmentation": name, "n": int(v.size),
                     "mean_log_ratio": float(v.mean()) if v.size else np.nan,
                     "median_ratio": float(np.exp(np.median(v))) if v.size else np.nan,
                     "mean_log_ratio_lo": lo, "mean_log_ratio_hi": hi,
                     "bootstrap": "image" if ids is None else "identity",
                     "n_identities": 0 if labels is None else len(np.unique(labels[mask & finite]))})
    return pd.DataFrame(rows)
