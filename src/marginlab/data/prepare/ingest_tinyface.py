"""Ingest of ``data.tinyface``: a real TinyFace-style identification set into ``prepared/tinyface/``.

The source is TinyFace's ``Testing_Set`` layout (:func:`~marginlab.data.formats.read_identification_set`
checks it): ``Probe/`` and ``Gallery_Match/`` with files named ``<identity>_<k>.<ext>`` and an optional
``Gallery_Distractor/``. Every image is decoded and brought to ``data.image_size`` by the image policy
(or, with ``data.align: detect``, warped from its detected landmarks: :mod:`.ingest_aligned`), stored as
JPEG under the same relative name with a ``.jpg`` suffix, so the evaluate stage reads the same
identities from the prepared copy (identities are compared as written: ``1`` and ``01`` together are
refused, a 30-digit id is a name). The source may be untrusted: a symlink leading outside it, a loop,
or one file reached twice is refused (the rule is in :mod:`marginlab.data.formats.folders`).

Dropping an image (undecodable with ``data.skip_corrupt``, or no face kept) keeps the protocol closed:
a probe whose identity is left without a ``Gallery_Match`` image is dropped too and counted
(``probes_without_match``); a set left without probes is an error naming the params key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from marginlab.data.formats import (
    IDENTIFICATION_PARTS,
    CorruptImageError,
    DataFormatError,
    ImagePolicy,
    conform_encoded,
    read_identification_set,
)
from marginlab.core.layouts import PreparedLayout

__all__ = ["TinyFaceImage", "list_tinyface", "ingest_tinyface", "write_tinyface"]

KEY = "data.tinyface"


@dataclass(frozen=True)
class TinyFaceImage:
    """One source image: its part, path, label (-1 for distractors) and prepared name (relative, ``.jpg``)."""

    part: str
    path: Path
    label: int
    name: str


def list_tinyface(src: Path) -> list[TinyFaceImage]:
    """Every image of the set at ``src`` in the reader's order (parts, then sorted relative paths).

    Raises :class:`DataFormatError` naming ``data.tinyface`` for a bad layout, and when two files
    would land on one prepared name (``a.png`` beside ``a.jpg``).
    """
    try:
        parts = read_identification_set(src)
    except DataFormatError as exc:
        raise type(exc)(f"{KEY}: {exc}") from None
    out: list[TinyFaceImage] = []
    for part in IDENTIFICATION_PARTS:
        paths, labels = parts.get(part, ([], np.zeros(0, dtype=np.int64)))
        seen: dict[str, Path] = {}
        for path, label in zip(paths, labels.tolist()):
            name = (path.relative_to(src / part).with_suffix(".jpg")).as_posix()
            if name in seen:
                raise DataFormatError(f"{KEY}: {path} and {seen[name]} would both be stored as {part}/{name}; rename one")
            seen[name] = path
            out.append(TinyFaceImage(part, path, int(label), name))
    return out


def write_tinyface(out: Path, images: list[TinyFaceImage], encoded: Callable[[int], Optional[bytes]], progress: bool) -> dict:
    """Write every image that ``encoded(i)`` returns bytes for to ``out/tinyface/<part>/<name>``, one at a time.

    ``encoded(i)`` gives the prepared JPEG of ``images[i]``, or ``None`` when the image is dropped. The
    gallery goes first, so a probe whose identity has no kept ``Gallery_Match`` image is dropped without
    being read (closed-set protocol). Returns the counts for the manifest.
    """
    order = sorted(range(len(images)), key=lambda i: ("Gallery_Match", "Probe", "Gallery_Distractor").index(images[i].part))
    matched: set[int] = set()
    written = [False] * len(images)
    without_match = 0
    root = PreparedLayout(out).tinyface
    for i in tqdm(order, desc="tinyface", unit="img", disable=not progress):
        im = images[i]
        if im.part == "Probe" and im.label not in matched:
            without_match += 1
            continue
        data = encoded(i)
        if data is None:
            continue
        target = root / im.part / im.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written[i] = True
        if im.part == "Gallery_Match":
            matched.add(im.label)

    def count(part: str) -> int:
        return sum(1 for im, w in zip(images, written) if w and im.part == part)

    if count("Probe") == 0:
        raise DataFormatError(f"{KEY}: no probe image is left with a matching gallery image ({sum(written)} of "
                              f"{len(images)} images kept, {without_match} probes without a match); nothing to evaluate")
    return {
        "probes": count("Probe"),
        "gallery": count("Gallery_Match"),
        "distractors": count("Gallery_Distractor"),
        "identities": len({im.label for im, w in zip(images, written) if w and im.part == "Probe"}),
        "input_images": len(images),
        "dropped_images": int(len(images) - sum(written)),
        "probes_without_match": int(without_match),
    }


def ingest_tinyface(out: Path, src: Path, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> dict:
    """``data.tinyface`` with ``data.align: none``: every image conformed to the policy's size.

    Returns the counts (see :func:`write_tinyface`) plus ``source``, ``resized`` and the ``skipped`` and
    ``warnings`` lists for the manifest. An undecodable image raises :class:`CorruptImageError` naming
    ``data.tinyface`` and the file, unless ``skip_corrupt``.
    """
    images = list_tinyface(src)
    skipped: list[dict] = []
    warnings: list[dict] = []
    resized = 0

    def encoded(i: int) -> Optional[bytes]:
        nonlocal resized
        path = images[i].path
        try:
            result = conform_encoded(path.read_bytes(), policy, source=f"{KEY}: {path}", jpeg_only=True)
        except (CorruptImageError, OSError) as exc:
            message = str(exc) if isinstance(exc, CorruptImageError) else f"{KEY}: {path}: cannot read ({exc})"
            if not skip_corrupt:
                raise CorruptImageError(message) from None
            skipped.append({"source": str(path), "reason": message})
            return None
        resized += int(result.resized)
        warnings.extend({"source": str(path), "message": m} for m in result.warnings)
        return result.data

    counts = write_tinyface(out, images, encoded, progress)
    return {"source": str(src), **counts, "ingest": "conform", "resized": resized, "skipped": skipped, "warnings": warnings}
