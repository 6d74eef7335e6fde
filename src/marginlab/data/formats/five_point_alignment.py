"""Five-point face alignment to the ArcFace template.

:func:`align_face` estimates the least-squares similarity transform (rotation, uniform scale,
translation; Umeyama 1991) from five detected landmarks to the ArcFace template and warps with
bilinear interpolation and a black border, which is what InsightFace's ``norm_crop`` does for the
released MS1MV2/IJB crops.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["ARCFACE_TEMPLATE_112", "ARCFACE_TEMPLATE_96x112", "align_face", "arcface_template", "estimate_similarity",
           "transform_points"]

#: Five landmarks (left eye, right eye, nose tip, left and right mouth corner) of the 96x112 crop
#: used by SphereFace/ArcFace; (x, y) in pixels.
ARCFACE_TEMPLATE_96x112 = np.array(
    [
        [30.2946, 51.6963],
        [65.5318, 51.5014],
        [48.0252, 71.7366],
        [33.5493, 92.3655],
        [62.7299, 92.2041],
    ],
    dtype=np.float64,
)

#: The same template for the square 112x112 crop: x + 8.0 (the 96-wide crop centred in 112).
ARCFACE_TEMPLATE_112 = ARCFACE_TEMPLATE_96x112 + np.array([8.0, 0.0])


def arcface_template(size: int = 112) -> np.ndarray:
    """The 5-point ArcFace template for a ``size`` x ``size`` crop: the 112 template scaled by size/112."""
    if int(size) <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    return ARCFACE_TEMPLATE_112 * (float(size) / 112.0)


def _as_points(points: np.ndarray, what: str) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.size % 2 == 0:
        pts = pts.reshape(-1, 2)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 2:
        raise ValueError(f"{what}: expected points of shape (N, 2) with N >= 2, got shape {np.shape(points)}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{what}: points contain NaN or infinity: {pts.tolist()}")
    return pts


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` (Umeyama 1991).

    Minimises ``sum_i || s R src_i + t - dst_i ||^2`` over scale s > 0, rotation R (det +1) and
    translation t.  With centred points X (src) and Y (dst), ``Sigma = Y^T X / N = U D V^T``;
    ``S = diag(1, det(U) det(V))``; ``R = U S V^T``; ``s = tr(D S) / var(X)``; ``t = mean(dst) - s R
    mean(src)``.  Returns the 2x3 matrix ``[s R | t]`` (``cv2.warpAffine`` convention).
    """
    src = _as_points(src, "similarity source")
    dst = _as_points(dst, "similarity target")
    if src.shape != dst.shape:
        raise ValueError(f"similarity: source and target shapes differ: {src.shape} vs {dst.shape}")
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    x, y = src - mu_src, dst - mu_dst
    var_src = float((x**2).sum(axis=1).mean())
    if var_src <= 1e-12:
        raise ValueError(f"similarity: source points are all identical ({src[0].tolist()}); no transform exists")
    sigma = y.T @ x / src.shape[0]
    u, d, vt = np.linalg.svd(sigma)
    s = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[1, 1] = -1.0
    rotation = u @ s @ vt
    scale = float(np.trace(np.diag(d) @ s)) / var_src
    translation = mu_dst - scale * rotation @ mu_src
    return np.hstack([scale * rotation, translation[:, None]])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine ``matrix`` to (N, 2) points."""
    pts = _as_points(points, "transform_points")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"transform_points: expected a 2x3 matrix, got shape {m.shape}")
    return pts @ m[:, :2].T + m[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp a face to the ArcFace ``size`` x ``size`` crop from its five landmarks.

    ``image``: RGB ``uint8`` (H, W, 3) (any channel order is preserved); ``landmarks``: (5, 2) or (10,)
    pixel coordinates (x, y) in the order left eye, right eye, nose, left mouth, right mouth (the
    order of ``ARCFACE_TEMPLATE_112``).  The similarity transform is the least-squares fit of
    :func:`estimate_similarity`; the warp is bilinear with a black (0) border.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"align_face: expected a uint8 image (H, W, 3), got dtype={image.dtype} shape={image.shape}")
    pts = _as_points(landmarks, "align_face landmarks")
    if pts.shape != (5, 2):
        raise ValueError(f"align_face: expected 5 landmarks (5, 2) or 10 numbers, got shape {np.shape(landmarks)}")
    matrix = estimate_similarity(pts, arcface_template(size))
    return cv2.warpAffine(
        image,
        matrix,
        (int(size), int(size)),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
