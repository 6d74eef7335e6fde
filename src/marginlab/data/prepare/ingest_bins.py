"""Ingest of ``data.val_bins``: each verification ``.bin`` checked, then linked or rewritten.

Each file is read with ``read_bin_encoded`` (0 pairs, wrong counts and non-image entries are
rejected), every image decoded and conformed to the image policy, and the file linked to
``verification/<stem>.bin``, or rewritten when an image was resized or, with ``skip_corrupt``, pairs
with an undecodable image were dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from marginlab.data.formats import (
    CorruptImageError,
    DataFormatError,
    ImagePolicy,
    VerificationBinError,
    conform_encoded,
    read_bin_encoded,
    write_bin,
)
from marginlab.data.prepare.files import link_or_copy, require_file
from marginlab.core.layouts import PreparedLayout

__all__ = ["ingest_bin"]


def ingest_bin(out: Path, src: Path, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> tuple[str, dict]:
    """Check a verification ``.bin`` (every image decoded and conformed); link it, or rewrite it when
    an image was resized or a pair dropped.  Returns ``(stem, info)`` (info holds ``skipped`` and
    ``warnings`` lists for the manifest)."""
    require_file(src, "data.val_bins")
    name = src.stem
    dst = PreparedLayout(out).verification_bin(name)
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
