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
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from marginlab.data.align.detector import Detections, Detector
from marginlab.data.formats import CorruptImageError, decode_image_checked
from marginlab.io import write_json, write_parquet

__all__ = ["CachedDetection", "detect_all", "fingerprint"]

log = logging.getLogger(__name__)
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class CachedDetection:
    height: int
    width: int
    error: Optional[str]
    detections: Detections


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _load(folder: Path) -> dict[str, CachedDetection]:
    found: dict[str, CachedDetection] = {}
    for part in sorted(folder.glob("part-*.parquet")):
        try:
            frame = pd.read_parquet(part)
        except Exception as exc:  # a damaged part (disk full, foreign file) is recomputed, not trusted
            log.warning("alignment cache part %s is unreadable (%s); its images are detected again", part, exc)
            continue
        for row in frame.itertuples(index=False):
            n = len(row.scores)
            det = Detections(
                np.asarray(row.boxes, dtype=np.float64).reshape(n, 4),
                np.asarray(row.scores, dtype=np.float64).reshape(n),
                np.asarray(row.landmarks, dtype=np.float64).reshape(n, 5, 2),
            )
            error = row.error if isinstance(row.error, str) else None  # parquet gives NaN for a missing string
            found[row.sha256] = CachedDetection(int(row.height), int(row.width), error, det)
    return found


def _write_part(folder: Path, keys: list[str], results: list[CachedDetection]) -> None:
    frame = pd.DataFrame({
        "sha256": keys,
        "height": [r.height for r in results],
        "width": [r.width for r in results],
        "error": pd.Series([r.error for r in results], dtype="object"),
        "boxes": [r.detections.boxes.reshape(-1).tolist() for r in results],
        "scores": [r.detections.scores.reshape(-1).tolist() for r in results],
        "landmarks": [r.detections.landmarks.reshape(-1).tolist() for r in results],
    })
    name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
    write_parquet(folder / f"part-{name}.parquet", frame)


def detect_all(
    keys: Sequence[str],
    read: Callable[[str], tuple[bytes, str]],
    *,
    make_detector: Callable[[], Detector],
    cache_dir: Path,
    chunk_size: int,
    progress: bool = True,
    desc: str = "detect faces",
) -> tuple[dict[str, CachedDetection], dict]:
    """Detections for every distinct key in ``keys`` (the sha256 of the bytes ``read(key)`` returns with
    a label naming the image for error messages).

    Returns ``(by_key, stats)``; stats: ``cached`` (found in the cache), ``detected`` (run now),
    ``fingerprint``, ``detect_s`` (seconds spent decoding + detecting).
    """
    import time

    detector = make_detector()
    settings = {**detector.settings(), "decode": "RGB, EXIF orientation applied"}  # the pixels detections refer to
    fp = fingerprint(settings)
    folder = Path(cache_dir) / fp
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / SETTINGS_FILE, settings)
    known = _load(folder)
    todo = list(dict.fromkeys(k for k in keys if k not in known))  # distinct, first-seen order
    stats = {"fingerprint": fp, "cached": len(set(keys)) - len(todo), "detected": len(todo), "detect_s": 0.0}
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress or not todo)
    t0 = time.perf_counter()
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        results = _detect_chunk(detector, chunk, read, bar)
        _write_part(folder, chunk, results)
        known.update(zip(chunk, results))
    bar.close()
    stats["detect_s"] = round(time.perf_counter() - t0, 3)
    return {k: known[k] for k in dict.fromkeys(keys)}, stats


def _detect_chunk(detector: Detector, chunk: list[str], read: Callable[[str], tuple[bytes, str]], bar: tqdm) -> list[CachedDetection]:
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
            image, _ = decode_image_checked(data, source=label, exif_orientation=True)  # photos as a viewer shows them
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
