"""How well a detected alignment matches the truth, in pixels of the aligned crop.

For an image whose true five landmarks ``true`` are known (synthetic scenes), alignment from the
detected landmarks ``detected`` applies the similarity ``M = fit(detected -> template)``; the true
landmarks land at ``M(true)`` in the ``size`` crop.  :func:`aligned_landmark_error` is the mean over
the five points of ``|M(true) - template|``.  Even a perfect detector leaves a floor: a face's own
landmarks are not exactly the template (identity shape, expression, yaw), and the least-squares fit
from the true points leaves ``|M_true(true) - template|`` (:func:`alignment_floor`).
"""

from __future__ import annotations

import numpy as np

from marginlab.data.formats.five_point_alignment import (
    arcface_template,
    estimate_similarity,
    transform_points,
)

__all__ = ["aligned_landmark_error", "alignment_floor"]


def aligned_landmark_error(detected: np.ndarray, true: np.ndarray, size: int = 112) -> float:
    """Mean distance (pixels of the ``size`` crop) between the true landmarks warped with the
    detected alignment and the template points."""
    template = arcface_template(size)
    m = estimate_similarity(np.asarray(detected, dtype=np.float64).reshape(5, 2), template)
    moved = transform_points(m, np.asarray(true, dtype=np.float64).reshape(5, 2))
    return float(np.linalg.norm(moved - template, axis=1).mean())


def alignment_floor(true: np.ndarray, size: int = 112) -> float:
    """:func:`aligned_landmark_error` of a perfect detector (the true landmarks themselves)."""
    return aligned_landmark_error(true, true, size)
