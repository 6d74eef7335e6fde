"""MXNet/InsightFace RecordIO (``.rec`` + ``.idx``) reader and writer, without mxnet.

Framing (dmlc-core ``recordio.h``), all integers little-endian ``uint32``::

    [magic 0xced7230a][lrec][payload part: length bytes][zero padding to a multiple of 4]

``cflag = (lrec >> 29) & 7`` and ``length = lrec & (2**29 - 1)``.  ``cflag`` 0 is a whole record;
1, 2, 3 are the first, middle and last part of a split record.  The writer splits a payload at every
4-byte-aligned offset where the magic word occurs and drops those 4 bytes; the reader joins the parts
with the magic bytes between them.  (dmlc-core's ``kMagic`` is ``0xced7230a`` and its length field
has 29 bits; some write-ups, including an older dmlc comment, say 30 bits, which is wrong for split
records.)

Payload (mxnet ``recordio.pack``): a 24-byte header ``IfQQ`` = (uint32 flag, float32 label, uint64 id,
uint64 id2); if ``flag > 0``, ``flag`` float32 labels follow (and the scalar label is unused); then the
encoded image.

``.idx``: one text line ``<key>\\t<byte offset of the record's first magic word>`` per record.

InsightFace convention: record 0 has ``flag > 0`` and labels ``[L0, L1]``; keys ``1 .. L0-1`` are
images; keys ``L0 .. L1-1`` are identity records whose labels ``[a, b)`` are the image-key range of
one identity.  ``num_images = L0 - 1``, ``num_classes = L1 - L0``.  If record 0 has ``flag == 0`` (or
there is no key 0) the file is *headerless*: every key in the ``.idx`` is an image with a scalar label.

The reader opens the ``.rec`` lazily, once per process (it re-opens after a fork and pickles only its
paths and index arrays, so it can be handed to DataLoader workers), parses the ``.idx`` once with
pandas, and reads a record with two ``os.pread`` calls: O(1) random access.  Opening reads record 0
and the identity records only, never every image header.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from marginlab.data.formats.errors import (
    BadMagicError,
    DataFormatError,
    MissingFileError,
    MissingIndexError,
    RecordIOError,
    TruncatedRecordError,
)
from marginlab.io import atomic_path

__all__ = [
    "MAGIC",
    "IRHeader",
    "RecordIOReader",
    "frame_record",
    "idx_path_for",
    "open_recordio",
    "pack_payload",
    "read_idx",
    "unpack_payload",
    "write_recordio",
]

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_CFLAG_SHIFT = 29
_LENGTH_MASK = (1 << _CFLAG_SHIFT) - 1
_FRAME = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")
#: Largest integer every float32 label can hold exactly; keys and class labels must stay below it.
MAX_EXACT_FLOAT32_INT = 1 << 24
# Identity records are read in one block when they span at most this many bytes.
_BLOCK_READ_LIMIT = 256 << 20


@dataclasses.dataclass(frozen=True)
class IRHeader:
    """The ``IfQQ`` record header.  ``labels`` holds the ``flag`` extra float32 labels (empty if 0)."""

    flag: int
    label: float
    id: int
    id2: int
    labels: tuple[float, ...] = ()

    def class_label(self) -> float:
        """The image's class label: ``labels[0]`` when a label vector is present, else ``label``."""
        return self.labels[0] if self.flag > 0 else self.label


def idx_path_for(rec_path: str | Path) -> Path:
    """The ``.idx`` that belongs to ``rec_path`` (same stem, beside it)."""
    return Path(rec_path).with_suffix(".idx")


# --------------------------------------------------------------------------------------- payloads


def pack_payload(label: float | Iterable[float], data: bytes = b"", *, id: int = 0, id2: int = 0) -> bytes:
    """mxnet ``recordio.pack``: a scalar label goes in the header (flag 0); a label vector sets
    ``flag = len(labels)``, header label 0, and is stored as float32 values before ``data``."""
    if isinstance(label, numbers.Number):
        return _IR.pack(0, float(label), int(id), int(id2)) + bytes(data)
    vec = np.asarray(list(label), dtype="<f4")
    return _IR.pack(int(vec.size), 0.0, int(id), int(id2)) + vec.tobytes() + bytes(data)


def unpack_payload(payload: bytes, *, source: str = "<record>") -> tuple[IRHeader, bytes]:
    """Split a record payload into its :class:`IRHeader` and the remaining (image) bytes."""
    if len(payload) < _IR.size:
        raise RecordIOError(f"{source}: payload of {len(payload)} bytes is shorter than the 24-byte IfQQ header")
    flag, label, rid, rid2 = _IR.unpack_from(payload, 0)
    end = _IR.size + 4 * flag
    if flag > 0:
        if len(payload) < end:
            raise RecordIOError(
                f"{source}: header announces {flag} float32 labels ({4 * flag} bytes) but only "
                f"{len(payload) - _IR.size} bytes follow the header"
            )
        labels = tuple(float(v) for v in np.frombuffer(payload, dtype="<f4", count=flag, offset=_IR.size))
    else:
        labels = ()
    return IRHeader(int(flag), float(label), int(rid), int(rid2), labels), payload[end:]


def frame_record(payload: bytes) -> bytes:
    """Frame one payload as dmlc RecordIO bytes: magic, lrec, data, zero padding to 4 bytes.

    The payload is split wherever the magic word occurs at a 4-byte-aligned offset (those 4 bytes
    are dropped; cflag 1/2/3 mark first/middle/last part), exactly as dmlc's ``WriteRecord``.
    """
    payload = bytes(payload)
    n = len(payload)
    if n > _LENGTH_MASK:
        raise RecordIOError(f"RecordIO records must be shorter than 2**29 bytes, got {n}")
    words = np.frombuffer(payload, dtype="<u4", count=n // 4)
    hits = (np.flatnonzero(words == MAGIC) * 4).tolist()
    pad = b"\x00" * ((4 - n % 4) % 4)
    if not hits:
        return _FRAME.pack(MAGIC, n) + payload + pad
    out = []
    start = 0
    for pos in hits:
        cflag = 1 if start == 0 else 2
        out += [_FRAME.pack(MAGIC, (cflag << _CFLAG_SHIFT) | (pos - start)), payload[start:pos]]
        start = pos + 4
    out += [_FRAME.pack(MAGIC, (3 << _CFLAG_SHIFT) | (n - start)), payload[start:], pad]
    return b"".join(out)


def _read_framed(read: Callable[[int, int], bytes], offset: int, file_size: int, source: str) -> bytes:
    """Read the (possibly split) record whose first magic word is at ``offset``; return its payload.

    ``read(pos, n)`` returns up to ``n`` bytes at ``pos``.  Errors name ``source`` (file and key).
    """
    parts: list[bytes] = []
    pos = offset
    while True:
        head = read(pos, 8)
        if len(head) < 8:
            raise TruncatedRecordError(
                f"{source}: file ends at byte {file_size}, inside the 8-byte frame header of a record part at "
                f"byte {pos} (truncated .rec?)"
            )
        magic, lrec = _FRAME.unpack(head)
        if magic != MAGIC:
            raise BadMagicError(
                f"{source}: expected RecordIO magic 0x{MAGIC:08x} at byte {pos}, found 0x{magic:08x} "
                f"(wrong .idx offset or corrupt .rec)"
            )
        cflag, length = lrec >> _CFLAG_SHIFT, lrec & _LENGTH_MASK
        if cflag > 3:
            raise RecordIOError(f"{source}: invalid continuation flag {cflag} in the frame at byte {pos}")
        if not parts and cflag in (2, 3):
            raise RecordIOError(
                f"{source}: record starts with a continuation part (cflag {cflag}) at byte {pos}; "
                f"the .idx offset does not point at the start of a record"
            )
        if parts and cflag in (0, 1):
            raise RecordIOError(
                f"{source}: split record interrupted at byte {pos}: expected a middle/last part (cflag 2/3), "
                f"found cflag {cflag}"
            )
        data = read(pos + 8, length)
        if len(data) < length:
            raise TruncatedRecordError(
                f"{source}: record part at byte {pos} announces {length} bytes but the file ends at byte "
                f"{file_size} (truncated .rec)"
            )
        parts.append(data)
        pos += 8 + length + (4 - length % 4) % 4
        if cflag in (0, 3):
            return parts[0] if len(parts) == 1 else _MAGIC_BYTES.join(parts)


# --------------------------------------------------------------------------------------------- idx


def read_idx(idx_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an ``.idx`` file into ``(keys, offsets)`` int64 arrays, in file order.

    Uses pandas' C parser (millions of lines per second).  Raises :class:`RecordIOError` naming the
    file and the first bad line on malformed input, duplicate keys or negative values.
    """
    idx_path = Path(idx_path)
    try:
        frame = pd.read_csv(
            idx_path,
            sep="\t",
            header=None,
            names=["key", "offset"],
            dtype=np.int64,
            engine="c",
            na_filter=False,
            skip_blank_lines=True,
        )
    except FileNotFoundError:
        raise MissingIndexError(f"{idx_path}: RecordIO index (.idx) not found") from None
    except pd.errors.EmptyDataError:
        raise RecordIOError(f"{idx_path}: empty .idx (no records)") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise RecordIOError(f"{idx_path}: {_first_bad_idx_line(idx_path)} ({exc})") from None
    if frame.empty:
        raise RecordIOError(f"{idx_path}: empty .idx (no records)")
    keys = frame["key"].to_numpy(dtype=np.int64)
    offsets = frame["offset"].to_numpy(dtype=np.int64)
    if (keys < 0).any() or (offsets < 0).any():
        line = int(np.flatnonzero((keys < 0) | (offsets < 0))[0]) + 1
        raise RecordIOError(f"{idx_path}: line {line}: negative key or offset ({keys[line - 1]}, {offsets[line - 1]})")
    uniq, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        raise RecordIOError(f"{idx_path}: key {dup} appears {int(counts[counts > 1][0])} times")
    return keys, offsets


def _first_bad_idx_line(idx_path: Path) -> str:
    with open(idx_path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            fields = raw.rstrip(b"\r\n").split(b"\t")
            if len(fields) != 2 or not all(f.strip().lstrip(b"-").isdigit() for f in fields):
                return f"line {lineno}: expected '<key>\\t<offset>' (two integers), got {raw[:80]!r}"
    return "malformed .idx"


# ------------------------------------------------------------------------------------------ reader


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
    ok = (words[w] == MAGIC) & (lrec >> _CFLAG_SHIFT == 0) & (flag >= 2) & ((lrec & _LENGTH_MASK) >= _IR.size + 4 * flag)
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
            header, _ = unpack_payload(_read_framed(read, off, self.file_size, where), source=where)
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
        return _read_framed(self._pread, offset, self.file_size, self._where(key))

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
        header, data = unpack_payload(_read_framed(self._pread, int(self._offsets[i]), self.file_size, where), source=where)
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
        head = self._pread(offset, 8 + _IR.size)
        if len(head) == 8 + _IR.size:
            magic, lrec = _FRAME.unpack_from(head, 0)
            if magic == MAGIC and lrec >> _CFLAG_SHIFT == 0 and (lrec & _LENGTH_MASK) >= _IR.size:
                flag, label, _, _ = _IR.unpack_from(head, 8)
                if flag == 0:
                    return _label_to_int(label, where)
        # labels vector, split or malformed record: take the general (validating) path
        header, _ = unpack_payload(_read_framed(self._pread, offset, self.file_size, where), source=where)
        return _label_to_int(header.class_label(), where)

    def validate(self, *, decode: bool = False, progress: bool = True) -> dict:
        """Read every image record (and decode it if ``decode``) and check it.

        Checks framing, header, label (and, with a header, that the record's label equals its
        identity-range row).  Strict mode raises on the first problem; under ``skip_corrupt`` bad
        records are removed from this reader (positions shift to the remaining images), appended
        to ``skipped`` and counted.  Returns ``{"checked", "valid", "skipped"}``.
        """
        from marginlab.data.formats.images import decode_image

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


# ------------------------------------------------------------------------------------------ writer


class _FramedWriter:
    """Appends framed records to an open binary ``.rec`` file and lines to an open text ``.idx``."""

    def __init__(self, rec_fh, idx_fh):
        self.rec_fh, self.idx_fh = rec_fh, idx_fh
        self.pos = 0

    def write(self, key: int, payload: bytes) -> int:
        framed = frame_record(payload)
        offset = self.pos
        self.rec_fh.write(framed)
        self.idx_fh.write(f"{key}\t{offset}\n")
        self.pos += len(framed)
        return offset


def _check_sample(item: object, position: int) -> tuple[bytes, int]:
    try:
        data, label = item  # type: ignore[misc]
    except (TypeError, ValueError):
        raise DataFormatError(f"write_recordio: sample {position} is not a (bytes, label) pair") from None
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataFormatError(f"write_recordio: sample {position}: image must be bytes, got {type(data).__name__}")
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (numbers.Integral, np.integer)) or label < 0:
        raise DataFormatError(f"write_recordio: sample {position}: label must be a non-negative integer, got {label!r}")
    if int(label) >= MAX_EXACT_FLOAT32_INT:
        raise DataFormatError(f"write_recordio: sample {position}: label {label} cannot be stored exactly as float32")
    return bytes(data), int(label)


def write_recordio(
    rec_path: str | Path,
    samples: Iterable[tuple[bytes, int]],
    with_header: bool = True,
    *,
    progress: bool = False,
    total: int | None = None,
) -> dict:
    """Write ``samples`` (``(encoded_image_bytes, label)``) to ``rec_path`` and its ``.idx``.

    With ``with_header`` (InsightFace layout) the labels must arrive sorted and contiguous
    (0, 0, ..., 1, ..., C-1, each class at least once): images get keys 1..N, record 0 holds
    ``[L0, L1] = [N + 1, N + 1 + C]`` and keys L0..L1-1 are identity records with the image-key range
    ``[a, b)`` of each class.  Without it, images get keys 0..N-1 with scalar labels (any
    non-negative integers).  Image records carry ``id = key``.  Both files are written to temporary
    names and renamed at the end, so a failure leaves no partial file.  ``samples`` is consumed
    once (a generator is fine).  Returns ``{"num_images", "num_classes"}`` (headerless:
    ``num_classes = max(label) + 1``).
    """
    rec_path = Path(rec_path)
    idx_path = idx_path_for(rec_path)
    if rec_path.suffix != ".rec":
        raise ValueError(f"write_recordio: expected a path ending in .rec, got {rec_path}")
    counts: list[int] = []
    max_label = -1
    n = 0
    with atomic_path(rec_path) as tmp_rec, atomic_path(idx_path) as tmp_idx:
        with open(tmp_rec, "wb") as rec_fh, open(tmp_idx, "w", newline="\n") as idx_fh:
            writer = _FramedWriter(rec_fh, idx_fh)
            first_key = 0
            if with_header:
                # Placeholder of the final size: [L0, L1] are only known at the end.  Two positive
                # float32 labels and zero header fields can never contain the magic word, so the
                # framed size does not depend on the values.
                header_frame_len = len(frame_record(pack_payload([0.0, 0.0])))
                writer.write(0, pack_payload([0.0, 0.0]))
                first_key = 1
            for n, item in enumerate(tqdm(samples, desc=f"write {rec_path.name}", disable=not progress, total=total, unit="img"), start=1):
                data, label = _check_sample(item, n - 1)
                key = first_key + n - 1
                if with_header:
                    if label == len(counts) - 1:
                        counts[-1] += 1
                    elif label == len(counts):
                        counts.append(1)
                    else:
                        raise DataFormatError(
                            f"write_recordio: sample {n - 1} has label {label} after label {len(counts) - 1}; "
                            f"with the InsightFace header labels must be sorted and contiguous (0..C-1)"
                        )
                if key >= MAX_EXACT_FLOAT32_INT:
                    raise DataFormatError(f"write_recordio: more than {MAX_EXACT_FLOAT32_INT - 1} images cannot be indexed by float32 ranges")
                max_label = max(max_label, label)
                writer.write(key, pack_payload(float(label), data, id=key))
            if n == 0:
                raise DataFormatError(f"write_recordio: no samples to write to {rec_path}")
            if with_header:
                l0 = n + 1
                l1 = l0 + len(counts)
                if l1 >= MAX_EXACT_FLOAT32_INT:
                    raise DataFormatError(f"write_recordio: {l1} keys exceed the float32-exact range")
                start = 1
                for c, count in enumerate(counts):
                    writer.write(l0 + c, pack_payload([float(start), float(start + count)], id=l0 + c))
                    start += count
                rec_fh.flush()
                rec_fh.seek(0)
                header = frame_record(pack_payload([float(l0), float(l1)]))
                assert len(header) == header_frame_len
                rec_fh.write(header)
    return {"num_images": n, "num_classes": len(counts) if with_header else max_label + 1}
