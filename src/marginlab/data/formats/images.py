"""Image decoding/encoding, bringing images to one square size, and 5-point face alignment.

Channel order: every function here takes and returns **RGB** ``uint8`` arrays of shape (H, W, 3).
OpenCV is used for speed, and the BGR<->RGB swap is done here so no caller ever sees BGR; a model
trained on BGR input (the InsightFace convention) converts in its input pipeline
(``marginlab.data.model_input.to_model_input``).

Decoding ignores EXIF orientation: the stored pixel grid is returned, as PIL and MXNet decode it and
as the landmark files of IJB refer to it.

One size (:func:`square_resize`, :func:`conform_encoded`): the prepare stage brings every ingested
image to ``size`` x ``size`` once. A non-square image becomes square by a centre crop (the central
``min(H, W)`` rows/columns; an odd excess leaves the extra row/column on the bottom/right side) or by
padding with black (``pad``; the extra row/column of an odd excess goes to the bottom/right), then is
resized with area interpolation when shrinking and bilinear when enlarging. An image already at that
size is returned unchanged (and its encoded bytes are kept as they are).

Decompression bombs (:func:`image_header_size`, ``max_pixels``): a small file may declare a huge
image (a 0.9 MB PNG of 30000 x 30000 pixels decodes to 2.7 GB), so every decode first reads width x
height from the encoded header and refuses an image above ``max_pixels`` (``data.max_image_pixels``)
with :class:`ImageTooLargeError`, without decoding it.  Bytes whose size no header gives are refused
too (OpenCV would have to decode them to tell).

Decoder warnings (:func:`decode_image_checked`): libjpeg reports recoverable damage such as "Corrupt
JPEG data: 2 extraneous bytes before marker 0xd9" only by printing to the C ``stderr``; OpenCV does
not expose it. The checked decode points file descriptor 2 at a temporary file for the duration of
one ``cv2.imdecode`` call and returns what the decoder printed, so prepare can count and name those
images. It is meant for single-threaded ingest, not for the training loader.

Alignment (:func:`align_face`) estimates the least-squares similarity transform (rotation, uniform
scale, translation; Umeyama 1991) from five detected landmarks to the ArcFace template and warps with
bilinear interpolation and a black border, which is what InsightFace's ``norm_crop`` does for the
released MS1MV2/IJB crops.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import sys
import tempfile
import threading
from typing import Literal

import cv2
import numpy as np

from marginlab.data.formats.errors import CorruptImageError, ImageTooLargeError

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "RESIZE_MODES",
    "ARCFACE_TEMPLATE_96x112",
    "ImagePolicy",
    "align_face",
    "arcface_template",
    "check_image_size",
    "conform_encoded",
    "decode_image",
    "decode_image_checked",
    "encode_jpeg",
    "encode_png",
    "estimate_similarity",
    "image_header_size",
    "is_jpeg",
    "is_png",
    "square_resize",
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

#: The default of ``data.max_image_pixels`` (:class:`marginlab.config.DataConfig`): the largest
#: width x height decoded.  200 MP exceeds every camera photo.
DEFAULT_MAX_IMAGE_PIXELS = 200_000_000


def is_jpeg(data: bytes) -> bool:
    """True when ``data`` starts with the JPEG start-of-image marker (FF D8)."""
    return bytes(data[:2]) == _JPEG_SOI


def is_png(data: bytes) -> bool:
    """True when ``data`` starts with the 8-byte PNG signature."""
    return bytes(data[:8]) == _PNG_SIGNATURE


def decode_image(
    data: bytes | bytearray | memoryview | np.ndarray,
    *,
    source: str = "<bytes>",
    exif_orientation: bool = False,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, ...) to an RGB ``uint8`` array (H, W, 3).

    Grayscale images are expanded to three equal channels and alpha is dropped.  The EXIF orientation
    tag is ignored (aligned crops are stored upright), unless ``exif_orientation``: then the image is
    turned as the tag says, as a viewer shows it (raw camera photos, ``data.align: detect``).  Raises
    :class:`CorruptImageError` naming ``source`` when the bytes are empty, are not an image, or are a
    JPEG without its end-of-image marker (truncated; OpenCV would otherwise return a grey-filled
    partial image), and its subclass :class:`ImageTooLargeError` when the header declares more than
    ``max_pixels`` pixels (checked before decoding: see the module docstring).
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
    check_image_size(data if isinstance(data, bytes) else buf, source=source, max_pixels=max_pixels)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB if exif_orientation else _DECODE_FLAGS)
    if image is None:
        raise CorruptImageError(
            f"{source}: could not decode {buf.size} bytes as an image (first bytes {buf[:8].tobytes()!r})"
        )
    return image


# --------------------------------------------------------------------------- declared size
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn (C4 DHT, C8 JPG, CC DAC are not frames)
_TEXT_HEADER = 4096  # netpbm, PAM and Radiance headers are a few short lines
_NETPBM = re.compile(rb"P[1-6Ff]\s")  # P1..P6 and PFM: width and height are the next two numbers
_PIL_FORMATS = ("BMP", "TIFF", "GIF", "JPEG2000", "SUN", "AVIF")  # the other formats OpenCV decodes
_PIL_LOCK = threading.Lock()


def image_header_size(data: bytes | bytearray | memoryview | np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` declared by the header of encoded image bytes, without decoding any pixel.

    PNG (IHDR), JPEG (the first frame header; other segments and stray bytes skipped as libjpeg skips
    them), WebP (VP8, VP8L, VP8X), netpbm, PFM, PAM and Radiance HDR are read here; BMP, TIFF, GIF, JPEG
    2000, Sun raster and AVIF by PIL's lazy ``Image.open``, which parses only the header (PIL's WebP
    opener would allocate the canvas, hence WebP here).  ``None`` when no header gives a size.
    """
    b = data if isinstance(data, bytes) else data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if b[:8] == _PNG_SIGNATURE:
        return (_uint(b, 16, 4), _uint(b, 20, 4)) if len(b) >= 24 and b[12:16] == b"IHDR" else None
    if b[:2] == _JPEG_SOI:
        return _jpeg_size(b)
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        return _webp_size(b)
    if b[:1] in (b"P", b"#"):
        return _text_header_size(b[:_TEXT_HEADER])
    return _pil_size(b)


def _uint(b: bytes, at: int, n: int, order: Literal["big", "little"] = "big") -> int:
    return int.from_bytes(b[at : at + n], order)


def _jpeg_size(b: bytes) -> tuple[int, int] | None:
    i, n = 2, len(b)
    while True:
        i = b.find(b"\xff", i)  # bytes before a marker are skipped, as libjpeg skips them
        if i < 0:
            return None
        while i < n and b[i] == 0xFF:  # fill bytes
            i += 1
        if i + 3 > n:
            return None
        marker = b[i]
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:  # stuffed zero, TEM, RSTn: no length field
            i += 1
        elif marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        elif marker in _JPEG_SOF:  # length (2), precision (1), height (2), width (2)
            return (_uint(b, i + 6, 2), _uint(b, i + 4, 2)) if i + 8 <= n else None
        else:
            i += 1 + _uint(b, i + 1, 2)  # the length counts its own two bytes


def _webp_size(b: bytes) -> tuple[int, int] | None:
    if len(b) < 30:
        return None
    chunk = b[12:16]
    if chunk == b"VP8X":  # extended: canvas width - 1 and height - 1, 24 bits each
        return 1 + _uint(b, 24, 3, "little"), 1 + _uint(b, 27, 3, "little")
    if chunk == b"VP8L" and b[20] == 0x2F:  # lossless: 14 bits each, minus one
        bits = _uint(b, 21, 4, "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and b[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14 bits each (2 bits of scale)
        return _uint(b, 26, 2, "little") & 0x3FFF, _uint(b, 28, 2, "little") & 0x3FFF
    return None


def _text_header_size(head: bytes) -> tuple[int, int] | None:
    if head[:3] == b"P7\n":  # PAM: "WIDTH w" and "HEIGHT h" lines
        w, h = (re.search(rb"^" + key + rb"[ \t]+(\d+)", head, re.MULTILINE) for key in (b"WIDTH", b"HEIGHT"))
        return (int(w[1]), int(h[1])) if w and h else None
    if _NETPBM.match(head):
        tokens = re.sub(rb"#[^\n]*", b" ", head[2:]).split()[:2]  # "#" starts a comment
        return (int(tokens[0]), int(tokens[1])) if len(tokens) == 2 and all(t.isdigit() for t in tokens) else None
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):  # a blank line ends the header, then e.g. "-Y rows +X cols"
        m = re.search(rb"\n\n[-+]([XY]) (\d+) [-+][XY] (\d+)", head)
        if m:
            first, second = int(m[2]), int(m[3])
            return (second, first) if m[1] == b"Y" else (first, second)
    return None


def _pil_size(b: bytes) -> tuple[int, int] | None:
    from PIL import Image

    Image.init()
    formats = [f for f in _PIL_FORMATS if f in Image.OPEN]
    with _PIL_LOCK:
        # Lifted for this call so that data.max_image_pixels, not PIL's own bomb limit (a warning above
        # 89 MP, an error above 179 MP), decides, with our message; the lock keeps our calls from
        # interleaving (the setting is process-wide for that moment). Opening parses only the header.
        pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(io.BytesIO(b), formats=formats) as im:
                return int(im.size[0]), int(im.size[1])
        except Exception:  # not one of these formats, or a damaged header: no size
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit


def check_image_size(data: bytes | bytearray | memoryview | np.ndarray, *, source: str, max_pixels: int) -> tuple[int, int]:
    """The ``(width, height)`` the header of ``data`` declares (:func:`image_header_size`).

    Raises :class:`ImageTooLargeError` when it exceeds ``max_pixels`` and :class:`CorruptImageError`
    when no header gives a size (OpenCV would have to decode the bytes to tell), both naming ``source``.
    """
    size = image_header_size(data)
    if size is None:
        view = memoryview(data)
        raise CorruptImageError(
            f"{source}: could not decode {view.nbytes} bytes as an image (first bytes {bytes(view[:8])!r}): "
            "no image header giving its width x height"
        )
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{source}: the image's header declares {width} x {height} = {width * height:,} pixels, more than "
            f"data.max_image_pixels = {max_pixels:,}; refused before decoding (a decompression bomb, or a photo "
            "to downscale first)"
        )
    return size


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


# --------------------------------------------------------------------------- decoder warnings
_CAPTURE_LOCK = threading.Lock()
_CAPTURE_FILES: dict[int, object] = {}  # pid -> temporary file receiving fd 2 during a decode
_MAX_MESSAGE = 300


def _capture_fd() -> int:
    """This process's temporary capture file (a forked child creates its own)."""
    handle = _CAPTURE_FILES.get(os.getpid())
    if handle is None:
        _CAPTURE_FILES.clear()
        handle = _CAPTURE_FILES[os.getpid()] = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the process
    return handle.fileno()  # type: ignore[attr-defined]


def _drain(fd: int) -> str:
    """Read and empty the capture file (fd 2 shared its offset, so rewind it too)."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return ""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, size).decode("utf-8", "replace")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    return text


def decode_image_checked(
    data: bytes | bytearray | memoryview | np.ndarray,
    *,
    source: str = "<bytes>",
    exif_orientation: bool = False,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[np.ndarray, list[str]]:
    """:func:`decode_image` plus the warnings the native decoder printed while decoding.

    Returns ``(image, messages)``; ``messages`` holds what libjpeg/libpng wrote to the C stderr
    during this one decode (e.g. ``"Corrupt JPEG data: 2 extraneous bytes before marker 0xd9"``:
    the image decoded, but its bytes are not a clean JPEG), one entry per line, empty for a clean
    image.  A failed decode raises :class:`CorruptImageError` with the decoder's message appended.
    If file descriptor 2 cannot be redirected, decodes without capturing (no messages).
    """
    with _CAPTURE_LOCK:
        try:
            fd = _capture_fd()
            sys.stderr.flush()  # Python's pending stderr text is not the decoder's
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            return decode_image(data, source=source, exif_orientation=exif_orientation, max_pixels=max_pixels), []
        os.dup2(fd, 2)
        try:
            image = decode_image(data, source=source, exif_orientation=exif_orientation, max_pixels=max_pixels)
        except CorruptImageError as exc:
            error: CorruptImageError | None = exc
        else:
            error = None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            text = _drain(fd)
    messages = [line.strip()[:_MAX_MESSAGE] for line in text.splitlines() if line.strip()]
    if error is not None:
        if messages:
            raise CorruptImageError(f"{error} (decoder: {'; '.join(messages)})") from None
        raise error
    return image, messages


# --------------------------------------------------------------------------- one square size
RESIZE_MODES = ("center_crop", "pad")


def square_resize(image: np.ndarray, size: int, mode: str = "center_crop") -> np.ndarray:
    """Bring ``image`` (H, W[, C]) to ``size`` x ``size``; an image already that size is returned as is.

    ``mode="center_crop"`` keeps the central ``min(H, W)`` rows/columns (offset ``(H - side) // 2``,
    ``(W - side) // 2``); ``mode="pad"`` adds black (0) rows/columns around it to ``max(H, W)`` (the
    smaller half before, the larger after).  The square is then resized to ``size`` with
    ``cv2.INTER_AREA`` when shrinking and ``cv2.INTER_LINEAR`` when enlarging.  Pure: the input is
    never modified.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"square_resize: expected an image (H, W[, C]), got shape {image.shape}")
    if mode not in RESIZE_MODES:
        raise ValueError(f"square_resize: mode must be one of {RESIZE_MODES}, got {mode!r}")
    if int(size) <= 0:
        raise ValueError(f"square_resize: size must be positive, got {size}")
    size = int(size)
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    if mode == "center_crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = image[top : top + side, left : left + side]
    else:
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        square = cv2.copyMakeBorder(image, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0)
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


@dataclasses.dataclass(frozen=True)
class ImagePolicy:
    """How prepare brings ingested images to one size (``params.data.image_size`` / ``data.resize``) and
    the largest image it decodes (``data.max_image_pixels``)."""

    size: int = 112
    resize: Literal["center_crop", "pad"] = "center_crop"
    jpeg_quality: int = 95
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def as_json(self) -> dict:
        """The policy as recorded in ``manifest.json``."""
        return {
            "image_size": self.size,
            "resize": self.resize,
            "interpolation": "cv2.INTER_AREA when shrinking, cv2.INTER_LINEAR when enlarging",
            "changed_images": f"re-encoded as JPEG quality {self.jpeg_quality}",
            "unchanged_images": f"already {self.size}x{self.size}: encoded bytes kept as they are",
            "max_image_pixels": self.max_pixels,
        }


@dataclasses.dataclass(frozen=True)
class Conformed:
    """Result of :func:`conform_encoded`."""

    data: bytes  # the encoded image to store
    resized: bool  # the pixels were cropped/padded/resized to reach the policy's size
    reencoded: bool  # ``data`` differs from the input bytes
    shape: tuple[int, int]  # (H, W) of the input image
    warnings: tuple[str, ...]  # what the decoder printed (see decode_image_checked)


def conform_encoded(data: bytes, policy: ImagePolicy, *, source: str, jpeg_only: bool = False) -> Conformed:
    """Decode ``data`` fully and bring it to ``policy.size`` (see :func:`square_resize`).

    An image already at that size keeps its bytes (unless ``jpeg_only`` and it is not a JPEG: then it
    is re-encoded at ``policy.jpeg_quality``, pixels unchanged); any other is made square, resized
    and encoded as JPEG at ``policy.jpeg_quality``.  Only one decoded image is alive at a time.
    Raises :class:`CorruptImageError` naming ``source`` (:class:`ImageTooLargeError` above
    ``policy.max_pixels``).
    """
    image, warnings = decode_image_checked(data, source=source, max_pixels=policy.max_pixels)
    shape = (int(image.shape[0]), int(image.shape[1]))
    if shape == (policy.size, policy.size):
        if jpeg_only and not is_jpeg(data):
            return Conformed(encode_jpeg(image, policy.jpeg_quality), False, True, shape, tuple(warnings))
        return Conformed(bytes(data), False, False, shape, tuple(warnings))
    out = square_resize(image, policy.size, policy.resize)
    del image  # a large photo's pixels are freed before encoding
    return Conformed(encode_jpeg(out, policy.jpeg_quality), True, True, shape, tuple(warnings))


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
