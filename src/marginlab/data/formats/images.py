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

Decoder warnings (:func:`decode_image_checked`): libjpeg reports recoverable damage such as "Corrupt
JPEG data: 2 extraneous bytes before marker 0xd9" only by printing to the C ``stderr``; OpenCV does
not expose it. The checked decode points file descriptor 2 at a temporary file for the duration of
one ``cv2.imdecode`` call and returns what the decoder printed, so prepare can count and name those
images. It is meant for single-threaded ingest, not for the training loader.

Declared sizes and the decompression-bomb check: :mod:`.image_header`; 5-point alignment: :mod:`.five_point_alignment`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import threading
from typing import Literal

import cv2
import numpy as np

from marginlab.data.formats.errors import CorruptImageError
from marginlab.data.formats.image_header import JPEG_SOI, check_image_size, is_jpeg

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "RESIZE_MODES",
    "ImagePolicy",
    "conform_encoded",
    "decode_image",
    "decode_image_checked",
    "encode_jpeg",
    "encode_png",
    "square_resize",
]

_JPEG_EOI = b"\xff\xd9"
# The end-of-image marker must sit in the last bytes of a complete JPEG (some writers append a few
# padding bytes after it); entropy-coded data can never contain FF D9, so its absence there means
# the file was cut short.
_EOI_SEARCH_TAIL = 1024
_DECODE_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION

#: The default of ``data.max_image_pixels`` (:class:`marginlab.core.config.DataConfig`): the largest
#: width x height decoded.  200 MP exceeds every camera photo.
DEFAULT_MAX_IMAGE_PIXELS = 200_000_000


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
    if head == JPEG_SOI and _JPEG_EOI not in buf[-_EOI_SEARCH_TAIL:].tobytes():
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
