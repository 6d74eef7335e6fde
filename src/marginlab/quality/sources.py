"""The images of a prepared data directory as lazy ``(split, index, loader)`` streams, and their
synthetic ground truth.

The training split and every set of every registered evaluation-set format (:mod:`marginlab.evalsets`,
which owns its files and split names), in table order. The built-in ones
(:class:`~marginlab.core.layouts.PreparedLayout` names the files):

=========================  ===================================  ==========================================
split                      images                               index
=========================  ===================================  ==========================================
``train``                  ``train.rec`` (InsightFace RecordIO)  reader index (record key - 1)
``bin:<name>``             ``verification/<name>.bin``          image position in the .bin
``ijb:<name>``             ``ijb/<name>/`` aligned crops        face row of ``read_ijb(...).faces``
``tinyface:<part>``        ``tinyface/<part>/``                 position in the part's sorted path list
=========================  ===================================  ==========================================

Ground truth (synthetic data only; each format's ``ground_truth_files``): ``train_meta.parquet`` (``index``),
``verification/<name>_meta.parquet``, ``ijb/<name>/meta.parquet`` (``index`` column or one row per image in
order), ``tinyface/meta.parquet`` (``part`` or ``split`` column plus ``index``); columns ``gt_quality`` and,
where present, ``degradations`` ('+'-joined type names, '' for a clean image).

Each :class:`SplitSource` opens its file lazily and decodes one image per ``load(i)`` call, so a
stream of them holds one chunk of decoded images at a time (each already downscaled to
``quality.max_side`` if larger: :func:`.score_dataset.score_items` does it as it loads them). (A verification ``.bin`` is one pickle:
its encoded bytes are held while that split is scored.)
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pandas as pd

from marginlab.evalsets import SplitSource, eval_sets
from marginlab.core.layouts import PreparedLayout

log = logging.getLogger(__name__)

GT_COLUMNS = ["split", "index", "gt_quality", "degradations"]


class PreparedDataError(ValueError):
    """The prepared directory lacks what the quality stage needs; the message names the path."""


def _train_source(prepared: PreparedLayout) -> Optional[SplitSource]:
    rec = prepared.train_rec
    if not rec.exists():
        return None
    from marginlab.data.formats import decode_image, open_recordio

    reader = open_recordio(rec)

    def load(i: int) -> np.ndarray:
        data, _label = reader[i]
        return decode_image(data, source=f"{rec}[{i}]")

    return SplitSource("train", len(reader), load, (rec, prepared.train_idx))


def prepared_sources(prepared_dir: str | Path) -> list[SplitSource]:
    """Every scorable split of ``prepared_dir``: train, then every set of every registered evaluation-set format."""
    layout = PreparedLayout(prepared_dir)
    if not layout.root.is_dir():
        raise PreparedDataError(f"prepared data directory {layout.root} not found (run the prepare stage first)")
    sources = [s for s in [_train_source(layout)] if s is not None]
    for fmt in eval_sets():
        for name in fmt.instances(layout):
            sources += fmt.splits(layout, name)
    if not sources:
        expected = ", ".join(["train.rec", *(fmt.expects for fmt in eval_sets())])
        head, _, last = expected.rpartition(", ")
        raise PreparedDataError(f"{layout.root}: no images found (expected {head} or {last})")
    return sources


def iter_items(sources: list[SplitSource]) -> Iterator[tuple[str, int, Callable[[], np.ndarray]]]:
    """``(split, index, loader)`` for every image, split by split; loaders are lazy."""
    for src in sources:
        for i in range(src.length):
            yield src.split, i, (lambda load=src.load, i=i: load(i))


def sources_fingerprint(sources: list[SplitSource]) -> dict:
    """Identity of the inputs without reading them: split lengths and each file's path, size and mtime."""
    h = hashlib.sha256()
    for src in sources:
        h.update(f"{src.split}\t{src.length}\n".encode())
        for f in src.files:
            st = os.stat(f) if Path(f).exists() else None
            h.update(f"{f}\t{st.st_size if st else -1}\t{st.st_mtime_ns if st else -1}\n".encode())
    return {"splits": {s.split: s.length for s in sources}, "files_sha256": h.hexdigest()}


# ---------------------------------------------------------------------------------------- ground truth
def _meta_frame(path: Path, split: str, n: Optional[int] = None, part: Optional[str] = None) -> Optional[pd.DataFrame]:
    if not path.is_file():
        return None
    meta = pd.read_parquet(path)
    if "gt_quality" not in meta.columns:
        return None
    if part is not None:
        col = next((c for c in ("part", "split") if c in meta.columns), None)
        if col is None or "index" not in meta.columns:
            log.warning("%s: needs 'part' (or 'split') and 'index' columns for ground truth; skipped", path)
            return None
        meta = meta[meta[col].astype(str).isin([part, split])]  # the part, or the split it names
    if "index" in meta.columns:
        index = meta["index"].to_numpy(np.int64)
    elif n is None or len(meta) == n:
        index = np.arange(len(meta), dtype=np.int64)
    else:
        raise PreparedDataError(f"{path}: {len(meta)} rows without an 'index' column; expected one row per image ({n})")
    degradations = meta["degradations"].fillna("").astype(str).to_numpy() if "degradations" in meta.columns \
        else np.full(len(meta), None, dtype=object)
    return pd.DataFrame({"split": split, "index": index, "gt_quality": meta["gt_quality"].to_numpy(np.float64),
                         "degradations": degradations})


def load_ground_truth(prepared_dir: str | Path, sources: Optional[list[SplitSource]] = None) -> pd.DataFrame:
    """Synthetic ground truth of every split that has a meta file (columns ``GT_COLUMNS``); empty on real data."""
    layout = PreparedLayout(prepared_dir)
    lengths = {s.split: s.length for s in sources} if sources else {}
    frames = [_meta_frame(layout.train_meta, "train", lengths.get("train"))]
    for fmt in eval_sets():
        for gt in fmt.ground_truth_files(layout):
            frames.append(_meta_frame(gt.path, gt.split, lengths.get(gt.split), part=gt.part))
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                             zip(GT_COLUMNS, ["object", "int64", "float64", "object"])})
    return pd.concat(frames, ignore_index=True)[GT_COLUMNS]


__all__ = ["GT_COLUMNS", "PreparedDataError", "SplitSource", "iter_items", "load_ground_truth", "prepared_sources",
           "sources_fingerprint"]
