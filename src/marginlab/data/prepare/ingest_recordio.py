"""Ingest of ``data.train_rec``: check every record in one pass, then link the RecordIO or rewrite it.

``data.train_rec`` and the ``.idx`` beside it are read in one pass (tqdm bar): every record is read,
its label checked and its image decoded and conformed to the image policy.  If every image is already
``data.image_size`` square and none is skipped, the files are hard-linked (copied across file systems)
to ``train.rec/.idx`` as they are; otherwise the RecordIO is rewritten during the same pass with the
conformed images (records before the first change are copied as bytes, not decoded again; under
``data.skip_corrupt`` bad records are left out, classes left empty are dropped and labels renumbered
contiguously).  ``train_meta.parquet`` comes from the labels of that pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from marginlab.data.formats import (
    DataFormatError,
    ImagePolicy,
    RecordIOError,
    conform_encoded,
    idx_path_for,
    open_recordio,
    write_recordio,
)
from marginlab.data.prepare.files import link_or_copy, require_file, write_train_meta
from marginlab.core.layouts import PreparedLayout

__all__ = ["ingest_recordio"]


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


def ingest_recordio(out: Path, rec: Path, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> dict:
    """Check every record of ``rec`` (one pass); link it when nothing changes, else rewrite it in that pass."""
    require_file(rec, "data.train_rec")
    idx = idx_path_for(rec)
    require_file(idx, "data.train_rec (.idx beside the .rec)")
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
        how = link_or_copy(rec, PreparedLayout(out).train_rec)
        link_or_copy(idx, PreparedLayout(out).train_idx)
        reader.close()
        final_labels, dropped, resized = labels, [], 0
    else:
        final_labels, dropped, resized = _rewrite_records(PreparedLayout(out).train_rec, reader, labels, unchanged, first, records, skipped)
        how = "rewritten"
        reader.close()
    write_train_meta(out, final_labels)
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
