"""Summary statistics of the quality scores (``data/quality/summary.json``).

Per split, and for all images together (key ``"all"``):

- ``count`` (rows), ``scored`` (finite BRISQUE), ``nan`` (undefined: constant or too-small images);
- for ``brisque`` and ``iq``: ``mean``, ``std`` (sample, ddof = 1), ``min``, ``max``, quantiles
  (5, 25, 50, 75, 95 %) and a histogram with fixed edges so splits are comparable: BRISQUE on
  ``BRISQUE_EDGES`` (-20 … 160 in steps of 10, plus ``below``/``above`` counts outside), IQ on
  ``IQ_EDGES`` (0 … 1 in steps of 0.05; IQ is always inside);
- on synthetic data (ground truth given): ``spearman_iq_gt`` — Spearman's rank correlation of IQ with
  ``gt_quality`` (higher quality should give higher IQ, so a good scorer is positive), overall and
  ``by_degradation[type]`` over the images whose degradations include that type, plus ``clean``
  (images with no degradation) counts and mean IQ. Correlations need >= 3 images and non-constant
  values, otherwise ``null``.

IQ is :func:`marginlab.quality.iq_from_brisque` (1 - clip(BRISQUE, 0, 100) / 100).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
BRISQUE_EDGES = np.arange(-20.0, 160.0 + 1e-9, 10.0)
IQ_EDGES = np.linspace(0.0, 1.0, 21)
DEGRADATION_TYPES = ("blur", "low_resolution", "noise", "jpeg", "exposure")
MIN_CORRELATION_N = 3


def _stats(values: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "quantiles": {},
                "histogram": {"edges": edges.tolist(), "counts": [0] * (len(edges) - 1), "below": 0, "above": 0}}
    counts, _ = np.histogram(v, bins=edges)  # values outside the edges are not counted here...
    below, above = int((v < edges[0]).sum()), int((v > edges[-1]).sum())  # ...but here
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
        "quantiles": {f"q{round(q * 100):02d}": float(np.quantile(v, q)) for q in QUANTILES},
        "histogram": {"edges": edges.tolist(), "counts": counts.astype(int).tolist(), "below": below, "above": above},
    }


def spearman(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Spearman's rho of the finite pairs; None with fewer than 3 pairs or a constant side."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < MIN_CORRELATION_N or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def _degradation_sets(values: pd.Series) -> list[Optional[frozenset[str]]]:
    out: list[Optional[frozenset[str]]] = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(None)  # unknown
        else:
            out.append(frozenset(t for t in str(v).split("+") if t))
    return out


def correlation_summary(iq: np.ndarray, gt: np.ndarray, degradations: Optional[pd.Series],
                        types: Sequence[str] = DEGRADATION_TYPES) -> dict[str, Any]:
    """``spearman_iq_gt`` overall and per degradation type (images whose degradations include it)."""
    out: dict[str, Any] = {"n": int((np.isfinite(iq) & np.isfinite(gt)).sum()), "spearman_iq_gt": spearman(iq, gt)}
    if degradations is None:
        return out
    sets = _degradation_sets(degradations)
    known = np.array([s is not None for s in sets])
    clean = np.array([s is not None and not s for s in sets])
    out["clean"] = {"n": int(clean.sum()), "mean_iq": float(np.nanmean(iq[clean])) if clean.any() else None}
    out["degraded"] = {"n": int((known & ~clean).sum()),
                       "mean_iq": float(np.nanmean(iq[known & ~clean])) if (known & ~clean).any() else None}
    by_type = {}
    for t in types:
        mask = np.array([s is not None and t in s for s in sets])
        by_type[t] = {"n": int(mask.sum()), "mean_iq": float(np.nanmean(iq[mask])) if mask.any() else None,
                      "spearman_iq_gt": spearman(iq[mask], gt[mask])}
    out["by_degradation"] = by_type
    return out


def summarize_scores(scores: pd.DataFrame, ground_truth: Optional[pd.DataFrame] = None,
                     types: Sequence[str] = DEGRADATION_TYPES) -> dict[str, Any]:
    """Summary dict (see the module docstring) of a ``split, index, brisque, iq`` table."""
    missing = {"split", "index", "brisque", "iq"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores table lacks column(s) {sorted(missing)}; expected split, index, brisque, iq")
    merged = scores
    has_gt = ground_truth is not None and len(ground_truth) > 0
    if has_gt:
        gt = ground_truth[["split", "index", "gt_quality"] +
                          (["degradations"] if "degradations" in ground_truth.columns else [])]
        merged = scores.merge(gt.drop_duplicates(["split", "index"]), on=["split", "index"], how="left")
    groups: list[tuple[str, pd.DataFrame]] = [(str(k), g) for k, g in merged.groupby("split", sort=False)]
    groups.append(("all", merged))
    splits: dict[str, Any] = {}
    for name, frame in groups:
        b = frame["brisque"].to_numpy(np.float64)
        iq = frame["iq"].to_numpy(np.float64)
        entry: dict[str, Any] = {
            "count": len(frame),
            "scored": int(np.isfinite(b).sum()),
            "nan": int((~np.isfinite(b)).sum()),
            "brisque": _stats(b, BRISQUE_EDGES),
            "iq": _stats(iq, IQ_EDGES),
        }
        if has_gt and frame["gt_quality"].notna().any():
            known = frame["gt_quality"].notna().to_numpy()
            entry["ground_truth"] = correlation_summary(
                iq[known], frame["gt_quality"].to_numpy(np.float64)[known],
                frame["degradations"][known] if "degradations" in frame.columns else None, types)
        splits[name] = entry
    return {
        "iq_definition": "IQ = 1 - clip(BRISQUE, 0, 100) / 100 (higher = better)",
        "num_images": len(scores),
        "splits": splits,
    }


__all__ = ["BRISQUE_EDGES", "DEGRADATION_TYPES", "IQ_EDGES", "correlation_summary", "spearman", "summarize_scores"]
