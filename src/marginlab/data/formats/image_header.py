"""Image sizes read from encoded headers, against decompression bombs (:func:`check_image_size`).

A small file may declare a huge image (a 0.9 MB PNG of 30000 x 30000 pixels decodes to 2.7 GB), so
every decode first reads width x height from the encoded header and refuses an image above ``max_pixels`` (``data.max_image_pixels``)
with :class:`ImageTooLargeError`, without decoding it.  Bytes whose size no header gives are refused
too (OpenCV would have to decode them to tell).
"""

from __future__ import annotations

import io
import re
import threading
from typing import Literal

import numpy as np

from marginlab.data.formats.errors import CorruptImageError, ImageTooLargeError

__all__ = ["JPEG_SOI", "PNG_SIGNATURE", "check_image_size", "image_header_size", "is_jpeg", "is_png"]

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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
    if b[:8] == PNG_SIGNATURE:
        return (_uint(b, 16, 4), _uint(b, 20, 4)) if len(b) >= 24 and b[12:16] == b"IHDR" else None
    if b[:2] == JPEG_SOI:
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


def is_jpeg(data: bytes) -> bool:
    """True when ``data`` starts with the JPEG start-of-image marker (FF D8)."""
    return bytes(data[:2]) == JPEG_SOI


def is_png(data: bytes) -> bool:
    """True when ``data`` starts with the 8-byte PNG signature."""
    return bytes(data[:8]) == PNG_SIGNATURE
