"""Write a RecordIO ``.rec`` + ``.idx`` pair (:func:`write_recordio`), InsightFace layout or headerless.

Layout and framing: :mod:`.recordio`.  Both files are written to temporary names and renamed at the
end (:func:`marginlab.core.io.atomic_path`), so a failure leaves no partial file.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from marginlab.data.formats.errors import DataFormatError
from marginlab.data.formats.recordio import MAX_EXACT_FLOAT32_INT, frame_record, idx_path_for, pack_payload
from marginlab.core.io import atomic_path

__all__ = ["write_recordio"]


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
