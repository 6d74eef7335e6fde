"""IJB-B/C-style 1:1 template verification: template fusion, pair scores, TAR@FAR and ROC data.

Protocol (InsightFace's ``IJB_11.py`` evaluation, as used by the AdaFace repository):

1. Image feature ``f_i = emb(img_i) + emb(flip(img_i))``, unnormalised (see :mod:`.embed`).
2. Fusion mode (named in every output):

   - ``norm`` (default, AdaFace): features keep their norm, so a low-quality (low-norm) image
     contributes little to its template;
   - ``mean``: every image feature is L2-normalised first (norm-unaware: all images count alike);
   - ``detector``: features (unnormalised) are multiplied by the detector score of the face.

3. Features of the same media (video frames of one clip, or one still) in a template are averaged;
   the template feature is the **sum** of its media features, then L2-normalised.
4. Score of a template pair = dot product of the two template features.
5. ROC with ``sklearn.metrics.roc_curve``; the TAR at a FAR is the TPR of the ROC point whose FPR is
   nearest to it (``argmin |fpr − far|``). Ties (several ROC points at the same distance: a vertical
   ROC segment at one FPR, or a FAR exactly halfway between two points) go to the point *latest* in
   sklearn's order, i.e. the highest TPR — what InsightFace's ``flipud`` + ``min`` over
   ``(|fpr − far|, index)`` does. At an FPR of exactly ``k / n_impostor`` that is the largest TPR
   reachable while accepting ``k`` impostors.

   ``roc_curve`` is called with ``drop_intermediate=False`` by default, unlike InsightFace (which
   keeps sklearn's default ``True``). Dropping collinear points removes the corners of horizontal ROC
   runs, so on a sparse ROC the nearest remaining point can lie far from the requested FAR (e.g. with
   10 impostors, FAR 0.3 would be read at FPR 0.4, where the TPR is higher). On IJB-B/C-sized sets
   (millions of impostors) both settings agree; pass ``drop_intermediate=True`` to reproduce
   InsightFace exactly.

A FAR is *supported* by a set with ``n`` impostor pairs when ``n · far ≥ 1`` (at least one impostor
pair may be accepted); TARs at unsupported FARs are still reported (nearest point) but flagged.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.metrics import roc_curve

__all__ = [
    "FUSION_MODES",
    "far_key",
    "fuse_templates",
    "template_pair_scores",
    "tar_at_far",
    "supported_fars",
    "roc_points",
    "evaluate_templates",
]

FUSION_MODES: tuple[str, ...] = ("norm", "mean", "detector")

_EPS = 1e-12


def far_key(far: float) -> str:
    """Stable JSON key of a FAR: ``1e-4`` → ``"1e-04"``, ``0.25`` → ``"2.5e-01"`` (shortest exact form)."""
    for digits in range(0, 17):
        key = f"{far:.{digits}e}"
        if float(key) == far:
            return key
    return repr(float(far))


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, _EPS)


def fuse_templates(
    features: Any,
    template_ids: Any,
    media_ids: Any,
    *,
    mode: str = "norm",
    detector_scores: Optional[Any] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Template features from image features (module docstring, steps 2–3).

    ``features`` (N, D) unnormalised image features; ``template_ids``, ``media_ids`` (N,) integers;
    ``detector_scores`` (N,) needed for mode ``detector``. Returns ``(tids, feats)``: the sorted unique
    template ids and their L2-normalised (T, D) float64 features (an all-zero template stays zero).
    """
    if mode not in FUSION_MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; allowed: {', '.join(FUSION_MODES)}")
    x = np.asarray(features, dtype=np.float64)
    tids = np.asarray(template_ids)
    mids = np.asarray(media_ids)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    n = x.shape[0]
    if tids.shape != (n,) or mids.shape != (n,):
        raise ValueError(f"template_ids and media_ids must have shape ({n},), got {tids.shape} and {mids.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    if n == 0:
        raise ValueError("no image features to fuse")
    if mode == "mean":
        x = _l2_normalise(x)
    elif mode == "detector":
        if detector_scores is None:
            raise ValueError("fusion mode 'detector' needs detector_scores (one per image)")
        s = np.asarray(detector_scores, dtype=np.float64)
        if s.shape != (n,) or not np.isfinite(s).all():
            raise ValueError(f"detector_scores must be ({n},) finite values, got shape {s.shape}")
        x = x * s[:, None]
    # media groups are (template, media) pairs: the same media id in two templates is two groups.
    media_keys, media_of_image = np.unique(np.stack([tids, mids], axis=1), axis=0, return_inverse=True)
    media_of_image = media_of_image.reshape(-1)
    counts = np.bincount(media_of_image, minlength=media_keys.shape[0]).astype(np.float64)
    avg = sp.csr_matrix((1.0 / counts[media_of_image], (media_of_image, np.arange(n))), shape=(media_keys.shape[0], n))
    media_feats = avg @ x
    unique_tids, template_of_media = np.unique(media_keys[:, 0], return_inverse=True)
    template_of_media = template_of_media.reshape(-1)
    summ = sp.csr_matrix(
        (np.ones(media_keys.shape[0]), (template_of_media, np.arange(media_keys.shape[0]))),
        shape=(unique_tids.shape[0], media_keys.shape[0]),
    )
    return unique_tids, _l2_normalise(np.asarray(summ @ media_feats))


def template_pair_scores(
    template_ids: Any,
    template_feats: Any,
    tid1: Any,
    tid2: Any,
    *,
    chunk: int = 4096,
) -> np.ndarray:
    """Dot-product score of each template pair ``(tid1[k], tid2[k])``.

    Memory-bound gathers, so features are scored in float32 (score error ~1e-7, far below any
    threshold step that matters) in chunks of ``chunk`` pairs that stay in cache; float64 output.
    """
    ids = np.asarray(template_ids)
    feats = np.ascontiguousarray(template_feats, dtype=np.float32)
    a, b = np.asarray(tid1), np.asarray(tid2)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"tid1 and tid2 must be 1-D of equal length, got {a.shape} and {b.shape}")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]

    def locate(t: np.ndarray, which: str) -> np.ndarray:
        pos = np.clip(np.searchsorted(sorted_ids, t), 0, max(len(sorted_ids) - 1, 0))
        missing = sorted_ids[pos] != t if len(sorted_ids) else np.ones(t.shape, bool)
        if np.any(missing):
            unknown = np.unique(t[missing])
            raise KeyError(f"{which} names {unknown.size} template id(s) without images, e.g. {unknown[:5].tolist()}")
        return order[pos]

    ia, ib = locate(a, "tid1"), locate(b, "tid2")
    out = np.empty(a.shape[0], dtype=np.float64)
    for start in range(0, a.shape[0], chunk):
        sl = slice(start, start + chunk)
        out[sl] = np.einsum("ij,ij->i", feats[ia[sl]], feats[ib[sl]])
    return out


def _check_scores(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got shapes {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"labels must be 0/1 (impostor/genuine), got values {np.unique(y)[:5].tolist()}")
        y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(f"ROC needs both genuine and impostor pairs; got {int(y.sum())} genuine, {int((~y).sum())} impostor")
    return s, y


def _check_fars(fars: Iterable[float]) -> list[float]:
    out = [float(f) for f in fars]
    for f in out:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"FAR values must be in (0, 1], got {f}")
    return out


def tar_at_far(scores: Any, labels: Any, fars: Sequence[float], *, drop_intermediate: bool = False) -> dict[float, float]:
    """``{far: tar}`` read at the ROC point nearest to each FAR (ties: highest TPR; module docstring)."""
    s, y = _check_scores(scores, labels)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=drop_intermediate)
    result: dict[float, float] = {}
    for far in _check_fars(fars):
        dist = np.abs(fpr - far)
        idx = len(dist) - 1 - int(np.argmin(dist[::-1]))  # last of the nearest points
        result[far] = float(tpr[idx])
    return result


def supported_fars(n_impostor: int, fars: Sequence[float]) -> list[float]:
    """FARs the set can resolve: ``n_impostor · far ≥ 1`` (with a relative tolerance of 1e-9)."""
    if n_impostor < 0:
        raise ValueError(f"n_impostor must be >= 0, got {n_impostor}")
    return [f for f in _check_fars(fars) if n_impostor * f >= 1.0 - 1e-9]


def roc_points(scores: Any, labels: Any, max_points: int = 2000) -> pd.DataFrame:
    """ROC curve (fpr, tpr, threshold) for plotting, downsampled to at most ``max_points`` rows.

    Half of the kept points are evenly spaced along the curve (linear axes), half are the points
    nearest to a log-spaced FPR grid (log-FAR plots); both ends are always kept.
    """
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, got {max_points}")
    s, y = _check_scores(scores, labels)
    fpr, tpr, thr = roc_curve(y, s)
    n = fpr.shape[0]
    if n > max_points:
        half = max_points // 2
        lin = np.round(np.linspace(0, n - 1, half)).astype(np.int64)
        positive = fpr[fpr > 0]
        lo = positive.min() if positive.size else 1.0
        grid = np.geomspace(lo, 1.0, max_points - half)
        log = np.clip(np.searchsorted(fpr, grid, side="left"), 0, n - 1)
        idx = np.unique(np.concatenate([lin, log]))
        fpr, tpr, thr = fpr[idx], tpr[idx], thr[idx]
    return pd.DataFrame({"fpr": fpr.astype(np.float64), "tpr": tpr.astype(np.float64), "threshold": thr.astype(np.float64)})


def evaluate_templates(
    features: Any,
    faces: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    fusion: str = "norm",
    fars: Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    max_roc_points: int = 2000,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Full IJB-style 1:1 evaluation of one set.

    ``features`` (N, D) flip-fused unnormalised features, one per row of ``faces`` (columns ``tid``,
    ``mid`` and, for fusion ``detector``, ``score``); ``pairs`` has columns ``tid1``, ``tid2``,
    ``label`` (1 genuine, 0 impostor). Returns the metrics dict (``fusion``, ``tar_at_far`` keyed by
    :func:`far_key`, ``supported_fars``, ``templates``, ``pairs``, ``genuine``, ``impostor``) and the
    downsampled ROC frame.
    """
    for col in ("tid", "mid"):
        if col not in faces.columns:
            raise ValueError(f"faces table lacks column {col!r} (has {list(faces.columns)})")
    for col in ("tid1", "tid2", "label"):
        if col not in pairs.columns:
            raise ValueError(f"pairs table lacks column {col!r} (has {list(pairs.columns)})")
    feats = np.asarray(features)
    if feats.ndim != 2 or feats.shape[0] != len(faces):
        raise ValueError(f"features must have one row per face ({len(faces)}), got shape {feats.shape}")
    det = faces["score"].to_numpy() if fusion == "detector" and "score" in faces.columns else None
    tids, tfeats = fuse_templates(feats, faces["tid"].to_numpy(), faces["mid"].to_numpy(), mode=fusion, detector_scores=det)
    scores = template_pair_scores(tids, tfeats, pairs["tid1"].to_numpy(), pairs["tid2"].to_numpy())
    labels = pairs["label"].to_numpy()
    fars = _check_fars(fars)
    tars = tar_at_far(scores, labels, fars)
    n_genuine = int(np.count_nonzero(labels == 1))
    n_impostor = int(labels.shape[0] - n_genuine)
    metrics = {
        "fusion": fusion,
        "tar_at_far": {far_key(f): tars[f] for f in fars},
        "supported_fars": [far_key(f) for f in supported_fars(n_impostor, fars)],
        "templates": int(tids.shape[0]),
        "pairs": int(labels.shape[0]),
        "genuine": n_genuine,
        "impostor": n_impostor,
    }
    return metrics, roc_points(scores, labels, max_roc_points)
