"""The prepare stage: build the prepared-data directory from ``params.data``.

Layout of ``<out_dir>`` (the cross-module contract)::

    train.rec, train.idx          InsightFace RecordIO (JPEG payloads)
    train_meta.parquet            index (reader position), label [, synthetic ground truth]
    verification/<name>.bin       verification pairs [, <name>_meta.parquet for synthetic]
    ijb/<name>/                   IJB meta layout (meta/*.txt, loose_crop/) [, meta.parquet]
    tinyface/                     identification set (synthetic only) [, meta.parquet]
    samples.png                   grid of samples (by identity; synthetic also by quality)
    manifest.json                 counts, sources, sha256 of every file, channel order, image policy,
                                  skipped items, decoder warnings, ...

Sources (``data.source``):

* ``synthetic``: :func:`marginlab.data.synthetic.write_synthetic` (images drawn at
  ``data.synthetic.image_size``; its worker processes die with prepare).
* ``recordio``: ``data.train_rec`` and the ``.idx`` beside it are read in one pass (tqdm bar): every
  record is read, its label checked and its image decoded.  If every image is already
  ``data.image_size`` square and none is skipped, the files are hard-linked (copied across file
  systems) to ``train.rec/.idx`` as they are; otherwise the RecordIO is rewritten during the same
  pass with the conformed images (records before the first change are copied as bytes, not decoded
  again; under ``data.skip_corrupt`` bad records are left out, classes left empty are dropped and
  labels renumbered contiguously).  ``train_meta.parquet`` comes from the labels of that pass.
* ``folders``: identity folders converted by :func:`marginlab.data.formats.folders_to_recordio`
  (every image decoded and conformed).

Image policy (``data.image_size``, ``data.resize``; recorded as ``manifest["image_policy"]``): every
ingested real image (training records, identity-folder images, ``.bin`` images) is brought to
``image_size`` x ``image_size`` once, here: a non-square image is made square by a centre crop
(``center_crop``) or black padding (``pad``), then resized (area interpolation when shrinking,
bilinear when enlarging) and re-encoded as JPEG quality 95 (a resized PNG in a ``.bin`` becomes a
JPEG too).  Images already at that size keep their bytes (an identity-folder PNG is still
re-encoded to JPEG, pixels unchanged).  The counts of changed images are
``counts["train_ingest"]["resized"]`` and ``counts["verification"][<bin>]["resized"]``
(:func:`marginlab.data.formats.images.conform_encoded`).  Images are decoded one at a time, so a folder of
6000x4000 photos never holds more than one of them decoded.  IJB loose crops need no resizing: they
are aligned to the 112x112 ArcFace template from their landmarks when read
(:meth:`marginlab.data.formats.ijb.IJBSet.load_aligned`).

Errors and warnings: with ``data.skip_corrupt: false`` the first bad image or record raises a
:class:`~marginlab.data.formats.errors.DataFormatError` naming the params key, the user's file (never the
copy in the temporary output) and the key/position, e.g. ``data.train_rec: /data/train.rec record
key 37 (position 36): truncated JPEG ...``; with ``true`` it is skipped and listed in
``manifest["skipped"]``.  Images that decode but make libjpeg print a warning (``Corrupt JPEG data:
2 extraneous bytes before marker 0xd9``, see :func:`marginlab.data.formats.images.decode_image_checked`)
are kept and listed in ``manifest["warnings"]`` (``source``, ``key``/``image``, ``message``) and
counted in ``counts["warnings"]``.  A ``.bin`` with 0 pairs is rejected.

In every case each ``data.val_bins`` file is read with ``read_bin_encoded``, every image decoded and
conformed, and the file linked to ``verification/<stem>.bin`` (rewritten when an image was resized or,
with ``skip_corrupt``, pairs with an undecodable image were dropped), and each ``data.ijb`` entry gets
its three meta files copied to ``ijb/<name>/meta/`` and ``ijb/<name>/image_dir.json`` naming
``image_dir`` (IJB-C is hundreds of thousands of crops, so they are referenced, not copied: relative
when inside the project, so a moved checkout still finds them; see :mod:`marginlab.data.formats.ijb`),
checked with ``read_ijb`` and for the existence of every listed image. No symlinks: DVC neither
hashes nor restores them in an output.

The user's files are never modified: a hard-linked input shares its inode (mode, times, bytes) with
the user's file, so it is never chmod-ed (``_apply_umask`` skips files with more than one link).

Everything is written into a temporary sibling directory that replaces ``out_dir`` only when
complete (:func:`marginlab.io.atomic_dir`).  While prepare runs it holds an ``flock`` on that
directory; on start, temporary siblings of ``out_dir`` that no live process holds (left by a killed
prepare) are removed.  ``manifest.json`` lists the sha256 of every regular file written (a symlink,
should one appear, is listed under ``links`` and not hashed).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import platform
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from marginlab.config import Params
from marginlab.data.formats import (
    IMAGE_DIR_FILE,
    CorruptImageError,
    DataFormatError,
    IJBFormatError,
    ImagePolicy,
    MissingFileError,
    RecordIOError,
    VerificationBinError,
    conform_encoded,
    decode_image_checked,
    folders_to_recordio,
    idx_path_for,
    ijb_meta_paths,
    open_recordio,
    read_bin_encoded,
    read_ijb,
    write_bin,
    write_image_dir_ref,
    write_recordio,
)
from marginlab.data.model_input import NORMALISATION
from marginlab.data.sample_grid import write_image_grid
from marginlab.data.synthetic import quality_policies, resolve_workers, write_synthetic
from marginlab.io import atomic_dir, sha256_file, write_json, write_parquet

__all__ = ["prepare_data", "hash_tree", "link_or_copy", "clean_stale_temps", "image_policy"]

MANIFEST_VERSION = 2  # 2: image_policy, warnings, resized counts


# --------------------------------------------------------------------------- files
def hash_tree(root: str | Path, *, exclude: tuple[str, ...] = (), progress: bool = True) -> tuple[dict[str, dict], list[dict]]:
    """``({relative path: {"sha256", "bytes"}}, [symlinks])`` for every regular file under ``root``.

    Symlinks (to files or directories) are not followed: they are returned as
    ``{"path", "target"}`` entries instead.
    """
    root = Path(root)
    files: list[Path] = []
    links: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for name in sorted(dirnames):
            if (d / name).is_symlink():
                links.append({"path": (d / name).relative_to(root).as_posix(), "target": os.readlink(d / name)})
        for name in filenames:
            p = d / name
            rel = p.relative_to(root).as_posix()
            if rel in exclude:
                continue
            if p.is_symlink():
                links.append({"path": rel, "target": os.readlink(p)})
            else:
                files.append(p)
    files.sort()
    total = sum(p.stat().st_size for p in files)
    out: dict[str, dict] = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc="sha256", disable=not progress) as bar:
        for p in files:
            out[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p, progress=bar), "bytes": p.stat().st_size}
    return out, sorted(links, key=lambda e: e["path"])


def link_or_copy(src: str | Path, dst: str | Path) -> str:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it. Returns ``"hardlink"`` or ``"copy"``."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def _resolve(path: str | Path, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _require_file(path: Path, key: str) -> None:
    if not path.is_file():
        raise MissingFileError(f"{key}: file {path} not found")


# --------------------------------------------------------------------------- stale temporaries
def _stale_pattern(out_dir: Path) -> re.Pattern:
    """Names :func:`marginlab.io.atomic_dir` gives its temporary sibling of ``out_dir`` (mkdtemp: 8 chars)."""
    return re.compile(rf"\.{re.escape(out_dir.name)}\.[a-z0-9_]{{8}}\.tmp")


def _held_by_live_process(path: Path) -> bool:
    """True if a running prepare holds ``path`` (its flock), or if that cannot be told (kept, to be safe)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # EWOULDBLOCK: a live prepare holds it; anything else (no flock here): unknown
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def clean_stale_temps(out_dir: str | Path) -> list[str]:
    """Remove what a killed prepare left beside ``out_dir``; returns the names removed.

    Only our own naming is touched: ``.<name>.XXXXXXXX.tmp`` directories (the temporary output) that
    no live process holds an flock on, and ``.<name>.old`` (the previous output during the final
    swap) when no such directory is in use.
    """
    out_dir = Path(out_dir)
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    pattern = _stale_pattern(out_dir)
    removed, busy = [], False
    for entry in sorted(parent.iterdir()):
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            if _held_by_live_process(entry):
                busy = True
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    old = parent / f".{out_dir.name}.old"
    if not busy and old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old.name)
    return removed


def _lock_dir(directory: Path) -> int:
    """Take an exclusive flock on ``directory``; returns the descriptor that holds it (close to release;
    the kernel releases it when the process dies, which is what marks a temporary output as stale)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without flock: stale copies are then kept, never deleted
        pass
    return fd


# --------------------------------------------------------------------------- train set ingest
def _train_meta(out: Path, labels: np.ndarray) -> pd.DataFrame:
    labels = np.asarray(labels, dtype=np.int64)
    meta = pd.DataFrame({"index": np.arange(len(labels), dtype=np.int64), "label": labels})
    write_parquet(out / "train_meta.parquet", meta)
    return meta


def _restate(exc: DataFormatError, where: str, prefix: str) -> DataFormatError:
    """``exc`` (same class) with its message re-addressed to ``where``, dropping a leading ``prefix: ``."""
    msg = str(exc)
    if msg.startswith(where):
        return exc
    if msg.startswith(prefix):
        msg = msg[len(prefix) :].lstrip(": ")
    return type(exc)(f"{where}: {msg}")


@dataclasses.dataclass
class _Record:
    """One training record after the check pass: the bytes to store, or why it was skipped."""

    position: int
    key: int
    label: int
    data: bytes = b""
    changed: bool = False  # resized (RecordIO payloads of any format are otherwise kept)
    error: str = ""


def _checked_records(reader: Any, rec: Path, policy: ImagePolicy, skip_corrupt: bool, progress: bool, warnings: list[dict]) -> Iterator[_Record]:
    """Read, label-check, decode and conform every record of ``reader`` (one pass, tqdm bar).

    Strict mode raises the first problem addressed as ``data.train_rec: <rec> record key K
    (position i)``; under ``skip_corrupt`` the record comes back with ``error`` set.
    """
    expected = reader.labels
    for i in tqdm(range(len(reader)), desc=f"check {rec.name}", unit="rec", disable=not progress):
        key = int(reader.keys[i])
        where = f"data.train_rec: {rec} record key {key} (position {i})"
        try:
            data, label = reader[i]
            if label != expected[i]:
                raise RecordIOError(f"{where}: record label {label} disagrees with its identity range (class {int(expected[i])})")
            result = conform_encoded(data, policy, source=where)
        except DataFormatError as exc:
            error = _restate(exc, where, f"{rec} (key {key})")
            if not skip_corrupt:
                raise error from None
            yield _Record(i, key, int(expected[i]), error=str(error))
            continue
        warnings.extend({"source": str(rec), "key": key, "position": i, "message": m} for m in result.warnings)
        yield _Record(i, key, int(label), result.data, result.reencoded)


class _Relabel:
    """Streaming label renumbering for a rewrite: sorted labels become contiguous 0..C-1 as they come."""

    def __init__(self, n: int, contiguous: bool):
        self.contiguous = contiguous
        self.labels = np.empty(n, dtype=np.int64)
        self.count = 0
        self.kept_classes: set[int] = set()
        self._last: int | None = None

    def __call__(self, label: int) -> int:
        if self.contiguous:
            if label != self._last:
                self.kept_classes.add(label)
                self._last = label
            new = len(self.kept_classes) - 1
        else:
            new = label
        self.labels[self.count] = new
        self.count += 1
        return new


def _ingest_recordio(out: Path, rec: Path, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> dict:
    """Check every record of ``rec`` (one pass); link it when nothing changes, else rewrite it in that pass."""
    _require_file(rec, "data.train_rec")
    idx = idx_path_for(rec)
    _require_file(idx, "data.train_rec (.idx beside the .rec)")
    try:
        reader = open_recordio(rec, skip_corrupt=skip_corrupt)
        labels = reader.labels  # header: from the identity ranges (no I/O); headerless: one scan of record headers
    except DataFormatError as exc:  # the message names the .rec/.idx and the key
        raise type(exc)(f"data.train_rec: {exc}") from None
    skipped = [{"source": str(rec), "key": int(k), "reason": r} for k, r in reader.skipped]
    warnings: list[dict] = []
    records = _checked_records(reader, rec, policy, skip_corrupt, progress, warnings)
    unchanged, first = 0, None
    if not skipped:  # nothing is written while every record so far is kept as it is
        for r in records:
            if r.changed or r.error:
                first = r
                break
            unchanged += 1
    if first is None and not skipped:
        how = link_or_copy(rec, out / "train.rec")
        link_or_copy(idx, out / "train.idx")
        reader.close()
        final_labels, dropped, resized = labels, [], 0
    else:
        final_labels, dropped, resized = _rewrite_records(out / "train.rec", reader, labels, unchanged, first, records, skipped)
        how = "rewritten"
        reader.close()
    _train_meta(out, final_labels)
    return {
        "images": int(len(final_labels)),
        "classes": int(final_labels.max()) + 1 if len(final_labels) else 0,
        "ingest": how,
        "resized": int(resized),
        "skipped": skipped,
        "warnings": warnings,
        "dropped_classes": dropped,
    }


def _rewrite_records(dst: Path, reader: Any, labels: np.ndarray, unchanged: int, first: _Record | None, records: Iterator[_Record], skipped: list[dict]) -> tuple[np.ndarray, list[int], int]:
    """Write the kept records to ``dst``: positions ``< unchanged`` copied as read (already checked),
    then ``first`` and the rest of ``records`` (the check pass continues as they are written).

    Returns ``(labels written, dropped original classes, number resized)``.
    """
    contiguous = bool(np.all(np.diff(labels) >= 0))
    relabel = _Relabel(len(labels), contiguous)
    resized = [0]

    def samples() -> Iterator[tuple[bytes, int]]:
        for i in range(unchanged):
            data, label = reader[i]
            yield data, relabel(label)
        for r in ([first] if first is not None else []):
            yield from _kept(r)
        for r in records:
            yield from _kept(r)

    def _kept(r: _Record) -> Iterator[tuple[bytes, int]]:
        if r.error:
            skipped.append({"source": str(reader.rec_path), "key": r.key, "reason": r.error})
            return
        resized[0] += int(r.changed)  # a record's bytes change only when it is resized
        yield r.data, relabel(r.label)

    try:
        write_recordio(dst, samples(), with_header=contiguous)
    except DataFormatError:
        if relabel.count == 0:
            raise DataFormatError(f"data.train_rec: {reader.rec_path}: every record was skipped; nothing left to train on") from None
        raise
    kept = relabel.labels[: relabel.count]
    dropped = sorted(set(range(int(labels.max()) + 1)) - relabel.kept_classes) if contiguous and len(labels) else []
    return kept, dropped, resized[0]


def _ingest_folders(out: Path, root: Path, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> dict:
    """Convert identity folders (every image decoded and conformed, one at a time)."""
    if not root.is_dir():
        raise MissingFileError(f"data.train_folders: directory {root} not found")
    try:
        info = folders_to_recordio(root, out / "train.rec", skip_corrupt=skip_corrupt, policy=policy, progress=progress)
    except DataFormatError as exc:  # the message names the image file
        raise type(exc)(f"data.train_folders: {exc}") from None
    labels = _labels_of(out / "train.rec")
    _train_meta(out, labels)
    pd.DataFrame({"label": np.arange(len(info["class_names"])), "class_name": info["class_names"]}).pipe(
        lambda f: write_parquet(out / "train_classes.parquet", f)
    )
    return {
        "images": int(len(labels)),
        "classes": int(info["num_classes"]),
        "ingest": "folders_to_recordio",
        "reencoded": int(info.get("reencoded", 0)),
        "resized": int(info.get("resized", 0)),
        "skipped": [{"source": str(p), "reason": r} for p, r in info.get("skipped", [])],
        "warnings": [{"source": str(p), "message": m} for p, m in info.get("warnings", [])],
        "dropped_classes": list(info.get("dropped_classes", [])),
    }


def _labels_of(rec: Path) -> np.ndarray:
    with open_recordio(rec) as reader:
        return np.asarray(reader.labels, dtype=np.int64)


# --------------------------------------------------------------------------- evaluation sets
def _ingest_bin(out: Path, src: Path, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> tuple[str, dict]:
    """Check a verification ``.bin`` (every image decoded and conformed); link it, or rewrite it when
    an image was resized or a pair dropped.  Returns ``(stem, info)`` (info holds ``skipped`` and
    ``warnings`` lists for the manifest)."""
    _require_file(src, "data.val_bins")
    name = src.stem
    dst = out / "verification" / f"{name}.bin"
    if dst.exists():
        raise DataFormatError(f"data.val_bins: two files are named {name}.bin; their stems must differ (second: {src})")
    try:
        encoded, issame = read_bin_encoded(src)  # rejects 0 pairs, wrong counts, non-image entries
    except VerificationBinError as exc:
        raise VerificationBinError(f"data.val_bins: {exc}") from None
    skipped: list[dict] = []
    warnings: list[dict] = []
    bad_pairs: set[int] = set()
    resized = 0
    for i in tqdm(range(len(encoded)), desc=f"check {src.name}", unit="img", disable=not progress):
        try:
            result = conform_encoded(encoded[i], policy, source=f"data.val_bins: {src} (image {i})")
        except CorruptImageError as exc:
            if not skip_corrupt:
                raise
            bad_pairs.add(i // 2)
            skipped.append({"source": str(src), "image": i, "pair": i // 2, "reason": str(exc)})
            continue
        encoded[i] = result.data  # the input bytes are released as they are replaced
        resized += int(result.resized)
        warnings.extend({"source": str(src), "image": i, "message": m} for m in result.warnings)
    if bad_pairs or resized:
        keep = [p for p in range(len(issame)) if p not in bad_pairs]
        if not keep:
            raise DataFormatError(f"data.val_bins: {src}: every pair has an undecodable image; nothing left to evaluate")
        write_bin(dst, [encoded[2 * p + j] for p in keep for j in (0, 1)], issame[keep])
        issame = issame[keep]
        how = "rewritten"
    else:
        how = link_or_copy(src, dst)
    info = {"source": str(src), "pairs": int(len(issame)), "genuine": int(np.sum(issame)), "ingest": how, "resized": resized}
    return name, {**info, "skipped": skipped, "warnings": warnings}


def _ingest_ijb(out: Path, entry: Any, base: Path, progress: bool) -> dict:
    # No image policy here: loose crops of any size are referenced, not copied, and every reader
    # (quality, evaluate) gets faces through IJBSet.load_aligned, which warps each crop to the 112x112
    # ArcFace template from its five landmarks (marginlab.data.formats.ijb, images.align_face).
    meta_dir = _resolve(entry.meta_dir, base)
    image_dir = _resolve(entry.image_dir, base).resolve()
    if not image_dir.is_dir():
        raise MissingFileError(f"data.ijb[{entry.name}].image_dir: directory {image_dir} not found")
    root = out / "ijb" / entry.name
    if root.exists():
        raise IJBFormatError(f"data.ijb: two entries are named {entry.name!r}; names must be unique")
    for key, dst in ijb_meta_paths(root, entry.name).items():
        src = meta_dir / dst.name
        if not src.is_file():
            raise MissingFileError(f"data.ijb[{entry.name}].meta_dir: {src} not found (expected {entry.name}_{key}.txt)")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    write_image_dir_ref(root, image_dir, base)
    ijb = read_ijb(root, entry.name)
    crops = ijb.image_dir
    missing = [im for im in tqdm(ijb.faces["image"].tolist(), desc=f"check {entry.name} crops", unit="img", disable=not progress)
               if not (crops / im).is_file()]
    if missing:
        raise MissingFileError(
            f"data.ijb[{entry.name}]: {len(missing)} of {len(ijb.faces)} images listed in the meta files are missing "
            f"under {image_dir} (first: {missing[0]})"
        )
    return {
        "source": {"meta_dir": str(meta_dir), "image_dir": str(image_dir)},
        "faces": int(len(ijb.faces)),
        "templates": int(ijb.faces["tid"].nunique()),
        "media": int(ijb.faces["mid"].nunique()),
        "pairs": int(len(ijb.pairs)),
        "genuine": int(ijb.pairs["label"].sum()),
        "loose_crop": f"referenced by {IMAGE_DIR_FILE} (not copied)",
    }


def _real_samples_png(out: Path, cell: int, per_row: int = 8, n_identities: int = 8) -> None:
    """``samples.png`` of a real training set: the first images of the first identities.

    Read back from the prepared ``train.rec``, whose images all have the policy's size (``cell``).
    """
    def decode(data: bytes, i: int) -> np.ndarray:  # decoder warnings were recorded by the ingest pass
        return decode_image_checked(data, source=f"train.rec position {i}")[0]

    reader = open_recordio(out / "train.rec")
    labels = np.asarray(reader.labels)
    rows = []
    for c in np.unique(labels)[:n_identities].tolist():
        pos = np.flatnonzero(labels == c)[:per_row]
        rows.append((f"class {c}", [decode(reader[int(i)][0], int(i)) for i in pos]))
    reader.close()
    write_image_grid(out / "samples.png", rows, title="Training set: first images of the first identities", per_row=per_row, cell=cell)


# --------------------------------------------------------------------------- entry point
def image_policy(params: Params) -> ImagePolicy:
    """The ingest image policy of ``params.data`` (``image_size``, ``resize``; JPEG quality 95)."""
    return ImagePolicy(size=int(params.data.image_size), resize=params.data.resize, jpeg_quality=95)


def _synthetic_train(tmp: Path, params: Params, workers: int, progress: bool, manifest: dict) -> dict:
    """Generate the synthetic set into ``tmp``; fills ``manifest["sources"/"generator"]``, returns counts."""
    data = params.data
    n_workers = resolve_workers(workers)
    summary = write_synthetic(tmp, data.synthetic, params.seed, workers=n_workers, progress=progress)
    manifest["sources"] = {"train": "synthetic"}
    manifest["generator"] = {
        "seed": params.seed,
        "synthetic": data.synthetic.model_dump(mode="json"),
        "identity_blocks": summary["identity_blocks"],
        "quality_policies": {k: _policy_json(v) for k, v in quality_policies(data.synthetic).items()},
        "gt_quality": "prod over types t of (1 - severity_t); types exposure, blur, low_resolution, noise, jpeg",
        "workers": n_workers,
    }
    return {
        "train_images": summary["train"]["images"],
        "train_classes": summary["train"]["classes"],
        "train_degraded_share": summary["train"]["degraded_share"],
        "verification": summary["verification"],
        "ijb": summary["ijb"],
        "tinyface": summary["tinyface"],
    }


def _real_train(tmp: Path, params: Params, base: Path, progress: bool, manifest: dict, skipped: list, warnings: list) -> dict:
    """Ingest ``data.train_rec`` or ``data.train_folders`` into ``tmp``; returns counts."""
    data = params.data
    policy = image_policy(params)
    if data.source == "recordio":
        src = _resolve(data.train_rec, base)  # type: ignore[arg-type]
        train = _ingest_recordio(tmp, src, policy, data.skip_corrupt, progress)
    else:
        src = _resolve(data.train_folders, base)  # type: ignore[arg-type]
        train = _ingest_folders(tmp, src, policy, data.skip_corrupt, progress)
    skipped += train.pop("skipped")
    warnings += train.pop("warnings")
    manifest["sources"] = {"train": str(src)}
    return {"train_images": train["images"], "train_classes": train["classes"], "train_ingest": train, "verification": {}, "ijb": {}}


def prepare_data(
    params: Params,
    out_dir: str | Path,
    *,
    base_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool = True,
) -> dict:
    """Build ``out_dir`` from ``params.data`` (see the module docstring) and return the manifest.

    ``base_dir`` resolves relative input paths (default: the current directory); ``workers`` is the
    number of generator processes for synthetic data (0 = one per core, at most 8; the images do not
    depend on it).  Temporary siblings of ``out_dir`` left by a killed run are removed first.
    """
    t0 = time.perf_counter()
    data = params.data
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out_dir = Path(out_dir)
    policy = image_policy(params)
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "dataset": data.name,
        "source": data.source,
        "channel_order": data.channel_order,
        "decoded_channel_order": "RGB",
        "normalisation": NORMALISATION,
        "skip_corrupt": data.skip_corrupt,
        "image_policy": {
            **policy.as_json(),
            "applies_to": "train_rec records, train_folders images, val_bins images"
            + ("; synthetic images are drawn at data.synthetic.image_size" if data.source == "synthetic" else ""),
            "ijb": "not resized: loose crops are aligned to 112x112 from their landmarks when read",
        },
    }
    clean_stale_temps(out_dir)
    held: list[int] = []
    try:
        with atomic_dir(out_dir) as tmp:
            held.append(_lock_dir(tmp))  # held until the output is renamed into place
            _build(tmp, params, base, workers, progress, manifest)
            manifest["wall_time_s"] = round(time.perf_counter() - t0, 3)
            write_json(tmp / "manifest.json", manifest)
            _apply_umask(tmp)
    finally:
        for fd in held:
            os.close(fd)
    return manifest


def _build(tmp: Path, params: Params, base: Path, workers: int, progress: bool, manifest: dict) -> None:
    """Write every prepared file into ``tmp`` and fill ``manifest`` (all but the wall time)."""
    data = params.data
    policy = image_policy(params)
    skipped: list[dict] = []
    warnings: list[dict] = []
    if data.source == "synthetic":
        counts = _synthetic_train(tmp, params, workers, progress, manifest)
    else:
        counts = _real_train(tmp, params, base, progress, manifest, skipped, warnings)
    for b in data.val_bins:
        name, info = _ingest_bin(tmp, _resolve(b, base), policy, data.skip_corrupt, progress)
        skipped += info.pop("skipped")
        warnings += info.pop("warnings")
        counts.setdefault("verification", {})[name] = info
    for entry in data.ijb:
        counts.setdefault("ijb", {})[entry.name] = _ingest_ijb(tmp, entry, base, progress)
    if data.source != "synthetic":
        _real_samples_png(tmp, cell=policy.size)
    manifest["sources"]["val_bins"] = [str(_resolve(b, base)) for b in data.val_bins]
    manifest["sources"]["ijb"] = [e.model_dump(mode="json") for e in data.ijb]
    counts["warnings"] = len(warnings)
    manifest["counts"] = counts
    manifest["skipped"] = skipped
    manifest["warnings"] = warnings
    files, links = hash_tree(tmp, exclude=("manifest.json",), progress=progress)
    manifest["files"] = files
    manifest["links"] = links
    manifest["environment"] = {"python": platform.python_version(), "numpy": np.__version__, "opencv": _cv2_version()}


def _apply_umask(root: Path) -> None:
    """Give the output the permissions of ordinary files (temporary files are created 0600/0700).

    A file with more than one hard link is an input linked in (``link_or_copy``): it shares its
    inode with the user's file, so changing its mode would change theirs; it is left as it is.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                os.chmod(p, 0o777 & ~mask)
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_symlink() and p.stat().st_nlink == 1:
                os.chmod(p, 0o666 & ~mask)


def _policy_json(p: Any) -> dict:
    return {
        "fraction": p.fraction,
        "severity": list(p.severity),
        "max_per_image": p.max_per_image,
        "weights": dict(p.weights),
        "required": list(p.required),
        "required_severity": list(p.required_severity) if p.required_severity else None,
    }


def _cv2_version() -> str:
    return str(cv2.__version__)
