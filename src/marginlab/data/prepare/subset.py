"""``data.subset_index``: the AdaFace Table 1 training subset, selected as the official code selects it.

The official code (github mk-minchul/AdaFace, ``--train_data_subset``) trains its ablations on MS1MV2
unpacked to an image folder and subsets it in ``data.py`` (``DataModule.subset_ms1mv2_dataset``):

1. the index file ``assets/ms1mv2_train_subset_index.txt`` is read as ``[int(i) for i in
   f.read().split(',')]``: indices into the ``samples`` of a torchvision ``ImageFolder`` of the
   unpacked tree;
2. identities with fewer than 5 selected images (``value_counts < 5``) are erased;
3. the remaining ImageFolder class indices are renumbered in increasing order (``adjuster``).

**ImageFolder order** (torchvision ``datasets/folder.py``, ``find_classes`` and ``make_dataset``):
class folders are the directory entries of the root (``os.scandir``, ``is_dir()`` following links,
hidden names included) sorted as strings, class index = rank in that order; within a class the
samples come from ``sorted(os.walk(class_dir, followlinks=True))`` (walk roots sorted by path
string), files sorted by name, kept when ``path.lower().endswith(IMG_EXTENSIONS)``
(:data:`IMAGEFOLDER_EXTENSIONS`).  A class folder with no such file is refused (``allow_empty=False``).

**A ``.rec``** is mapped to the folder the official converter would write (``convert.py``,
``save_rec_to_img_dir``): it reads record 0's header, takes image keys ``1 .. L0-1``
(``range(1, max_idx)``) and writes record ``idx`` to ``imgs/<label>/<idx>.jpg``, ``<label>`` the
record's integer label: the file number is the *record key* (global, from 1), not a per-label counter.
So the ImageFolder order of a ``.rec`` is: labels sorted as strings (``"0" < "1" < "10" < "2"``), and
within a label the keys sorted as file-name strings (``"1.jpg" < "10.jpg" < "100.jpg" < "2.jpg"``).
The converter needs the InsightFace header record; a headerless ``.rec`` (or one whose ``.idx`` lacks
image keys) has no such folder and is refused.  Labels come from the header's identity ranges; each
selected record's own label is checked against it when read.

What differs from the official code, on purpose:

* the file is checked: every entry must be a non-negative decimal integer below the number of
  images, with no duplicates (the official code would wrap a negative index around, count a
  duplicate twice, or fail with a bare ``IndexError``); entries may be separated by commas and/or
  whitespace, and one trailing comma is allowed;
* the kept identities are numbered ``0..K-1`` contiguously.  The official ``adjuster`` walks
  ``range(max_label + 1)`` skipping only the erased classes, so a class with *no* selected image
  below the largest kept one would still take a label number (an unused class of the head).  The
  order is the same; ``manifest["subset"]["official_label_slots"]`` records how many numbers the
  official code would use (equal to K when no such class exists);
* the images are written in ImageFolder order (grouped by label) instead of the index file's order;
  training shuffles them either way.

With ``data.skip_corrupt`` a selected image that cannot be decoded is skipped (listed in the manifest);
an identity left with no image is dropped and the labels stay contiguous.  The <5 rule is applied to
the selection, before decoding, as the official code applies it to the index list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from marginlab.data.formats import (
    CorruptImageError,
    DataFormatError,
    EmptyFolderError,
    FolderFormatError,
    ImagePolicy,
    MissingFileError,
    RecordIOError,
    conform_encoded,
    idx_path_for,
    open_recordio,
    write_recordio,
)
from marginlab.data.prepare.files import require_file, write_train_meta
from marginlab.core.io import write_parquet
from marginlab.core.layouts import PreparedLayout

__all__ = [
    "IMAGEFOLDER_EXTENSIONS",
    "MAX_INDEX_BYTES",
    "MIN_IMAGES_PER_IDENTITY",
    "SubsetIndexError",
    "SubsetSelection",
    "imagefolder_samples",
    "ingest_subset",
    "parse_subset_index",
    "read_subset_index",
    "recordio_imagefolder_order",
    "select_subset",
]

#: torchvision.datasets.folder.IMG_EXTENSIONS (what ImageFolder accepts; compared lower-cased).
IMAGEFOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: The official rule: identities with fewer selected images than this are dropped.
MIN_IMAGES_PER_IDENTITY = 5
#: The largest index file read: all 5.8 M indices of the full MS1MV2 (7 digits at most) with ", "
#: between them take about 51 MB, and the official subset file a few MB; a larger file is not an index.
MAX_INDEX_BYTES = 64 * 2**20

_KEY = "data.subset_index"
_TOKEN = re.compile(r"[^,\s]+")  # an entry: what lies between commas and/or whitespace


class SubsetIndexError(DataFormatError):
    """The subset index file is malformed or does not fit the training set."""


# --------------------------------------------------------------------------- the index file
def read_subset_index(path: str | Path) -> np.ndarray:
    """The indices of ``path`` (int64, file order): comma- and/or whitespace-separated decimal integers.

    Raises :class:`SubsetIndexError` naming the file and the entry for an empty file or entry, a
    non-integer, a negative number or a duplicate (the range is checked by :func:`select_subset`).
    """
    path = Path(path)
    return parse_subset_index(_read_index_file(path), path)


def _read_index_file(path: Path) -> bytes:
    """The bytes of ``path``, checked before reading: a directory, a device or a file over
    :data:`MAX_INDEX_BYTES` is refused with the key, path and size named (it would be read whole)."""
    if path.is_dir():
        raise SubsetIndexError(
            f"{_KEY}: {path} is a directory, expected a text file of indices (comma- or whitespace-separated integers)"
        )
    if path.exists() and not path.is_file():
        raise SubsetIndexError(f"{_KEY}: {path} is not a regular file, expected a text file of indices")
    require_file(path, _KEY)
    size, data = path.stat().st_size, b""
    if size <= MAX_INDEX_BYTES:
        with path.open("rb") as f:
            data = f.read(MAX_INDEX_BYTES + 1)  # bounded, should the file have grown since
    if max(size, len(data)) > MAX_INDEX_BYTES:
        raise SubsetIndexError(
            f"{_KEY}: {path} is {max(size, len(data)):,} bytes, more than the {MAX_INDEX_BYTES:,} an index file can need "
            "(all 5.8 M indices of MS1MV2 take about 51 MB); refused without reading it. Is this the index file?"
        )
    return data


def parse_subset_index(data: bytes, path: Path) -> np.ndarray:
    """:func:`read_subset_index` of the file's bytes ``data`` (``path`` names it in messages)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise SubsetIndexError(f"{_KEY}: {path}: not a text file of integers (byte {exc.start} is not ASCII)") from None
    tokens = _TOKEN.findall(text)
    if not tokens:
        raise SubsetIndexError(f"{_KEY}: {path}: the file holds no index")
    empty = re.search(r"(?:^|,)\s*,", text)  # a leading comma or two in a row (one trailing comma is fine)
    if empty:
        before = len(_TOKEN.findall(text, 0, empty.start()))
        raise SubsetIndexError(f"{_KEY}: {path}: empty entry after entry {before} (two commas in a row, or a leading comma)")
    joined = "".join(tokens)  # text is ASCII, so isdigit() means 0-9 only
    if not joined.isdigit() or max(map(len, tokens)) > 18:  # find the entry (the fast path skips this loop)
        for n, tok in enumerate(tokens, start=1):
            if not tok.isdigit():
                if re.fullmatch(r"-[0-9]+", tok):
                    raise SubsetIndexError(f"{_KEY}: {path}: entry {n} is negative ({tok}); indices start at 0")
                shown = tok if len(tok) <= 40 else tok[:37] + "..."
                raise SubsetIndexError(f"{_KEY}: {path}: entry {n} ({shown!r}) is not a non-negative integer")
            if len(tok) > 18:
                raise SubsetIndexError(f"{_KEY}: {path}: entry {n} ({tok[:20]}...) is far out of range")
    values = np.fromiter(map(int, tokens), dtype=np.int64, count=len(tokens))
    ordered = np.sort(values)
    if (ordered[1:] == ordered[:-1]).any():
        uniq, first, counts = np.unique(values, return_index=True, return_counts=True)
        dup = uniq[counts > 1]
        v = int(dup[np.argmin(first[counts > 1])])  # the duplicate met first in the file
        at = (np.flatnonzero(values == v)[:2] + 1).tolist()
        raise SubsetIndexError(
            f"{_KEY}: {path}: index {v} appears more than once (entries {at[0]} and {at[1]}; "
            f"{int((counts > 1).sum())} duplicated value(s) in all)"
        )
    return values


# --------------------------------------------------------------------------- ImageFolder order
def imagefolder_samples(root: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """torchvision ``ImageFolder(root).samples`` without torchvision: ``(paths, class indices, classes)``.

    See the module docstring for the rule; a class folder without an accepted image raises
    :class:`EmptyFolderError` (torchvision raises ``FileNotFoundError`` there).
    """
    directory = os.path.expanduser(str(root))
    if not os.path.isdir(directory):
        raise MissingFileError(f"data.train_folders: directory {root} not found")
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if not classes:
        raise FolderFormatError(f"data.train_folders: {root}: no class sub-folders")
    paths: list[Path] = []
    targets: list[int] = []
    for class_index, name in enumerate(classes):
        before = len(paths)
        for dirpath, _, fnames in sorted(os.walk(os.path.join(directory, name), followlinks=True)):
            for fname in sorted(fnames):
                path = os.path.join(dirpath, fname)
                if path.lower().endswith(IMAGEFOLDER_EXTENSIONS):
                    paths.append(Path(path))
        if len(paths) == before:
            raise EmptyFolderError(
                f"data.train_folders: class folder {os.path.join(directory, name)} holds no image "
                f"({', '.join(IMAGEFOLDER_EXTENSIONS)}); torchvision's ImageFolder, and so the official "
                "subset indexing, refuses such a tree"
            )
        targets.extend([class_index] * (len(paths) - before))
    return paths, np.asarray(targets, dtype=np.int64), classes


def recordio_imagefolder_order(keys: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """ImageFolder order of the folder ``convert.py`` makes of a ``.rec``: ``imgs/<label>/<key>.jpg``.

    Returns ``(positions, class indices, classes)``: ``positions[j]`` is the reader position of
    ImageFolder sample ``j``, ``class indices[j]`` its ImageFolder class, ``classes`` the folder names.
    """
    keys = np.asarray(keys, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), []
    present = np.unique(labels)
    names = present.astype(str)
    by_name = np.argsort(names, kind="stable")  # string order of the folder names
    rank = np.empty(int(present.max()) + 1, dtype=np.int64)
    rank[present[by_name]] = np.arange(len(present))
    class_of_pos = rank[labels]
    # File names "<key>.jpg": as strings "1.jpg" < "10.jpg" < "2.jpg".  Fixed-width bytes pad with NUL,
    # which sorts before every digit exactly as "." does, so the key's digits give the same order.
    positions = np.lexsort((keys.astype("S20"), class_of_pos))
    return positions.astype(np.int64), class_of_pos[positions], names[by_name].tolist()


# --------------------------------------------------------------------------- the selection
@dataclasses.dataclass(frozen=True)
class _IndexFile:
    path: Path
    values: np.ndarray
    sha256: str
    size: int


@dataclasses.dataclass
class SubsetSelection:
    """The kept ImageFolder samples, in ImageFolder order, with their new contiguous labels."""

    samples: np.ndarray  # ImageFolder sample indices kept (sorted)
    labels: np.ndarray  # new label of each (0..K-1, non-decreasing)
    kept_classes: np.ndarray  # ImageFolder class index of each new label
    dropped_classes: np.ndarray  # ImageFolder classes with 1..4 selected images
    dropped_images: int  # selected images in those classes
    official_label_slots: int  # label numbers the official adjuster would use (K + classes it skips over unselected)


def select_subset(indices: np.ndarray, targets: np.ndarray, n_classes: int, *, path: Path, source: str) -> SubsetSelection:
    """Apply the official rule to ``indices`` (into samples with ImageFolder classes ``targets``)."""
    indices = np.asarray(indices, dtype=np.int64)
    n = len(targets)
    out = np.flatnonzero((indices < 0) | (indices >= n))
    if len(out):
        e = int(out[0])
        raise SubsetIndexError(
            f"{_KEY}: {path}: index {int(indices[e])} (entry {e + 1}) is out of range: the training set {source} "
            f"has {n} images in ImageFolder order (valid indices 0..{n - 1}); {len(out)} entr"
            f"{'y is' if len(out) == 1 else 'ies are'} out of range. Is this the index file of this dataset?"
        )
    sel_targets = targets[indices]
    counts = np.bincount(sel_targets, minlength=n_classes)
    erased = (counts > 0) & (counts < MIN_IMAGES_PER_IDENTITY)
    kept_classes = np.flatnonzero(counts >= MIN_IMAGES_PER_IDENTITY)
    if len(kept_classes) == 0:
        raise SubsetIndexError(
            f"{_KEY}: {path}: no identity has {MIN_IMAGES_PER_IDENTITY} or more selected images "
            f"({len(indices)} indices over {int((counts > 0).sum())} identities); nothing left to train on"
        )
    samples = np.sort(indices[~erased[sel_targets]])
    new_label = np.full(n_classes, -1, dtype=np.int64)
    new_label[kept_classes] = np.arange(len(kept_classes))
    top = int(kept_classes[-1])
    return SubsetSelection(
        samples=samples,
        labels=new_label[targets[samples]],
        kept_classes=kept_classes,
        dropped_classes=np.flatnonzero(erased),
        dropped_images=int(counts[erased].sum()),
        official_label_slots=top + 1 - int(erased[: top + 1].sum()),
    )


# --------------------------------------------------------------------------- ingest
def ingest_subset(out: Path, source: str, src: Path, index_path: Path, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> tuple[dict, dict]:
    """Write the subset of ``src`` (a ``.rec`` or a folder tree) to ``out/train.rec``.

    Returns ``(train ingest info, manifest["subset"])``; also writes ``train_meta.parquet`` and
    ``train_classes.parquet`` (new label -> ImageFolder class folder name).
    """
    if source not in ("recordio", "folders"):
        raise ValueError(f"{_KEY} applies to data.source 'recordio' or 'folders', not {source!r}")
    data = _read_index_file(index_path)  # parsed and hashed from the same bytes
    index = _IndexFile(index_path, parse_subset_index(data, index_path), hashlib.sha256(data).hexdigest(), len(data))
    if source == "recordio":
        return _from_recordio(out, src, index, policy, skip_corrupt, progress)
    return _from_folders(out, src, index, policy, skip_corrupt, progress)


def _from_folders(out: Path, root: Path, index: _IndexFile, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> tuple[dict, dict]:
    paths, targets, classes = imagefolder_samples(root)
    sel = select_subset(index.values, targets, len(classes), path=index.path, source=str(root))

    def describe(j: int) -> tuple[str, dict]:
        return f"data.train_folders: {paths[j]}", {"source": str(paths[j])}

    def read(j: int, where: str) -> bytes:
        try:
            return paths[j].read_bytes()
        except OSError as exc:
            raise CorruptImageError(f"{where}: cannot read ({exc})") from None

    info = _write_selected(out, sel, classes, describe, read, policy, skip_corrupt, progress, jpeg_only=True)
    return info, _subset_manifest(index, sel, classes, len(paths), "torchvision ImageFolder order of data.train_folders", info)


def _from_recordio(out: Path, rec: Path, index: _IndexFile, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> tuple[dict, dict]:
    require_file(rec, "data.train_rec")
    require_file(idx_path_for(rec), "data.train_rec (.idx beside the .rec)")
    try:
        reader = open_recordio(rec, skip_corrupt=skip_corrupt)
    except DataFormatError as exc:
        raise type(exc)(f"data.train_rec: {exc}") from None
    try:
        if not reader.has_header:
            raise RecordIOError(
                f"{_KEY}: data.train_rec {rec} has no InsightFace header record; the subset indexes the folder "
                "AdaFace's convert.py unpacks a .rec to, and that converter needs the header (image keys 1..L0-1)"
            )
        if reader.skipped:
            key, reason = reader.skipped[0]
            raise RecordIOError(
                f"{_KEY}: data.train_rec {rec}: image record key {key} is unreadable ({reason}); the subset's "
                f"indices count every image of the converted folder, so they cannot be mapped with "
                f"{len(reader.skipped)} record(s) missing (data.skip_corrupt does not apply here)"
            )
        labels = reader.labels
        positions, targets, classes = recordio_imagefolder_order(reader.keys, labels)
        sel = select_subset(index.values, targets, len(classes), path=index.path, source=str(rec))

        def describe(j: int) -> tuple[str, dict]:
            i = int(positions[j])
            key = int(reader.keys[i])
            return f"data.train_rec: {rec} record key {key} (position {i})", {"source": str(rec), "key": key, "position": i}

        def read(j: int, where: str) -> bytes:
            i = int(positions[j])
            try:
                data, label = reader[i]
            except DataFormatError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            if label != labels[i]:
                raise RecordIOError(f"{where}: record label {label} disagrees with its identity range (class {int(labels[i])})")
            return data

        info = _write_selected(out, sel, classes, describe, read, policy, skip_corrupt, progress, jpeg_only=False)
    finally:
        reader.close()
    order = "AdaFace convert.py's imgs/<label>/<record key>.jpg of data.train_rec, in torchvision ImageFolder order"
    return info, _subset_manifest(index, sel, classes, len(positions), order, info)


def _write_selected(out: Path, sel: SubsetSelection, classes: list[str], describe: Callable[[int], tuple[str, dict]],
                    read: Callable[[int, str], bytes], policy: ImagePolicy, skip_corrupt: bool, progress: bool, *,
                    jpeg_only: bool) -> dict:
    """Decode, conform and write the selected samples to ``out/train.rec`` (InsightFace layout).

    ``describe(j)`` names ImageFolder sample ``j`` for messages and gives the fields of its
    ``skipped``/``warnings`` entries; ``read(j, where)`` gives its bytes.  Under ``skip_corrupt`` a
    bad sample is skipped and an identity left with no image is dropped (labels stay contiguous).
    """
    skipped: list[dict] = []
    warnings: list[dict] = []
    kept_names: list[str] = []  # ImageFolder class name of each label written
    state = {"last": -1, "resized": 0, "written": 0}

    def samples() -> Iterator[tuple[bytes, int]]:
        for j, label in tqdm(zip(sel.samples.tolist(), sel.labels.tolist()), total=len(sel.samples),
                             desc="subset -> train.rec", unit="img", disable=not progress):
            where, entry = describe(j)
            try:
                result = conform_encoded(read(j, where), policy, source=where, jpeg_only=jpeg_only)
            except DataFormatError as exc:
                if not skip_corrupt:
                    raise
                skipped.append({**entry, "reason": str(exc)})
                continue
            if label != state["last"]:
                kept_names.append(classes[int(sel.kept_classes[label])])
                state["last"] = label
            state["written"] += 1
            state["resized"] += int(result.resized)
            warnings.extend({**entry, "message": m} for m in result.warnings)
            yield result.data, len(kept_names) - 1

    try:
        info = write_recordio(PreparedLayout(out).train_rec, samples(), with_header=True)
    except DataFormatError:
        if state["written"] == 0 and skipped:
            raise DataFormatError(f"{_KEY}: every selected image was skipped as corrupt; nothing left to train on") from None
        raise
    with open_recordio(PreparedLayout(out).train_rec) as reader:
        final = np.asarray(reader.labels, dtype=np.int64)
    write_train_meta(out, final)
    write_parquet(PreparedLayout(out).train_classes,
                  pd.DataFrame({"label": np.arange(len(kept_names), dtype=np.int64), "class_name": kept_names}))
    emptied = sorted({classes[int(c)] for c in sel.kept_classes} - set(kept_names))
    return {
        "images": int(info["num_images"]),
        "classes": int(info["num_classes"]),
        "ingest": "subset",
        "resized": int(state["resized"]),
        "skipped": skipped,
        "warnings": warnings,
        "dropped_classes": emptied,  # kept by the subset rule, then emptied by skipped images
    }


def _subset_manifest(index: _IndexFile, sel: SubsetSelection, classes: list[str], n_images: int, order: str, info: dict) -> dict:
    return {
        "path": str(index.path),
        "sha256": index.sha256,
        "bytes": index.size,
        "indices": len(index.values),
        "order": order,
        "source_images": int(n_images),
        "source_identities": len(classes),
        "min_images_per_identity": MIN_IMAGES_PER_IDENTITY,
        "selected_images": len(sel.samples),
        "selected_identities": len(sel.kept_classes),
        "dropped_identities": len(sel.dropped_classes),
        "dropped_images": int(sel.dropped_images),
        "dropped_identity_names": [classes[int(c)] for c in sel.dropped_classes],
        "official_label_slots": int(sel.official_label_slots),
        "written_images": int(info["images"]),
        "written_identities": int(info["classes"]),
    }
