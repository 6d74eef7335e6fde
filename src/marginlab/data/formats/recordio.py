"""MXNet/InsightFace RecordIO (``.rec`` + ``.idx``), without mxnet: framing, payloads, ``.idx``.

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

This module holds the format (constants, record framing, ``IfQQ`` payloads, the ``.idx`` parser)
shared by :mod:`.recordio_reader` (random access) and :mod:`.recordio_writer`.
"""

from __future__ import annotations

import dataclasses
import numbers
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from marginlab.data.formats.errors import (
    BadMagicError,
    MissingIndexError,
    RecordIOError,
    TruncatedRecordError,
)

__all__ = [
    "CFLAG_SHIFT",
    "FRAME_HEADER",
    "IR_HEADER",
    "LENGTH_MASK",
    "MAGIC",
    "MAGIC_BYTES",
    "MAX_EXACT_FLOAT32_INT",
    "IRHeader",
    "frame_record",
    "idx_path_for",
    "pack_payload",
    "read_framed",
    "read_idx",
    "unpack_payload",
]

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
CFLAG_SHIFT = 29
LENGTH_MASK = (1 << CFLAG_SHIFT) - 1
FRAME_HEADER = struct.Struct("<II")
IR_HEADER = struct.Struct("<IfQQ")
#: Largest integer every float32 label can hold exactly; keys and class labels must stay below it.
MAX_EXACT_FLOAT32_INT = 1 << 24


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
        return IR_HEADER.pack(0, float(label), int(id), int(id2)) + bytes(data)
    vec = np.asarray(list(label), dtype="<f4")
    return IR_HEADER.pack(int(vec.size), 0.0, int(id), int(id2)) + vec.tobytes() + bytes(data)


def unpack_payload(payload: bytes, *, source: str = "<record>") -> tuple[IRHeader, bytes]:
    """Split a record payload into its :class:`IRHeader` and the remaining (image) bytes."""
    if len(payload) < IR_HEADER.size:
        raise RecordIOError(f"{source}: payload of {len(payload)} bytes is shorter than the 24-byte IfQQ header")
    flag, label, rid, rid2 = IR_HEADER.unpack_from(payload, 0)
    end = IR_HEADER.size + 4 * flag
    if flag > 0:
        if len(payload) < end:
            raise RecordIOError(
                f"{source}: header announces {flag} float32 labels ({4 * flag} bytes) but only "
                f"{len(payload) - IR_HEADER.size} bytes follow the header"
            )
        labels = tuple(float(v) for v in np.frombuffer(payload, dtype="<f4", count=flag, offset=IR_HEADER.size))
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
    if n > LENGTH_MASK:
        raise RecordIOError(f"RecordIO records must be shorter than 2**29 bytes, got {n}")
    words = np.frombuffer(payload, dtype="<u4", count=n // 4)
    hits = (np.flatnonzero(words == MAGIC) * 4).tolist()
    pad = b"\x00" * ((4 - n % 4) % 4)
    if not hits:
        return FRAME_HEADER.pack(MAGIC, n) + payload + pad
    out = []
    start = 0
    for pos in hits:
        cflag = 1 if start == 0 else 2
        out += [FRAME_HEADER.pack(MAGIC, (cflag << CFLAG_SHIFT) | (pos - start)), payload[start:pos]]
        start = pos + 4
    out += [FRAME_HEADER.pack(MAGIC, (3 << CFLAG_SHIFT) | (n - start)), payload[start:], pad]
    return b"".join(out)


def read_framed(read: Callable[[int, int], bytes], offset: int, file_size: int, source: str) -> bytes:
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
        magic, lrec = FRAME_HEADER.unpack(head)
        if magic != MAGIC:
            raise BadMagicError(
                f"{source}: expected RecordIO magic 0x{MAGIC:08x} at byte {pos}, found 0x{magic:08x} "
                f"(wrong .idx offset or corrupt .rec)"
            )
        cflag, length = lrec >> CFLAG_SHIFT, lrec & LENGTH_MASK
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
            return parts[0] if len(parts) == 1 else MAGIC_BYTES.join(parts)


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
