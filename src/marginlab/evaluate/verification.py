"""1:1 verification on pair lists (LFW-style ``.bin`` sets): 10-fold accuracy and VAL@FAR.

Protocol (as in the InsightFace and AdaFace evaluation code):

1. The caller embeds each image with flip fusion and L2-normalises; pair ``i`` is
   ``(emb1[i], emb2[i])``.
2. Distance ``d_i = ||e1_i - e2_i||²`` (squared L2, range 0..4).
3. Thresholds ``np.arange(0, 4, 0.01)`` (0, 0.01, …, 3.99); a pair is predicted *same* when
   ``d < threshold`` (strict).
4. Ten folds over the pair indices **in order, without shuffling**, with
   ``sklearn.model_selection.KFold(10, shuffle=False)`` boundaries: the first ``N % 10`` folds hold
   ``N // 10 + 1`` pairs, the rest ``N // 10``.
5. Per fold ``k``: the threshold with the highest accuracy on the other nine folds (the *first*
   maximum in threshold order wins ties), and the accuracy of the held-out fold at that threshold.
   Reported: mean and population standard deviation (``np.std``) of the ten accuracies and the mean
   of the ten chosen thresholds.

Accuracies are compared as integer counts of correct pairs (the training size is fixed per fold),
so tie-breaking is exact and never depends on floating-point rounding.

VAL@FAR (InsightFace ``calculate_val``): thresholds ``np.arange(0, 4, 0.001)``; per fold the
training FAR ``FA / n_diff`` is computed at every threshold; the threshold at which it reaches the
target is read by linear interpolation of that (non-decreasing) curve — the largest threshold whose
FAR equals the target, or the point on the grid segment where it crosses the target. (InsightFace
calls ``scipy.interpolate.interp1d(far, thr, kind='slinear')`` here, which modern SciPy rejects
because the FAR curve has repeated values; this is the well-defined rule that call approximated.)
If even the largest threshold stays below the target the threshold is 0 (as InsightFace). The
held-out fold gives ``VAL = TA / n_same`` and ``FAR = FA / n_diff``; reported are the mean and std
of VAL and the mean FAR.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = [
    "ACCURACY_THRESHOLDS",
    "VAL_THRESHOLDS",
    "fold_slices",
    "pair_distances",
    "accuracy_from_distances",
    "val_far_from_distances",
    "ten_fold_accuracy",
    "validate_pair_embeddings",
]

#: Threshold grid of the 10-fold accuracy protocol: 0, 0.01, …, 3.99.
ACCURACY_THRESHOLDS: np.ndarray = np.arange(0, 4, 0.01)
#: Threshold grid of InsightFace's VAL@FAR: 0, 0.001, …, 3.999.
VAL_THRESHOLDS: np.ndarray = np.arange(0, 4, 0.001)

_NORM_TOLERANCE = 1e-3


def fold_slices(n: int, n_folds: int = 10) -> list[slice]:
    """Contiguous fold boundaries of ``KFold(n_folds, shuffle=False)``: the first ``n % n_folds`` folds
    get ``n // n_folds + 1`` items, the others ``n // n_folds``."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if n < n_folds:
        raise ValueError(f"{n_folds}-fold evaluation needs at least {n_folds} pairs, got {n}")
    sizes = np.full(n_folds, n // n_folds, dtype=np.int64)
    sizes[: n % n_folds] += 1
    stops = np.cumsum(sizes)
    starts = stops - sizes
    return [slice(int(a), int(b)) for a, b in zip(starts, stops)]


def validate_pair_embeddings(emb1: Any, emb2: Any, issame: Any, *, name: str = "pairs") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check and convert pair embeddings: two (N, D) finite, L2-normalised arrays and N booleans."""
    e1 = np.asarray(emb1, dtype=np.float64)
    e2 = np.asarray(emb2, dtype=np.float64)
    same = np.asarray(issame)
    if e1.ndim != 2 or e2.ndim != 2:
        raise ValueError(f"{name}: embeddings must be 2-D (N, D) arrays, got shapes {e1.shape} and {e2.shape}")
    if e1.shape != e2.shape:
        raise ValueError(f"{name}: emb1 and emb2 must have the same shape, got {e1.shape} and {e2.shape}")
    if same.ndim != 1 or same.shape[0] != e1.shape[0]:
        raise ValueError(f"{name}: issame must be a 1-D array of {e1.shape[0]} booleans (one per pair), got shape {same.shape}")
    if same.dtype != np.bool_:
        if not np.isin(same, (0, 1)).all():
            raise ValueError(f"{name}: issame must be boolean (or 0/1), got values {np.unique(same)[:5]}")
        same = same.astype(bool)
    if not (np.isfinite(e1).all() and np.isfinite(e2).all()):
        raise ValueError(f"{name}: embeddings contain NaN or inf")
    for label, e in (("emb1", e1), ("emb2", e2)):
        norms = np.linalg.norm(e, axis=1)
        bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOLERANCE)
        if bad.size:
            raise ValueError(
                f"{name}: {label} must be L2-normalised (unit rows); row {bad[0]} has norm {norms[bad[0]]:.6g} "
                f"({bad.size} rows off by more than {_NORM_TOLERANCE})"
            )
    return e1, e2, same


def pair_distances(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Squared L2 distance per pair: ``sum((e1 - e2)**2, axis=1)`` (float64)."""
    diff = np.asarray(emb1, dtype=np.float64) - np.asarray(emb2, dtype=np.float64)
    return np.einsum("ij,ij->i", diff, diff)


def _check_distances(dist: Any, issame: Any) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(dist, dtype=np.float64)
    s = np.asarray(issame)
    if d.ndim != 1 or s.shape != d.shape:
        raise ValueError(f"distances and issame must be 1-D of equal length, got shapes {d.shape} and {s.shape}")
    if not np.isfinite(d).all():
        raise ValueError("distances contain NaN or inf")
    return d, s.astype(bool)


def accuracy_from_distances(
    dist: Any,
    issame: Any,
    *,
    thresholds: Optional[np.ndarray] = None,
    n_folds: int = 10,
) -> dict[str, Any]:
    """The k-fold accuracy protocol of the module docstring on precomputed distances."""
    d, same = _check_distances(dist, issame)
    thr = ACCURACY_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    folds = fold_slices(d.shape[0], n_folds)
    # correct[t, i]: pair i classified correctly at threshold t; summed per fold into integer counts.
    correct = (d[None, :] < thr[:, None]) == same[None, :]
    per_fold = np.stack([correct[:, f].sum(axis=1) for f in folds], axis=1)  # (T, K) integer counts
    total = per_fold.sum(axis=1)
    accuracies = np.empty(n_folds)
    chosen = np.empty(n_folds)
    for k, f in enumerate(folds):
        train_correct = total - per_fold[:, k]
        best = int(np.argmax(train_correct))  # first maximum wins
        chosen[k] = thr[best]
        accuracies[k] = per_fold[best, k] / (f.stop - f.start)
    return {
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "threshold_mean": float(np.mean(chosen)),
        "fold_accuracies": accuracies.tolist(),
        "fold_thresholds": chosen.tolist(),
        "pairs": int(d.shape[0]),
    }


def _threshold_at_far(far_curve: np.ndarray, thresholds: np.ndarray, target: float) -> float:
    """Largest threshold where the non-decreasing, linearly interpolated FAR curve equals ``target``."""
    if far_curve[-1] < target:
        return 0.0
    i = int(np.searchsorted(far_curve, target, side="right")) - 1  # last grid point with far <= target
    if i < 0:  # target below the FAR of the smallest threshold
        return float(thresholds[0])
    if far_curve[i] == target or i == far_curve.shape[0] - 1:
        return float(thresholds[i])
    f0, f1 = far_curve[i], far_curve[i + 1]
    t0, t1 = thresholds[i], thresholds[i + 1]
    return float(t0 + (target - f0) / (f1 - f0) * (t1 - t0))


def val_far_from_distances(
    dist: Any,
    issame: Any,
    far_target: float = 1e-3,
    *,
    thresholds: Optional[np.ndarray] = None,
    n_folds: int = 10,
) -> Optional[dict[str, float]]:
    """InsightFace VAL@FAR (module docstring). ``None`` when some fold has no genuine or no impostor pair."""
    d, same = _check_distances(dist, issame)
    thr = VAL_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    folds = fold_slices(d.shape[0], n_folds)
    vals, fars = np.empty(n_folds), np.empty(n_folds)
    for k, f in enumerate(folds):
        test = np.zeros(d.shape[0], dtype=bool)
        test[f] = True
        train_diff = np.sort(d[~test & ~same])
        test_same, test_diff = d[test & same], d[test & ~same]
        if train_diff.size == 0 or test_same.size == 0 or test_diff.size == 0:
            return None
        # FA(t) on the training impostors = number of impostor distances strictly below t.
        far_curve = np.searchsorted(train_diff, thr, side="left") / train_diff.size
        t = _threshold_at_far(far_curve, thr, far_target)
        vals[k] = np.count_nonzero(test_same < t) / test_same.size
        fars[k] = np.count_nonzero(test_diff < t) / test_diff.size
    return {"val_mean": float(np.mean(vals)), "val_std": float(np.std(vals)), "far_mean": float(np.mean(fars)), "far_target": float(far_target)}


def ten_fold_accuracy(
    emb1: Any,
    emb2: Any,
    issame: Any,
    *,
    far_target: Optional[float] = 1e-3,
    n_folds: int = 10,
) -> dict[str, Any]:
    """10-fold verification accuracy of L2-normalised pair embeddings (module docstring).

    Returns ``accuracy_mean``, ``accuracy_std`` (population std), ``threshold_mean``,
    ``fold_accuracies``, ``fold_thresholds``, ``pairs`` and, unless ``far_target`` is None,
    ``val_at_far`` = {``val_mean``, ``val_std``, ``far_mean``, ``far_target``} (``None`` when a fold
    lacks genuine or impostor pairs).
    """
    e1, e2, same = validate_pair_embeddings(emb1, emb2, issame)
    dist = pair_distances(e1, e2)
    out = accuracy_from_distances(dist, same, n_folds=n_folds)
    if far_target is not None:
        out["val_at_far"] = val_far_from_distances(dist, same, far_target, n_folds=n_folds)
    return out
