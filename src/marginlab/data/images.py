"""Image decoding/encoding and 5-point face alignment.

Channel order: every function here takes and returns **RGB** ``uint8`` arrays of shape (H, W, 3).
OpenCV is used for speed, and the BGR<->RGB swap is done here so no caller ever sees BGR; a model
trained on BGR input (the InsightFace convention) converts in its input pipeline
(``marginlab.data.datasets.to_model_input``).

Decoding ignores EXIF orientation: the stored pixel grid is returned, as PIL and MXNet decode it and
as the landmark files of IJB refer to it.

Alignment (:func:`align_face`) estimates the least-squares similarity transform (rotation, uniform
scale, translation; Umeyama 1991) from five detected landmarks to the ArcFace template and warps with
bilinear interpolation and a black border, which is what InsightFace's ``norm_crop`` does for the
released MS1MV2/IJB crops.
"""

from __future__ import annotations

import cv2
import numpy as np

from marginlab.data.errors import CorruptImageError

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "ARCFACE_TEMPLATE_96x112",
    "align_face",
    "arcface_template",
    "decode_image",
    "encode_jpeg",
    "encode_png",
    "estimate_similarity",
    "is_jpeg",
    "is_png",
    "transform_points",
]

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

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The end-of-image marker must sit in the last bytes of a complete JPEG (some writers append a few
# padding bytes after it); entropy-coded data can never contain FF D9, so its absence there means
# the file was cut short.
_EOI_SEARCH_TAIL = 1024
_DECODE_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION


def is_jpeg(data: bytes) -> bool:
    """True when ``data`` starts with the JPEG start-of-image marker (FF D8)."""
    return bytes(data[:2]) == _JPEG_SOI


def is_png(data: bytes) -> bool:
    """True when ``data`` starts with the 8-byte PNG signature."""
    return bytes(data[:8]) == _PNG_SIGNATURE


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, *, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, ...) to an RGB ``uint8`` array (H, W, 3).

    Grayscale images are expanded to three equal channels and alpha is dropped.  Raises
    :class:`CorruptImageError` naming ``source`` when the bytes are empty, are not an image, or are a
    JPEG without its end-of-image marker (truncated; OpenCV would otherwise return a grey-filled
    partial image).
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise CorruptImageError(
                f"{source}: expected encoded image bytes (1-D uint8 array), got array "
                f"dtype={data.dtype} shape={data.shape}"
            )
        buf = data
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise CorruptImageError(f"{source}: empty image data (0 bytes)")
    head = buf[:2].tobytes()
    if head == _JPEG_SOI and _JPEG_EOI not in buf[-_EOI_SEARCH_TAIL:].tobytes():
        raise CorruptImageError(
            f"{source}: truncated JPEG ({buf.size} bytes, no end-of-image marker FF D9 at the end)"
        )
    image = cv2.imdecode(buf, _DECODE_FLAGS)
    if image is None:
        raise CorruptImageError(
            f"{source}: could not decode {buf.size} bytes as an image (first bytes {buf[:8].tobytes()!r})"
        )
    return image


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what}: expected an RGB uint8 array (H, W, 3), got dtype={image.dtype} shape={image.shape}")
    return image


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB ``uint8`` (H, W, 3) array as baseline JPEG at ``quality`` (1..100)."""
    image = _check_rgb(image, "encode_jpeg")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"encode_jpeg: quality must be in 1..100, got {quality}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV only fails here on invalid input, excluded above
        raise RuntimeError("cv2.imencode failed to encode JPEG")
    return buf.tobytes()


def encode_png(image: np.ndarray) -> bytes:
    """Encode an RGB ``uint8`` (H, W, 3) array as lossless PNG."""
    image = _check_rgb(image, "encode_png")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover
        raise RuntimeError("cv2.imencode failed to encode PNG")
    return buf.tobytes()


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
