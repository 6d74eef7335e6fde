"""The images of a prepared data directory as lazy ``(split, index, loader)`` streams, and their
synthetic ground truth.

Layout (written by the prepare stage; see the project contracts):

=========================  ===================================  ==========================================
split                      images                               index
=========================  ===================================  ==========================================
``train``                  ``train.rec`` (InsightFace RecordIO)  reader index (record key - 1)
``bin:<name>``             ``verification/<name>.bin``          image position in the .bin
``ijb:<name>``             ``ijb/<name>/`` aligned crops        face row of ``read_ijb(...).faces``
``tinyface:<part>``        ``tinyface/<part>/``                 position in the part's sorted path list
=========================  ===================================  ==========================================

Ground truth (synthetic data only): ``train_meta.parquet`` (``index``), ``verification/<name>_meta.parquet``,
``ijb/<name>/meta.parquet`` (``index`` column or one row per image in order), ``tinyface/meta.parquet``
(``part`` or ``split`` column plus ``index``); columns ``gt_quality`` and, where present,
``degradations`` ('+'-joined type names, '' for a clean image).

Each :class:`SplitSource` opens its file lazily and decodes one image per ``load(i)`` call, so a
stream of them holds one chunk of decoded images at a time (each already downscaled to
``quality.max_side`` if larger: :func:`.score_dataset.score_items` does it as it loads them). (A verification ``.bin`` is one pickle:
its encoded bytes are held while that split is scored.)
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

GT_COLUMNS = ["split", "index", "gt_quality", "degradations"]


class PreparedDataError(ValueError):
    """The prepared directory lacks what the quality stage needs; the message names the path."""


@dataclass
class SplitSource:
    """One split: ``length`` images, ``load(i)`` → RGB uint8 (H, W, 3); ``files`` it reads (for fingerprints)."""

    split: str
    length: int
    load: Callable[[int], np.ndarray]
    files: tuple[Path, ...] = ()


def _train_source(prepared: Path) -> Optional[SplitSource]:
    rec = prepared / "train.rec"
    if not rec.exists():
        return None
    from marginlab.data.formats import decode_image, open_recordio

    reader = open_recordio(rec)

    def load(i: int) -> np.ndarray:
        data, _label = reader[i]
        return decode_image(data, source=f"{rec}[{i}]")

    return SplitSource("train", len(reader), load, (rec, rec.with_suffix(".idx")))


def _bin_sources(prepared: Path) -> list[SplitSource]:
    from marginlab.data.formats import decode_image, read_bin_encoded

    out = []
    for path in sorted((prepared / "verification").glob("*.bin")):
        encoded, _ = read_bin_encoded(path)  # for the length; released before scoring
        length = len(encoded)
        del encoded
        state: dict[str, list] = {}

        def load(i: int, path: Path = path, state: dict = state, last: int = length - 1) -> np.ndarray:
            if "encoded" not in state:  # read the pickle when the split is scored...
                state["encoded"] = read_bin_encoded(path)[0]
            image = decode_image(bytes(state["encoded"][i]), source=f"{path}[{i}]")
            if i == last:  # ...and release it after its last image (images are loaded in order)
                state.clear()
            return image

        out.append(SplitSource(f"bin:{path.stem}", length, load, (path,)))
    return out


def _ijb_sources(prepared: Path) -> list[SplitSource]:
    root = prepared / "ijb"
    if not root.is_dir():
        return []
    from marginlab.data.formats import read_ijb

    out = []
    for set_dir in sorted(p for p in root.iterdir() if p.is_dir() and (p / "meta").is_dir()):
        ijb = read_ijb(set_dir, set_dir.name)
        files = tuple(sorted(p for p in (set_dir / "meta").iterdir() if p.is_file()))
        out.append(SplitSource(f"ijb:{set_dir.name}", len(ijb.faces), ijb.load_aligned, files))
    return out


def _tinyface_sources(prepared: Path) -> list[SplitSource]:
    root = prepared / "tinyface"
    if not root.is_dir():
        return []
    from marginlab.data.formats import IDENTIFICATION_PARTS, decode_image, read_identification_set

    parts = read_identification_set(root)  # paths sorted per part: positions are the index
    out = []
    for part in IDENTIFICATION_PARTS:
        paths = list(parts.get(part, ([], None))[0])
        if not paths:
            continue

        def load(i: int, paths: list = paths) -> np.ndarray:
            return decode_image(Path(paths[i]).read_bytes(), source=str(paths[i]))

        out.append(SplitSource(f"tinyface:{part}", len(paths), load, tuple(Path(p) for p in paths)))
    return out


def prepared_sources(prepared_dir: str | Path) -> list[SplitSource]:
    """Every scorable split of ``prepared_dir``: train, verification bins, IJB sets, TinyFace parts."""
    prepared = Path(prepared_dir)
    if not prepared.is_dir():
        raise PreparedDataError(f"prepared data directory {prepared} not found (run the prepare stage first)")
    sources = [s for s in [_train_source(prepared)] if s is not None]
    sources += _bin_sources(prepared) + _ijb_sources(prepared) + _tinyface_sources(prepared)
    if not sources:
        raise PreparedDataError(f"{prepared}: no images found (expected train.rec, verification/*.bin, ijb/<name>/ "
                                "or tinyface/)")
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
        meta = meta[meta[col].astype(str).isin([part, f"tinyface:{part}"])]
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
    prepared = Path(prepared_dir)
    lengths = {s.split: s.length for s in sources} if sources else {}
    frames = [_meta_frame(prepared / "train_meta.parquet", "train", lengths.get("train"))]
    for path in sorted((prepared / "verification").glob("*_meta.parquet")):
        split = f"bin:{path.name[: -len('_meta.parquet')]}"
        frames.append(_meta_frame(path, split, lengths.get(split)))
    ijb_root = prepared / "ijb"
    if ijb_root.is_dir():
        for set_dir in sorted(p for p in ijb_root.iterdir() if p.is_dir()):
            split = f"ijb:{set_dir.name}"
            frames.append(_meta_frame(set_dir / "meta.parquet", split, lengths.get(split)))
    tiny_meta = prepared / "tinyface" / "meta.parquet"
    if tiny_meta.is_file():
        from marginlab.data.formats import IDENTIFICATION_PARTS

        for part in IDENTIFICATION_PARTS:
            frames.append(_meta_frame(tiny_meta, f"tinyface:{part}", part=part))
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                             zip(GT_COLUMNS, ["object", "int64", "float64", "object"])})
    return pd.concat(frames, ignore_index=True)[GT_COLUMNS]


__all__ = ["GT_COLUMNS", "PreparedDataError", "SplitSource", "iter_items", "load_ground_truth", "prepared_sources",
           "sources_fingerprint"]
