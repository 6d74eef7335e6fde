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
  interval (each bin resampled on its own, i.e. a binomial draw of its count);
- :func:`norm_change`: per image, ``log(norm_augmented / norm_clean)`` of the same image, grouped by
  what was applied — a paired measure of how much each augmentation lowers the norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

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


def low_high_gap(
    frame: pd.DataFrame, bins: int = 5, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """share_any(lowest-norm bin) − share_any(highest-norm bin) of one run's augmented probe rows.

    Returns ``{gap, lo, hi, share_low, share_high, n_low, n_high}``; the interval is the percentile
    interval of ``B`` bootstrap resamples of each bin (binomial draws of its augmented count).
    """
    _check(frame)
    b = norm_bins(frame["norm"].to_numpy(), bins)
    augmented = _any(frame)
    k = int(b.max()) if len(b) else 0
    if k < 2:
        return {"gap": np.nan, "lo": np.nan, "hi": np.nan, "share_low": np.nan, "share_high": np.nan,
                "n_low": int((b == 1).sum()), "n_high": 0}
    low, high = augmented[b == 1], augmented[b == k]
    p_low, p_high = float(low.mean()), float(high.mean())
    rng = np.random.default_rng(seed)
    boot = rng.binomial(len(low), p_low, n_resamples) / len(low) - rng.binomial(len(high), p_high, n_resamples) / len(high)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return {"gap": p_low - p_high, "lo": float(lo), "hi": float(hi), "share_low": p_low, "share_high": p_high,
            "n_low": len(low), "n_high": len(high)}


def norm_change(clean: pd.DataFrame, augmented: pd.DataFrame) -> pd.DataFrame:
    """Paired ``log(norm_augmented / norm_clean)`` per augmentation group of one run and epoch.

    Rows ``augmentation`` ∈ {none, crop, lowres, photometric, any} (``none``: none of the three;
    a flag's row: every image where it was applied, possibly with others), ``n``,
    ``mean_log_ratio``, ``median_ratio`` (exp of the median log ratio).
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
    rows = []
    for name, mask in groups.items():
        v = log_ratio[mask & np.isfinite(log_ratio)]
        rows.append({"augmentation": name, "n": int(v.size),
                     "mean_log_ratio": float(v.mean()) if v.size else np.nan,
                     "median_ratio": float(np.exp(np.median(v))) if v.size else np.nan})
    return pd.DataFrame(rows)
