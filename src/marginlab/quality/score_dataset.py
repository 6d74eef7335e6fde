"""Chunked, resumable, streaming quality scoring of a stream of images.

Input: an iterable of ``(split, index, image)`` where ``image`` is an RGB ``uint8`` array (H, W, 3)
or a zero-argument callable returning one (lazy: it is only called when the image must be scored,
so a resumed run skips finished chunks without reading or decoding them). Items of one split must
be contiguous; their order defines the chunks.

Protocol (:func:`score_items`):

- Chunks: chunk ``k`` of a split is its items ``k*chunk_size .. (k+1)*chunk_size - 1`` in stream
  order. Each finished chunk is written atomically to ``parts_dir/<split>-<k:05d>.parquet``
  (``split`` percent-encoded for the file name, e.g. ``bin%3Alfw-00000.parquet``) with columns
  ``split, index, brisque, iq`` plus the per-image flags ``downscaled`` and ``too_small``
  (``PART_COLUMNS``), so a resumed run counts them exactly as an uninterrupted one.
- Resume: a chunk whose part file exists and lists exactly the chunk's ``(split, index)`` values is
  read back instead of recomputed. ``fingerprint`` (any JSON-able dict describing model, data and
  settings) is stored in ``parts_dir/fingerprint.json``; when it differs from the stored one, all
  parts are discarded first. Scores do not depend on the batch size (see :mod:`.scorer`), so a run
  killed after k chunks and restarted gives the same table as an uninterrupted run.
- Batching: inside a chunk, images are grouped by size (H, W); each group is stacked into batches of
  ``batch_size`` and scored at once. Memory is bounded by one chunk of decoded images, whatever the
  dataset size.
- Size: with ``max_side`` set, an image whose longer side exceeds it is downscaled as soon as it is
  loaded (:func:`downscale_to`: ``cv2.INTER_AREA``, aspect kept, longer side = ``max_side``), so a
  chunk holds the small copies and BRISQUE never runs at full size; smaller images are passed on
  untouched (bit-identical scores). ``max_side=None`` scores every image at its stored size.
- Images smaller than :data:`.scorer.MIN_SIDE` per side (after any downscaling) get NaN (BRISQUE
  undefined) and a warning; images that cannot be read or are not RGB ``uint8`` raise
  :class:`ImageReadError` naming the split and index.

Output: a :class:`ScoreResult` listing the part files in stream order; ``.write(path)`` streams them
into one parquet table (``split`` str, ``index`` int64, ``brisque`` float64, ``iq`` float64;
``iq = iq_from_brisque(brisque)``) and ``.table()`` returns it as a DataFrame. Duplicate indices within
a split are an error.
"""

from __future__ import annotations

import json
import logging
import shutil
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

import numpy as np
import pandas as pd
import torch

from marginlab.core.io import write_json, write_parquet
from marginlab.quality.scorer import MIN_SIDE, iq_from_brisque, uint8_to_tensor

log = logging.getLogger(__name__)

ImageLike = Union[np.ndarray, Callable[[], np.ndarray]]
Item = tuple[str, int, ImageLike]
ScoreFn = Callable[[torch.Tensor], torch.Tensor]

COLUMNS = ["split", "index", "brisque", "iq"]
#: Columns of a part file: the table's plus per-image flags (bool) that the run's counts are summed from.
PART_COLUMNS = COLUMNS + ["downscaled", "too_small"]
FINGERPRINT_FILE = "fingerprint.json"


class ImageReadError(ValueError):
    """An image of the stream could not be read or is not RGB uint8; names the split and index."""


class ScoreStreamError(ValueError):
    """The item stream is malformed (non-contiguous split, duplicate index, bad item)."""


def part_path(parts_dir: str | Path, split: str, chunk: int) -> Path:
    """``parts_dir/<percent-encoded split>-<chunk:05d>.parquet``."""
    return Path(parts_dir) / f"{urllib.parse.quote(split, safe='')}-{chunk:05d}.parquet"


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({"split": pd.Series([], dtype=object), "index": pd.Series([], dtype=np.int64),
                         "brisque": pd.Series([], dtype=np.float64), "iq": pd.Series([], dtype=np.float64)})


@dataclass
class _Chunk:
    split: str
    number: int
    indices: list[int]
    images: list[ImageLike]


def _chunks(items: Iterable[Item], chunk_size: int) -> Iterator[_Chunk]:
    """Cut the stream into per-split chunks of ``chunk_size`` items (the last one of a split shorter)."""
    finished: set[str] = set()
    counters: dict[str, int] = defaultdict(int)
    current: Optional[_Chunk] = None
    last_split: Optional[str] = None
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 3):
            raise ScoreStreamError(f"stream items must be (split, index, image) tuples, got {type(item).__name__}")
        split, index, image = item
        split, index = str(split), int(index)
        if split != last_split:
            if current is not None:
                yield current  # the last, shorter chunk of the previous split
                current = None
            if last_split is not None:
                finished.add(last_split)
            if split in finished:
                raise ScoreStreamError(f"split {split!r} appears again after other splits; items of a split "
                                       "must be contiguous")
            last_split = split
        if current is None:
            current = _Chunk(split, counters[split], [], [])
            counters[split] += 1
        current.indices.append(index)
        current.images.append(image)
        if len(current.indices) == chunk_size:  # full: score it before pulling more items
            yield current
            current = None
    if current is not None:
        yield current


def _load(split: str, index: int, image: ImageLike) -> np.ndarray:
    try:
        arr = image() if callable(image) else image
    except Exception as err:  # whatever the reader raised: re-raised naming split and index
        raise ImageReadError(f"cannot read image split={split!r} index={index}: {type(err).__name__}: {err}") from err
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        what = f"{arr.dtype} array of shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ImageReadError(f"image split={split!r} index={index}: expected RGB uint8 (H, W, 3), got {what}")
    return arr


def downscale_to(image: np.ndarray, max_side: Optional[int]) -> np.ndarray:
    """``image`` itself if ``max_side`` is None or its longer side is at most ``max_side``; otherwise a
    copy resized with ``cv2.INTER_AREA`` (pixel-area averaging, the antialiased choice for shrinking)
    so that its longer side is ``max_side`` and the aspect ratio is kept (shorter side rounded, >= 1)."""
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1 or None, got {max_side}")
    import cv2

    scale = max_side / max(h, w)
    new_h, new_w = (max_side, max(1, round(w * scale))) if h >= w else (max(1, round(h * scale)), max_side)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)


def score_images(images: list[np.ndarray], score_fn: ScoreFn, batch_size: int) -> np.ndarray:
    """BRISQUE of a list of RGB uint8 images: grouped by size, each group scored in batches; NaN for
    images smaller than MIN_SIDE per side. Returns float64 (len(images),) in input order."""
    out = np.full(len(images), np.nan, dtype=np.float64)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for pos, img in enumerate(images):
        if min(img.shape[0], img.shape[1]) >= MIN_SIDE:
            groups[(img.shape[0], img.shape[1])].append(pos)
    for positions in groups.values():
        for start in range(0, len(positions), batch_size):
            sel = positions[start:start + batch_size]
            batch = uint8_to_tensor(np.stack([images[p] for p in sel]))
            scores = score_fn(batch)
            out[sel] = np.asarray(scores.detach().cpu(), dtype=np.float64)
    return out


def _read_part(path: Path, split: str, indices: list[int]) -> Optional[pd.DataFrame]:
    """The part file if it holds exactly this chunk (columns ``PART_COLUMNS``), else None (then it is
    recomputed)."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - an unreadable part is simply recomputed
        log.warning("part %s is unreadable (%s); recomputing it", path, err)
        return None
    if (list(frame.columns) != PART_COLUMNS or len(frame) != len(indices) or not (frame["split"] == split).all()
            or frame["index"].tolist() != indices):
        log.warning("part %s does not match the current chunk of split %r; recomputing it", path, split)
        return None
    return frame


def _check_fingerprint(parts_dir: Path, fingerprint: Optional[dict]) -> None:
    """Discard all parts when the stored fingerprint differs from ``fingerprint``; store it."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    if fingerprint is None:
        return
    fp_path = parts_dir / FINGERPRINT_FILE
    wanted = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
    if fp_path.is_file():
        try:
            stored = json.loads(fp_path.read_text())
        except json.JSONDecodeError:
            stored = None
        if stored == wanted:
            return
        stale = list(parts_dir.glob("*.parquet"))
        if stale:
            log.warning("scoring inputs or settings changed since the parts in %s were written; discarding %d parts",
                        parts_dir, len(stale))
        for p in stale:
            p.unlink()
    elif any(parts_dir.glob("*.parquet")):
        log.warning("parts in %s have no fingerprint; discarding them", parts_dir)
        for p in parts_dir.glob("*.parquet"):
            p.unlink()
    write_json(fp_path, wanted)


@dataclass
class ScoreResult:
    """Where the scores of a :func:`score_items` run are: its part files, in stream order."""

    parts: list[Path]
    num_images: int
    computed_chunks: int
    reused_chunks: int
    too_small: int
    downscaled: int = 0

    def table(self) -> pd.DataFrame:
        """All scores as one DataFrame (columns ``COLUMNS``, stream order)."""
        if not self.parts:
            return empty_table()
        table = pd.concat([pd.read_parquet(p) for p in self.parts], ignore_index=True)
        table["index"] = table["index"].astype(np.int64)
        return table[COLUMNS]

    def write(self, out_path: str | Path) -> None:
        """Write the table to ``out_path`` atomically, streaming part by part (constant memory)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from marginlab.core.io import atomic_path

        schema = pa.schema([("split", pa.string()), ("index", pa.int64()), ("brisque", pa.float64()),
                            ("iq", pa.float64())])
        with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            for p in self.parts:
                writer.write_table(pq.read_table(p).select(COLUMNS).cast(schema))
            if not self.parts:
                writer.write_table(schema.empty_table())


def _check_unique(split: str, arrays: list[np.ndarray]) -> None:
    if not arrays:
        return
    values, counts = np.unique(np.concatenate(arrays), return_counts=True)
    if (counts > 1).any():
        raise ScoreStreamError(f"split {split!r}: duplicate index {values[counts > 1][:5].tolist()}")


def _load_chunk(chunk: _Chunk, max_side: Optional[int]) -> tuple[list[np.ndarray], np.ndarray]:
    """The chunk's images, each downscaled to ``max_side`` right after loading (one full-size image in
    memory at a time), and a bool array saying which ones were downscaled."""
    images, downscaled = [], []
    for index, image in zip(chunk.indices, chunk.images):
        full = _load(chunk.split, index, image)
        small = downscale_to(full, max_side)
        downscaled.append(small is not full)
        images.append(small)
        del full
    return images, np.asarray(downscaled, dtype=bool)


def score_items(items: Iterable[Item], score_fn: ScoreFn, parts_dir: str | Path, *, chunk_size: int = 2048,
                batch_size: int = 64, total: Optional[int] = None, fingerprint: Optional[dict] = None,
                progress: bool = True, max_side: Optional[int] = None) -> ScoreResult:
    """Score a stream chunk by chunk into resumable part files (see the module docstring).

    ``max_side``: downscale images whose longer side exceeds it (:func:`downscale_to`); None keeps
    every image at its stored size. It changes scores, so include it in ``fingerprint``.
    """
    from tqdm.auto import tqdm

    if chunk_size < 1 or batch_size < 1:
        raise ValueError(f"chunk_size and batch_size must be >= 1, got {chunk_size}, {batch_size}")
    parts_dir = Path(parts_dir)
    _check_fingerprint(parts_dir, fingerprint)
    result = ScoreResult([], 0, 0, 0, 0, 0)
    split_indices: list[np.ndarray] = []  # indices of the current split, for the duplicate check
    current_split: Optional[str] = None
    with tqdm(total=total, unit="img", desc="BRISQUE", disable=not progress, dynamic_ncols=True) as bar:
        for chunk in _chunks(items, chunk_size):
            if chunk.split != current_split:
                _check_unique(current_split or "", split_indices)
                split_indices, current_split = [], chunk.split
            split_indices.append(np.asarray(chunk.indices, dtype=np.int64))
            path = part_path(parts_dir, chunk.split, chunk.number)
            frame = _read_part(path, chunk.split, chunk.indices)
            if frame is not None:
                result.reused_chunks += 1
            else:
                images, downscaled = _load_chunk(chunk, max_side)
                too_small = np.array([min(img.shape[:2]) < MIN_SIDE for img in images], dtype=bool)
                if too_small.any():
                    log.warning("split %r: %d image(s) smaller than %dx%d get NaN (e.g. index %d)", chunk.split,
                                int(too_small.sum()), MIN_SIDE, MIN_SIDE, chunk.indices[int(too_small.argmax())])
                brisque = score_images(images, score_fn, batch_size)
                del images
                frame = pd.DataFrame({"split": [chunk.split] * len(brisque),
                                      "index": np.asarray(chunk.indices, np.int64),
                                      "brisque": brisque, "iq": iq_from_brisque(brisque),
                                      "downscaled": downscaled, "too_small": too_small})
                write_parquet(path, frame)
                result.computed_chunks += 1
            result.too_small += int(frame["too_small"].sum())
            result.downscaled += int(frame["downscaled"].sum())
            result.parts.append(path)
            result.num_images += len(chunk.indices)
            bar.update(len(chunk.indices))
            chunk.images.clear()
        _check_unique(current_split or "", split_indices)
    log.info("BRISQUE: %d images; chunks computed %d, reused %d (%s); %d images too small, %d downscaled to "
             "max_side %s", result.num_images, result.computed_chunks, result.reused_chunks, parts_dir,
             result.too_small, result.downscaled, max_side)
    return result


def remove_parts(parts_dir: str | Path) -> None:
    """Delete the part files once the final table is safely written."""
    shutil.rmtree(parts_dir, ignore_errors=True)


__all__ = ["COLUMNS", "PART_COLUMNS", "ImageReadError", "Item", "ScoreResult", "ScoreStreamError", "downscale_to",
           "empty_table", "part_path", "remove_parts", "score_images", "score_items"]
