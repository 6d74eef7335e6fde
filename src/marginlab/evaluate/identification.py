"""Closed-set 1:N identification (TinyFace protocol): CMC rank-k of probes against a gallery.

Protocol (the AdaFace repository's TinyFace evaluation):

- features are flip-fused and L2-normalised; score = inner product (cosine);
- the gallery is the union of the matching gallery (``Gallery_Match``) and the distractors
  (``Gallery_Distractor``, label −1, never an identity of a probe);
- closed set: only probes whose identity occurs in the gallery are scored (others are counted in
  ``probes_without_match`` and left out, as the DIR/FAR helper of the official code does);
- the rank of a probe is ``1 +`` the number of *non-matching* gallery items scoring at least as high
  as its best-scoring matching gallery item (ties are resolved against the probe, so the result
  never depends on sort order); rank-k accuracy (CMC at k) is the share of probes with rank ≤ k.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["DISTRACTOR_LABEL", "match_ranks", "match_ranks_from_features", "cmc", "identification_rates"]

#: Label of gallery items that belong to no probe identity.
DISTRACTOR_LABEL = -1


def match_ranks(scores: Any, probe_labels: Any, gallery_labels: Any) -> np.ndarray:
    """Rank (1-based) of the true identity for each probe from a (P, G) score matrix; 0 = not in gallery."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(probe_labels)
    g = np.asarray(gallery_labels)
    if s.ndim != 2 or s.shape != (p.shape[0], g.shape[0]):
        raise ValueError(f"scores must be (probes, gallery) = ({p.shape[0]}, {g.shape[0]}), got {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    genuine = p[:, None] == g[None, :]
    best = np.where(genuine, s, -np.inf).max(axis=1, initial=-np.inf)
    better = np.count_nonzero((s >= best[:, None]) & ~genuine, axis=1)
    ranks = better + 1
    ranks[~genuine.any(axis=1)] = 0
    return ranks


def match_ranks_from_features(
    probe_feats: Any,
    probe_labels: Any,
    gallery_feats: Any,
    gallery_labels: Any,
    *,
    max_entries: int = 1 << 24,
) -> np.ndarray:
    """:func:`match_ranks` of inner-product scores, computed in probe chunks of ≤ ``max_entries`` scores."""
    pf = np.asarray(probe_feats, dtype=np.float32)
    gf = np.asarray(gallery_feats, dtype=np.float32)
    pl, gl = np.asarray(probe_labels), np.asarray(gallery_labels)
    if pf.ndim != 2 or gf.ndim != 2 or pf.shape[1] != gf.shape[1]:
        raise ValueError(f"probe and gallery features must be (P, D) and (G, D), got {pf.shape} and {gf.shape}")
    if pl.shape != (pf.shape[0],) or gl.shape != (gf.shape[0],):
        raise ValueError(f"labels must have one entry per feature row, got {pl.shape} for {pf.shape[0]} probes, {gl.shape} for {gf.shape[0]} gallery")
    if np.any(pl == DISTRACTOR_LABEL):
        raise ValueError(f"probe labels must not use the distractor label {DISTRACTOR_LABEL}")
    rows = max(1, max_entries // max(1, gf.shape[0]))
    ranks = np.empty(pf.shape[0], dtype=np.int64)
    for start in range(0, pf.shape[0], rows):
        sl = slice(start, start + rows)
        ranks[sl] = match_ranks(pf[sl] @ gf.T, pl[sl], gl)
    return ranks


def cmc(ranks: Any, ks: Sequence[int]) -> dict[int, float]:
    """Rank-k identification rate for each k over probes with a match (rank > 0)."""
    r = np.asarray(ranks)
    r = r[r > 0]
    if r.size == 0:
        raise ValueError("no probe has a matching identity in the gallery; closed-set identification is undefined")
    out = {}
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"ranks must be >= 1, got {k}")
        out[int(k)] = float(np.count_nonzero(r <= int(k)) / r.size)
    return out


def identification_rates(
    probe_feats: Any,
    probe_labels: Any,
    gallery_feats: Any,
    gallery_labels: Any,
    ranks: Sequence[int] = (1, 5),
) -> dict[str, Any]:
    """Closed-set CMC of L2-normalised features: ``{"rank1": …, "rank5": …, "probes", "probes_without_match",
    "gallery", "distractors"}``."""
    r = match_ranks_from_features(probe_feats, probe_labels, gallery_feats, gallery_labels)
    rates = cmc(r, ranks)
    gl = np.asarray(gallery_labels)
    out: dict[str, Any] = {f"rank{k}": v for k, v in rates.items()}
    out.update(
        probes=int(np.count_nonzero(r > 0)),
        probes_without_match=int(np.count_nonzero(r == 0)),
        gallery=int(gl.shape[0]),
        distractors=int(np.count_nonzero(gl == DISTRACTOR_LABEL)),
    )
    return out
