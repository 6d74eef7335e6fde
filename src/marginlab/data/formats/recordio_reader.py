"""Random access to the image records of a RecordIO ``.rec`` + ``.idx`` pair (:class:`RecordIOReader`).

Layout and framing: :mod:`.recordio`.  The reader opens the ``.rec`` lazily, once per process (it
re-opens after a fork and pickles only its paths and index arrays, so it can be handed to DataLoader
workers), parses the ``.idx`` once with pandas, and reads a record with two ``os.pread`` calls: O(1)
random access.  Opening reads record 0 and the identity records only, never every image header.

The module is one cohesive thing, the reader class (open-time layout, identity ranges, labels,
validation, pickling for workers) and its two parsing helpers, hence its length.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from marginlab.data.formats.errors import (
    DataFormatError,
    MissingFileError,
    MissingIndexError,
    RecordIOError,
    TruncatedRecordError,
)
from marginlab.data.formats.images import decode_image
from marginlab.data.formats.recordio import (
    CFLAG_SHIFT,
    FRAME_HEADER,
    IR_HEADER,
    LENGTH_MASK,
    MAGIC,
    IRHeader,
    idx_path_for,
    read_framed,
    read_idx,
    unpack_payload,
)

__all__ = ["RecordIOReader", "open_recordio"]

# Identity records are read in one block when they span at most this many bytes.
_BLOCK_READ_LIMIT = 256 << 20


def _block_reader(block: bytes, start: int, fallback: Callable[[int, int], bytes]) -> Callable[[int, int], bytes]:
    """A ``read(pos, n)`` served from ``block`` (file bytes from ``start``), else from ``fallback``."""

    def read(pos: int, n: int) -> bytes:
        if start <= pos and pos + n <= start + len(block):
            return block[pos - start : pos - start + n]
        return fallback(pos, n)

    return read


def _parse_identity_block(block: bytes, start: int, offsets: np.ndarray, l0: int) -> np.ndarray | None:
    """Vectorised parse of identity records ``[magic][lrec][flag label id id2][a b]`` held in ``block``.

    Returns the (C, 2) int64 ranges, or ``None`` when any record is not a plain, valid frame (split,
    wrong magic, bad range, ...), so the caller takes the per-record path that names the problem.
    """
    if start % 4 or (offsets % 4).any():
        return None
    words = np.frombuffer(block, dtype="<u4", count=len(block) // 4)
    w = (offsets - start) // 4
    if (w + 10 > len(words)).any():
        return None
    lrec = words[w + 1]
    flag = words[w + 2]
    ok = (words[w] == MAGIC) & (lrec >> CFLAG_SHIFT == 0) & (flag >= 2) & ((lrec & LENGTH_MASK) >= IR_HEADER.size + 4 * flag)
    if not ok.all():
        return None
    ab = np.stack([words[w + 8], words[w + 9]], axis=1).view("<f4").astype(np.float64)
    if not (np.isfinite(ab).all() and (ab == np.round(ab)).all()):
        return None
    ranges = ab.astype(np.int64)
    if not ((1 <= ranges[:, 0]) & (ranges[:, 0] <= ranges[:, 1]) & (ranges[:, 1] <= l0)).all():
        return None
    return ranges


def _label_to_int(value: float, source: str) -> int:
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise RecordIOError(f"{source}: class label {value!r} is not a non-negative integer")
    return int(value)


class RecordIOReader:
    """Random access to the image records of an InsightFace/MXNet ``.rec`` + ``.idx`` pair.

    ``reader[i]`` (``0 <= i < len(reader)``) returns ``(encoded_image_bytes, int_label)`` of the
    i-th image record; with the InsightFace header that is key ``i + 1``.  The image bytes are
    returned as stored (normally JPEG); decode with :func:`marginlab.data.formats.images.decode_image`
    (RGB).  Attributes:

    - ``keys``: int64 array, the record key of each image position (``reader[i]`` is key ``keys[i]``).
    - ``identity_ranges``: with a header, an int64 array (num_classes, 2) of image-key ranges
      ``[a, b)`` per identity (row c = class c); ``None`` for headerless files.
    - ``num_classes``: ``L1 - L0`` with a header; headerless: ``max(label) + 1`` from a one-off scan
      of all record headers (only when asked for).
    - ``labels``: int64 array of class labels per position (header: from the identity ranges,
      no I/O; headerless: the scan).
    - ``skipped``: list of ``(key, reason)`` of records dropped under ``skip_corrupt``.

    ``skip_corrupt=False`` (default): any malformed record raises a :class:`RecordIOError` subclass
    naming the file and key.  ``skip_corrupt=True``: image keys whose ``.idx`` entry is missing or
    points past the end of the file are dropped at open, and :meth:`validate` / iteration drop and
    count records that fail to parse (or decode); random access ``reader[i]`` to a corrupt record
    always raises, since it cannot silently return another image.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None, *, skip_corrupt: bool = False):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else idx_path_for(self.rec_path)
        self.skip_corrupt = bool(skip_corrupt)
        self.skipped: list[tuple[int, str]] = []
        self._fd: int | None = None
        self._pid: int | None = None
        self._labels: np.ndarray | None = None
        if not self.rec_path.is_file():
            raise MissingFileError(f"{self.rec_path}: RecordIO file (.rec) not found")
        if not self.idx_path.is_file():
            raise MissingIndexError(
                f"{self.idx_path}: RecordIO index (.idx) not found beside {self.rec_path.name}; "
                f"it is required for random access"
            )
        self.file_size = self.rec_path.stat().st_size
        all_keys, all_offsets = read_idx(self.idx_path)
        self._sorted_keys: np.ndarray | None = None
        self._sorted_offsets: np.ndarray | None = None
        self._set_index(all_keys, all_offsets)
        self._init_layout(all_keys)

    def _set_index(self, keys: np.ndarray, offsets: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self._sorted_keys, self._sorted_offsets = keys[order], offsets[order]

    # -------------------------------------------------------------- open-time structure

    def _lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offsets of ``keys`` and a mask of which keys are present in the .idx."""
        if self._sorted_keys is None:  # dropped when pickled: re-read the .idx in this process
            self._set_index(*read_idx(self.idx_path))
        pos = np.searchsorted(self._sorted_keys, keys)
        pos = np.minimum(pos, len(self._sorted_keys) - 1)
        present = self._sorted_keys[pos] == keys
        return self._sorted_offsets[pos], present

    def _init_layout(self, idx_keys: np.ndarray) -> None:
        self.header: IRHeader | None = None
        self.identity_ranges: np.ndarray | None = None
        self.header0: tuple[int, int] | None = None
        _, has0 = self._lookup(np.array([0]))
        if has0[0]:
            header0, _ = unpack_payload(self._read_key_payload(0), source=self._where(0))
            if header0.flag > 0:
                if header0.flag < 2:
                    raise RecordIOError(
                        f"{self._where(0)}: header record has flag={header0.flag}; the InsightFace header needs "
                        f"two labels [L0, L1] (first identity key, end of identity keys)"
                    )
                self.header = header0
        if self.header is not None:
            l0 = _label_to_int(self.header.labels[0], self._where(0) + " header L0")
            l1 = _label_to_int(self.header.labels[1], self._where(0) + " header L1")
            if l0 < 1 or l1 < l0:
                raise RecordIOError(f"{self._where(0)}: header labels [L0, L1] = [{l0}, {l1}] need 1 <= L0 <= L1")
            self.header0 = (l0, l1)
            image_keys = np.arange(1, l0, dtype=np.int64)
        else:
            image_keys = idx_keys.copy()
        offsets, present = self._lookup(image_keys)
        past_end = present & (offsets + 8 > self.file_size)
        bad = ~present | past_end
        if bad.any():
            reasons = {
                int(k): ("missing from the .idx" if not p else f".idx offset {int(o)} is past the end of the file ({self.file_size} bytes)")
                for k, p, o in zip(image_keys[bad][:1000], present[bad][:1000], offsets[bad][:1000])
            }
            first = int(image_keys[bad][0])
            if not self.skip_corrupt:
                raise (RecordIOError if not present[bad][0] else TruncatedRecordError)(
                    f"{self._where(first)}: {reasons[first]} ({int(bad.sum())} image record(s) affected)"
                )
            self.skipped.extend((int(k), reasons.get(int(k), "bad .idx entry")) for k in image_keys[bad])
            image_keys, offsets = image_keys[~bad], offsets[~bad]
        self.keys = image_keys
        self._offsets = offsets
        if self.header is not None:
            self.identity_ranges = self._read_identity_ranges(*self.header0)

    def _read_identity_ranges(self, l0: int, l1: int) -> np.ndarray:
        id_keys = np.arange(l0, l1, dtype=np.int64)
        ranges = np.zeros((len(id_keys), 2), dtype=np.int64)
        if len(id_keys) == 0:
            return ranges
        offsets, present = self._lookup(id_keys)
        if not present.all():
            key = int(id_keys[~present][0])
            raise RecordIOError(
                f"{self._where(key)}: identity record missing from the .idx (header declares identity keys "
                f"{l0}..{l1 - 1})"
            )
        if (offsets + 8 > self.file_size).any():
            key = int(id_keys[offsets + 8 > self.file_size][0])
            raise TruncatedRecordError(
                f"{self._where(key)}: identity record offset is past the end of the file ({self.file_size} bytes)"
            )
        start = int(offsets.min())
        stop = min(self.file_size, int(offsets.max()) + 4096)
        if stop - start <= _BLOCK_READ_LIMIT:
            block = self._pread(start, stop - start)
            fast = _parse_identity_block(block, start, offsets, l0)
            if fast is not None:
                return fast
            read = _block_reader(block, start, self._pread)
        else:
            read = self._pread
        # general path: split records, or anything the vectorised parse rejected (precise errors here)
        for row, (key, off) in enumerate(zip(id_keys.tolist(), offsets.tolist())):
            where = self._where(key)
            header, _ = unpack_payload(read_framed(read, off, self.file_size, where), source=where)
            if header.flag < 2:
                raise RecordIOError(f"{where}: identity record needs labels [a, b), found flag={header.flag}")
            a = _label_to_int(header.labels[0], where)
            b = _label_to_int(header.labels[1], where)
            if not 1 <= a <= b <= l0:
                raise RecordIOError(f"{where}: identity range [{a}, {b}) is outside the image keys 1..{l0 - 1}")
            ranges[row] = (a, b)
        return ranges

    # -------------------------------------------------------------- file access

    def _where(self, key: int) -> str:
        return f"{self.rec_path} (key {key})"

    def _file(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            # After a fork the inherited descriptor is left to the parent; each process opens its own.
            self._fd = os.open(self.rec_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._pid = pid
        return self._fd

    def _pread(self, pos: int, n: int) -> bytes:
        return os.pread(self._file(), n, pos)

    def _read_key_payload(self, key: int) -> bytes:
        offsets, present = self._lookup(np.array([key]))
        if not present[0]:
            raise KeyError(f"{self.rec_path}: key {key} is not in {self.idx_path.name}")
        offset = int(offsets[0])
        if offset + 8 > self.file_size:
            raise TruncatedRecordError(
                f"{self._where(key)}: .idx offset {offset} is past the end of the file ({self.file_size} bytes)"
            )
        return read_framed(self._pread, offset, self.file_size, self._where(key))

    def close(self) -> None:
        """Close this process's file descriptor (re-opened on the next access)."""
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:  # pragma: no cover
                pass
        self._fd = None

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = None  # never pickle an OS handle: the unpickling process opens its own
        state["_pid"] = None
        # the full key -> offset table is only needed for read_key/read_header: rebuilt on demand
        state["_sorted_keys"] = state["_sorted_offsets"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # -------------------------------------------------------------- public API

    @property
    def has_header(self) -> bool:
        """True for the InsightFace layout (record 0 header + identity records)."""
        return self.header is not None

    def __len__(self) -> int:
        return len(self.keys)

    def read_header(self, key: int) -> IRHeader:
        """The ``IfQQ`` header of the record with ``key`` (any key in the .idx)."""
        header, _ = unpack_payload(self._read_key_payload(int(key)), source=self._where(int(key)))
        return header

    def read_key(self, key: int) -> tuple[IRHeader, bytes]:
        """Header and image bytes of the record with ``key`` (any key in the .idx)."""
        return unpack_payload(self._read_key_payload(int(key)), source=self._where(int(key)))

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        n = len(self.keys)
        if not isinstance(index, (numbers.Integral, np.integer)):
            raise TypeError(f"RecordIOReader indices must be integers, got {type(index).__name__}")
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{self.rec_path}: image index {index} out of range for {n} images")
        key = int(self.keys[i])
        where = self._where(key)
        header, data = unpack_payload(read_framed(self._pread, int(self._offsets[i]), self.file_size, where), source=where)
        return data, _label_to_int(header.class_label(), where)

    @property
    def num_images(self) -> int:
        return len(self.keys)

    @property
    def num_classes(self) -> int:
        if self.identity_ranges is not None:
            return len(self.identity_ranges)
        labels = self.labels
        return int(labels.max()) + 1 if len(labels) else 0

    @property
    def labels(self) -> np.ndarray:
        """Class label per image position (int64).

        With the header the label of key k is the row c of ``identity_ranges`` with a_c <= k < b_c
        (no I/O; InsightFace writes image labels equal to that row, :meth:`validate` checks it).
        Headerless files are scanned once (record headers only) and the result cached.
        """
        if self._labels is None:
            if self.identity_ranges is not None:
                self._labels = self._labels_from_ranges()
            else:
                self._labels = self.scan_labels(progress=len(self.keys) >= 10_000)
        return self._labels

    def _labels_from_ranges(self) -> np.ndarray:
        assert self.identity_ranges is not None and self.header0 is not None
        a, b = self.identity_ranges[:, 0], self.identity_ranges[:, 1]
        lengths = b - a
        total = int(lengths.sum())
        # key of every (class, member) pair: a_c + (0 .. b_c - a_c - 1), vectorised
        member_keys = np.repeat(a - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        by_key = np.full(self.header0[0], -1, dtype=np.int64)
        by_key[member_keys] = np.repeat(np.arange(len(lengths)), lengths)
        labels = by_key[self.keys]
        if (labels < 0).any():
            key = int(self.keys[labels < 0][0])
            raise RecordIOError(f"{self._where(key)}: image key belongs to no identity range")
        return labels

    def scan_labels(self, progress: bool = True) -> np.ndarray:
        """Read every image record's header (not its image) and return the class labels (int64).

        Under ``skip_corrupt`` records whose header cannot be read are dropped from this reader
        (and listed in ``skipped``), so the result stays aligned with the positions.
        """
        labels = np.empty(len(self.keys), dtype=np.int64)
        keep = np.ones(len(self.keys), dtype=bool)
        for i in tqdm(range(len(self.keys)), desc=f"scan labels {self.rec_path.name}", disable=not progress, unit="rec"):
            try:
                labels[i] = self._scan_one_label(i)
            except RecordIOError as exc:
                if not self.skip_corrupt:
                    raise
                keep[i] = False
                self.skipped.append((int(self.keys[i]), str(exc)))
        if not keep.all():
            self.keys, self._offsets = self.keys[keep], self._offsets[keep]
        return labels[keep]

    def _scan_one_label(self, i: int) -> int:
        key, offset = int(self.keys[i]), int(self._offsets[i])
        where = self._where(key)
        head = self._pread(offset, 8 + IR_HEADER.size)
        if len(head) == 8 + IR_HEADER.size:
            magic, lrec = FRAME_HEADER.unpack_from(head, 0)
            if magic == MAGIC and lrec >> CFLAG_SHIFT == 0 and (lrec & LENGTH_MASK) >= IR_HEADER.size:
                flag, label, _, _ = IR_HEADER.unpack_from(head, 8)
                if flag == 0:
                    return _label_to_int(label, where)
        # labels vector, split or malformed record: take the general (validating) path
        header, _ = unpack_payload(read_framed(self._pread, offset, self.file_size, where), source=where)
        return _label_to_int(header.class_label(), where)

    def validate(self, *, decode: bool = False, progress: bool = True) -> dict:
        """Read every image record (and decode it if ``decode``) and check it.

        Checks framing, header, label (and, with a header, that the record's label equals its
        identity-range row).  Strict mode raises on the first problem; under ``skip_corrupt`` bad
        records are removed from this reader (positions shift to the remaining images), appended
        to ``skipped`` and counted.  Returns ``{"checked", "valid", "skipped"}``.
        """
        expected = self._labels_from_ranges() if self.identity_ranges is not None else None
        keep = np.ones(len(self.keys), dtype=bool)
        labels = np.empty(len(self.keys), dtype=np.int64)
        newly: list[tuple[int, str]] = []
        for i in tqdm(range(len(self.keys)), desc=f"validate {self.rec_path.name}", disable=not progress, unit="rec"):
            try:
                data, label = self[i]
                if expected is not None and label != expected[i]:
                    raise RecordIOError(
                        f"{self._where(int(self.keys[i]))}: record label {label} disagrees with its identity "
                        f"range (class {int(expected[i])})"
                    )
                if decode:
                    decode_image(data, source=self._where(int(self.keys[i])))
                labels[i] = label
            except DataFormatError as exc:
                if not self.skip_corrupt:
                    raise
                keep[i] = False
                newly.append((int(self.keys[i]), str(exc)))
        if newly:
            self.keys, self._offsets = self.keys[keep], self._offsets[keep]
            self.skipped.extend(newly)
        self._labels = labels[keep]
        return {"checked": len(keep), "valid": int(keep.sum()), "skipped": len(newly)}

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        """Yield ``(bytes, label)`` in position order; under ``skip_corrupt`` unreadable records are
        skipped and appended to ``skipped`` (including undecodable images is :meth:`validate`'s job)."""
        for i in range(len(self.keys)):
            try:
                yield self[i]
            except RecordIOError as exc:
                if not self.skip_corrupt:
                    raise
                self.skipped.append((int(self.keys[i]), str(exc)))

    def __repr__(self) -> str:
        layout = f"header L0={self.header0[0]} L1={self.header0[1]}" if self.header0 else "headerless"
        return f"RecordIOReader({str(self.rec_path)!r}, {len(self)} images, {layout})"


def open_recordio(rec_path: str | Path, skip_corrupt: bool = False) -> RecordIOReader:
    """Open ``rec_path`` and the ``.idx`` beside it (same stem).  See :class:`RecordIOReader`."""
    return RecordIOReader(rec_path, skip_corrupt=skip_corrupt)
