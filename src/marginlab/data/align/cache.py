"""Detections of many images, stored in chunks keyed by image content (resumable and reusable).

:func:`detect_all` returns the detections of every image it is given.  An image is identified by the
sha256 of its encoded bytes; the detections of images already detected with the same detector
settings are read from ``cache_dir/<fingerprint>/`` and only the others are decoded and detected,
``chunk_size`` images at a time, each finished chunk written atomically as one part file.  A prepare
killed halfway therefore resumes after its last finished chunk, and a second prepare of the same
photos (another ``data.image_size``, another policy, more ``val_bins``) detects nothing again.

Images are decoded with their EXIF orientation applied (a phone photo stored sideways is detected
upright), so detections refer to the pixels a viewer shows.

``<fingerprint>`` is the first 16 hex digits of the sha256 of the detector settings
(:meth:`~marginlab.data.align.detector.Detector.settings`: package version, weight digest,
thresholds, minimum face size, detection input size, device type); ``settings.json`` beside the parts
records them.  Policy keys (``min_score``, ``no_face``, ``multiple_faces``) are applied after the
cache, so changing them detects nothing again either.

Part columns: ``sha256``, ``height``, ``width`` (the decoded image), ``error`` (the decoder's message
for an undecodable image, else null), ``boxes`` (4n floats), ``scores`` (n), ``landmarks`` (10n:
x1, y1, ..., x5, y5 per face), all in the image's own pixels.

The cache is data from disk like any other input (a copied, damaged or planted folder): a part is read
only when its bytes declare no Arrow extension type (one registered with a Python deserializer would
run code, e.g. a pickled ``arrow.py_extension_type``) and its columns are exactly the ones above; each
row is checked (64-hex sha256, sizes, finite values, lengths 4n/n/10n, scores in [0, 1], boxes and
landmarks where an MTCNN face of that image can lie), and an entry is used only when its image, read
again, has the recorded size (or is still undecodable).  Anything else is detected again and counted
(``stats["rejected"]``, ``stats["rejected_parts"]``), with a warning naming the part.

The module is one thing, the cache's part-file format with its writer, the checks that let a part be
read back and :func:`detect_all` that fills it (the checks are only meaningful against this format),
hence its length.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
import logging
import re
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from marginlab.data.align.detector import Detections, Detector
from marginlab.data.formats import CorruptImageError, decode_image_checked
from marginlab.data.formats.five_point_alignment import arcface_template
from marginlab.data.formats.image_header import image_header_size, is_jpeg
from marginlab.data.formats.images import DEFAULT_MAX_IMAGE_PIXELS
from marginlab.core.io import OutputWriteError, atomic_path, write_json
from marginlab.core.ownership import ALIGN_CACHE_MARKER, write_marker

__all__ = ["CachedDetection", "decoded_size_from_header", "detect_all", "fingerprint"]

log = logging.getLogger(__name__)
SETTINGS_FILE = "settings.json"

PART_SCHEMA = pa.schema([
    ("sha256", pa.string()), ("height", pa.int64()), ("width", pa.int64()), ("error", pa.string()),
    ("boxes", pa.list_(pa.float64())), ("scores", pa.list_(pa.float64())), ("landmarks", pa.list_(pa.float64())),
])
#: Pixels of slack for coordinates bounded by the image or a box (rounding, the detector's -1 offsets).
TOLERANCE_PX = 4.0
_MAX_SIDE = 1 << 20  # no decodable photo is wider or taller
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EXTENSION_KEY = b"ARROW:extension"  # field metadata key prefix of every Arrow extension type
_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/]")
_NOT_B64URL = re.compile(rb"[^A-Za-z0-9_-]")
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")


@dataclass(frozen=True)
class CachedDetection:
    height: int
    width: int
    error: Optional[str]
    detections: Detections


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class _RefusedPart(Exception):
    """A part file not read at all (its reason is logged; its images are detected again)."""


def _declares_extension_type(footer: bytes) -> bool:
    """True when ``footer`` holds ``ARROW:extension``, as is or base64-encoded at any offset.

    Arrow keeps a parquet file's Arrow schema base64-encoded in the footer's ``ARROW:schema`` entry
    and looks every ``ARROW:extension:name`` in it up in its registry as soon as the file is opened
    (``pq.read_schema`` included), calling a Python-registered type's deserializer: only a check of
    the raw bytes comes before that.  Decoding the footer's base64-alphabet characters with everything
    else dropped, at the four offsets, covers decoders that stop at or skip a character outside it.
    """
    if _EXTENSION_KEY in footer:
        return True
    for not_alphabet, table in ((_NOT_B64, None), (_NOT_B64URL, _URL_TO_STD)):
        chars = not_alphabet.sub(b"", footer)
        if table is not None:
            chars = chars.translate(table)
        for offset in range(4):
            text = chars[offset:]
            text = text[: len(text) - 1] if len(text) % 4 == 1 else text
            if _EXTENSION_KEY in binascii.a2b_base64(text + b"=" * (-len(text) % 4)):
                return True
    return False


#: Largest part file read: 4096-image chunks of 10 faces each stay below 16 MiB; a hostile part must not
#: exhaust memory.
MAX_PART_BYTES = 64 << 20


def _read_part(path: Path) -> pa.Table:
    """The table of one part file, read without ever deserializing an extension type; raises
    :class:`_RefusedPart`.  The bytes are read once, so the file checked is the file parsed."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise _RefusedPart("not a regular file")
        if info.st_size > MAX_PART_BYTES:  # a part holds chunk_size rows of a few hundred bytes
            raise _RefusedPart(f"{info.st_size:,} bytes, more than a part can hold ({MAX_PART_BYTES:,})")
        data = path.read_bytes()
    except OSError as exc:
        raise _RefusedPart(f"unreadable ({exc})") from None
    footer_size = int.from_bytes(data[-8:-4], "little") if len(data) >= 12 else 0
    if len(data) < 12 or data[:4] != b"PAR1" or data[-4:] != b"PAR1" or not 0 < footer_size <= len(data) - 12:
        raise _RefusedPart("not a parquet file")
    if _declares_extension_type(data[-8 - footer_size : -8]):  # where Arrow reads the schema from
        raise _RefusedPart("declares an Arrow extension type (never read: it could run code)")
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), arrow_extensions_enabled=False)
        why = _schema_problem(pf.schema_arrow)
        if why:
            raise _RefusedPart(why)
        return pf.read(use_threads=False, use_pandas_metadata=False)
    except _RefusedPart:
        raise
    except Exception as exc:  # ArrowInvalid, OSError, ...: a damaged or foreign file
        raise _RefusedPart(f"unreadable ({type(exc).__name__}: {exc})") from None


def _schema_problem(schema: pa.Schema) -> str:
    """Why ``schema`` is not a part's (empty when it is); parts written before PART_SCHEMA may hold
    ``null`` for an all-null ``error`` column and ``list<null>`` for all-empty lists."""
    if sorted(schema.names) != sorted(PART_SCHEMA.names):
        return f"columns {schema.names}, expected {PART_SCHEMA.names}"
    for field in schema:
        t = field.type
        if field.name == "sha256":
            ok = pa.types.is_string(t) or pa.types.is_large_string(t)
        elif field.name in ("height", "width"):
            ok = pa.types.is_integer(t)
        elif field.name == "error":
            ok = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
        else:
            ok = (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
                pa.types.is_floating(t.value_type) or pa.types.is_null(t.value_type))
        if not ok:
            return f"column {field.name} has type {t}"
    return ""


def _face_geometry_ok(boxes: np.ndarray, landmarks: np.ndarray, height: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Per face: can an MTCNN face of an image ``height`` x ``width`` have this box (n, 4) and these
    landmarks (n, 5, 2)?

    Not "inside the image": for a face cut by the border MTCNN keeps (score ~1) a box reaching well
    outside and landmarks up to half a face outside, all five of them at times (measured on scenes
    cut through the face).  So: a box of non-negative size, at most twice the image's longer side,
    touching the image; each landmark within its box widened by half the box; the landmarks not all
    in one spot; and at least 1/16 of the aligned crop they give showing the image (an honest face
    cut in half shows about a third), so no cached entry makes the all-black "ok" crop of a face
    placed outside the photo.
    """
    t = TOLERANCE_PX
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
        bw, bh = x1 - x0, y1 - y0
        box = ((bw >= 0) & (bh >= 0) & (np.maximum(bw, bh) <= 2 * np.maximum(height, width) + t)
               & (x0 <= width + t) & (x1 >= -t) & (y0 <= height + t) & (y1 >= -t))
        lx, ly = landmarks[..., 0], landmarks[..., 1]
        in_box = ((lx >= (x0 - bw / 2 - t)[:, None]) & (lx <= (x1 + bw / 2 + t)[:, None])
                  & (ly >= (y0 - bh / 2 - t)[:, None]) & (ly <= (y1 + bh / 2 + t)[:, None])).all(axis=1)
        spread = np.maximum(lx.max(axis=1) - lx.min(axis=1), ly.max(axis=1) - ly.min(axis=1))
        return box & in_box & (spread >= 2.0) & (_crop_coverage(landmarks, height, width) >= 1 / 16)


_CROP = 112
_GRID = (np.arange(8) + 0.5) * (_CROP / 8)  # 8 x 8 points spread over the aligned crop


def _crop_coverage(landmarks: np.ndarray, height: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Per face, the share of its aligned crop that shows the image: the crop's 8 x 8 grid mapped back
    through the least-squares similarity (as :func:`~marginlab.data.formats.five_point_alignment.align_face` fits it)."""
    template = arcface_template(_CROP)
    src = landmarks - landmarks.mean(axis=1, keepdims=True)
    dst = template - template.mean(axis=0)
    norm = (src**2).sum(axis=(1, 2))
    a = (src[..., 0] * dst[:, 0] + src[..., 1] * dst[:, 1]).sum(axis=1) / norm  # dst = [[a, -b], [b, a]] src
    b = (src[..., 0] * dst[:, 1] - src[..., 1] * dst[:, 0]).sum(axis=1) / norm
    gx, gy = np.meshgrid(_GRID, _GRID)
    u = gx.ravel()[None] - template[:, 0].mean()
    v = gy.ravel()[None] - template[:, 1].mean()
    scale = (a**2 + b**2)[:, None]
    x = (a[:, None] * u + b[:, None] * v) / scale + landmarks[..., 0].mean(axis=1, keepdims=True)
    y = (a[:, None] * v - b[:, None] * u) / scale + landmarks[..., 1].mean(axis=1, keepdims=True)
    inside = (x >= 0) & (x < width[:, None]) & (y >= 0) & (y < height[:, None])
    return inside.mean(axis=1)


def _entries(table: pa.Table) -> tuple[list[tuple[str, CachedDetection]], Counter]:
    """The valid rows of one part as ``(sha256, entry)``, and why the others were rejected (reason -> count)."""
    rows = table.num_rows
    reason = np.full(rows, "", dtype=object)

    def fail(bad: np.ndarray, why: str) -> None:
        reason[bad & (reason == "")] = why

    def column(name: str) -> pa.Array:
        return table.column(name).combine_chunks()

    def lists(name: str) -> tuple[np.ndarray, np.ndarray]:  # lengths (-1 for null) and all values (NaN for null)
        a = column(name)
        n = np.asarray(pc.fill_null(pc.list_value_length(a), -1).to_numpy(zero_copy_only=False), dtype=np.int64)
        values = pc.list_flatten(a).cast(pa.float64()).to_numpy(zero_copy_only=False)
        return n, np.asarray(values, dtype=np.float64)

    sha = column("sha256").to_pylist()
    height = np.asarray(column("height").to_numpy(zero_copy_only=False), dtype=np.float64)  # null -> NaN
    width = np.asarray(column("width").to_numpy(zero_copy_only=False), dtype=np.float64)
    error = column("error").to_pylist()
    nb, box_values = lists("boxes")
    ns, score_values = lists("scores")
    nl, landmark_values = lists("landmarks")

    fail(np.array([not (isinstance(k, str) and _HEX64.fullmatch(k)) for k in sha], dtype=bool), "sha256 not 64 hex digits")
    has_error = np.array([e is not None for e in error], dtype=bool)
    message = np.array([isinstance(e, str) and e != "" for e in error], dtype=bool)
    with np.errstate(invalid="ignore"):
        image = (height >= 1) & (height <= _MAX_SIDE) & (width >= 1) & (width <= _MAX_SIDE) & ~has_error
        corrupt = (height == 0) & (width == 0) & message & (ns == 0) & (nb == 0) & (nl == 0)
    fail(~(image | corrupt), "height/width not positive (or 0 with an error message)")
    lengths = (ns >= 0) & (nb == 4 * ns) & (nl == 10 * ns)
    fail(~lengths, "boxes/scores/landmarks lengths not 4n/n/10n")

    def values_of(n: np.ndarray, values: np.ndarray) -> np.ndarray:  # the values of the rows with consistent lengths
        owner = np.repeat(np.arange(rows), np.clip(n, 0, None))
        return values[lengths[owner]]

    per_face = np.where(lengths, ns, 0)
    face_row = np.repeat(np.arange(rows), per_face)
    boxes = values_of(nb, box_values).reshape(-1, 4)
    scores = values_of(ns, score_values)
    landmarks = values_of(nl, landmark_values).reshape(-1, 5, 2)

    def rows_with(bad_face: np.ndarray) -> np.ndarray:
        return np.bincount(face_row[bad_face], minlength=rows) > 0

    fail(rows_with(~(np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & np.isfinite(landmarks).all(axis=(1, 2)))),
         "a value is NaN or infinite")
    fail(rows_with(~((scores >= 0) & (scores <= 1))), "a score outside [0, 1]")
    fail(rows_with(~_face_geometry_ok(boxes, landmarks, height[face_row], width[face_row])),
         "a box or landmarks outside where a face of the image can lie")

    start = np.cumsum(per_face) - per_face
    found = []
    for i in np.flatnonzero(reason == ""):
        a, b = int(start[i]), int(start[i] + per_face[i])
        found.append((sha[i], CachedDetection(int(height[i]), int(width[i]), error[i], Detections(boxes[a:b], scores[a:b], landmarks[a:b]))))
    return found, Counter(reason[reason != ""].tolist())


def _load(folder: Path) -> tuple[dict[str, list[tuple[str, CachedDetection]]], int, int]:
    """Every valid entry of every part, per key in part order (a key may be in several parts), with
    the number of rows rejected and of parts refused as a whole."""
    found: dict[str, list[tuple[str, CachedDetection]]] = {}
    rejected = refused = 0
    for part in sorted(folder.glob("part-*.parquet")):
        try:
            table = _read_part(part)
        except _RefusedPart as exc:  # damaged (disk full), foreign or planted: recomputed, never trusted
            refused += 1
            log.warning("alignment cache part %s is not used: %s; its images are detected again", part, exc)
            continue
        entries, reasons = _entries(table)
        for key, entry in entries:
            found.setdefault(key, []).append((part.name, entry))
        if reasons:
            rejected += sum(reasons.values())
            log.warning("alignment cache part %s: %d entries rejected (%s); their images are detected again",
                        part, sum(reasons.values()), "; ".join(f"{n} {why}" for why, n in reasons.most_common()))
    return found, rejected, refused


def decoded_size_from_header(data: bytes) -> Optional[tuple[int, int]]:
    """``(height, width)`` the decoder will give, from the header alone; None when the header cannot tell
    (the EXIF orientation of a non-JPEG, which OpenCV may or may not apply)."""
    size = image_header_size(data)
    if size is None:
        return None
    width, height = size
    if data[:8] == b"\x89PNG\r\n\x1a\n" or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return None if b"eXIf" in data or b"EXIF" in data else (height, width)  # an EXIF chunk: ask the decoder
    if data[:2] == b"BM":
        return height, width
    if not is_jpeg(data) or b"\xff\xd9" not in data[-1024:]:
        return None  # another format (TIFF has its own orientation tag), or a truncated JPEG the decoder refuses
    scan = data.find(b"\xff\xda")  # EXIF is an APP1 segment, before the first scan
    if b"Exif\0\0" not in (data if scan < 0 else data[:scan]):
        return height, width  # no EXIF segment, no orientation
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:  # parses the header and its APP segments only
            orientation = im.getexif().get(0x0112, 1)
    except Exception:
        return None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)  # these turn the photo by 90 degrees


def _matching(entry: CachedDetection, data: bytes, label: str, max_pixels: int) -> Optional[CachedDetection]:
    """``entry`` if it fits the image ``data`` (decodable at the recorded size, or still undecodable:
    then with the decoder's own message, not the cache's), else None."""
    if entry.error is None and decoded_size_from_header(data) == (entry.height, entry.width):
        return entry
    try:
        image, _ = decode_image_checked(data, source=label, exif_orientation=True, max_pixels=max_pixels)
    except CorruptImageError as exc:
        return CachedDetection(0, 0, str(exc), Detections.empty()) if entry.error is not None else None
    return entry if entry.error is None and image.shape[:2] == (entry.height, entry.width) else None


def _write_part(folder: Path, keys: list[str], results: list[CachedDetection]) -> None:
    table = pa.table({
        "sha256": keys,
        "height": [r.height for r in results],
        "width": [r.width for r in results],
        "error": [r.error for r in results],
        "boxes": [r.detections.boxes.reshape(-1).tolist() for r in results],
        "scores": [r.detections.scores.reshape(-1).tolist() for r in results],
        "landmarks": [r.detections.landmarks.reshape(-1).tolist() for r in results],
    }, schema=PART_SCHEMA)
    name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
    with atomic_path(folder / f"part-{name}.parquet") as tmp:
        pq.write_table(table, tmp)


def detect_all(
    keys: Sequence[str],
    read: Callable[[str], tuple[bytes, str]],
    *,
    make_detector: Callable[[], Detector],
    cache_dir: Path,
    chunk_size: int,
    progress: bool = True,
    desc: str = "detect faces",
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    sizes: Optional[Mapping[str, Optional[tuple[int, int]]]] = None,
) -> tuple[dict[str, CachedDetection], dict]:
    """Detections for every distinct key in ``keys`` (the sha256 of the bytes ``read(key)`` returns with
    a label naming the image for error messages).

    Returns ``(by_key, stats)``; stats: ``cached`` (found in the cache), ``detected`` (run now),
    ``fingerprint``, ``detect_s`` (seconds spent decoding + detecting), ``rejected`` (cache entries
    not used: invalid, or not matching their image) and ``rejected_parts`` (part files not read).
    A cached entry is used only when its image has the recorded size: ``sizes[key]`` when the caller
    already read it from the bytes it hashed (:func:`decoded_size_from_header`), else the image is read
    again (its header, or a decode when that cannot tell).
    Raises :class:`~marginlab.core.io.OutputWriteError` (an ``OSError``) when ``cache_dir`` cannot be written.
    """
    import time

    detector = make_detector()
    settings = {**detector.settings(), "decode": "RGB, EXIF orientation applied"}  # the pixels detections refer to
    fp = fingerprint(settings)
    folder = Path(cache_dir) / fp
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        write_marker(cache_dir, ALIGN_CACHE_MARKER)  # the config accepts a cache folder outside the project only with it
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(exc.filename or folder, exc) from exc
    write_json(folder / SETTINGS_FILE, settings)
    candidates, rejected, refused = _load(folder)
    distinct = list(dict.fromkeys(keys))
    known: dict[str, CachedDetection] = {}
    mismatched: Counter = Counter()
    to_check = [k for k in distinct if k in candidates]
    for key in tqdm(to_check, desc=f"{desc}: check cache", unit="img", disable=not progress or not to_check):
        size = sizes.get(key) if sizes is not None else None
        data = label = None
        for part, entry in candidates[key]:
            if size is not None and entry.error is None:  # the caller's size: no second read of the photo
                checked = entry if size == (entry.height, entry.width) else None
            else:
                if data is None:
                    data, label = read(key)
                checked = _matching(entry, data, label, max_pixels)
            if checked is not None:
                known[key] = checked
                break
            mismatched[part] += 1
    for part, n in mismatched.items():
        log.warning("alignment cache part %s: %d entries do not match their image's size or decodability; "
                    "their images are detected again", folder / part, n)
    del candidates
    todo = [k for k in distinct if k not in known]  # distinct, first-seen order
    stats = {"fingerprint": fp, "cached": len(distinct) - len(todo), "detected": len(todo), "detect_s": 0.0,
             "rejected": rejected + sum(mismatched.values()), "rejected_parts": refused}
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress or not todo)
    t0 = time.perf_counter()
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        results = _detect_chunk(detector, chunk, read, bar, max_pixels)
        _write_part(folder, chunk, results)
        known.update(zip(chunk, results))
    bar.close()
    stats["detect_s"] = round(time.perf_counter() - t0, 3)
    return {k: known[k] for k in dict.fromkeys(keys)}, stats


def _detect_chunk(detector: Detector, chunk: list[str], read: Callable[[str], tuple[bytes, str]], bar: tqdm,
                  max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> list[CachedDetection]:
    """Decode and detect one chunk; only the detection inputs (at most ``max_side``) stay in memory."""
    results: list[Optional[CachedDetection]] = [None] * len(chunk)
    prepared: list[tuple[np.ndarray, float]] = []
    positions: list[tuple[int, int, int]] = []

    def flush() -> None:
        for (i, h, w), det in zip(positions, detector.detect_prepared(prepared)):
            results[i] = CachedDetection(h, w, None, det)
        bar.update(len(prepared))
        prepared.clear()
        positions.clear()

    for i, key in enumerate(chunk):
        data, label = read(key)
        try:
            image, _ = decode_image_checked(data, source=label, exif_orientation=True, max_pixels=max_pixels)  # photos as a viewer shows them
        except CorruptImageError as exc:
            results[i] = CachedDetection(0, 0, str(exc), Detections.empty())
            bar.update(1)
            continue
        h, w = int(image.shape[0]), int(image.shape[1])
        small = detector.prepare(image)
        del image, data
        if prepared and (small[0].shape != prepared[-1][0].shape or len(prepared) >= detector.batch_size):
            flush()
        prepared.append(small)
        positions.append((i, h, w))
    if prepared:
        flush()
    return [r for r in results if r is not None]
