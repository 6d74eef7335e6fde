"""Ingest of ``data.train_folders``: identity folders converted to ``train.rec`` (every image decoded and conformed).

The conversion is :func:`marginlab.data.formats.folders_to_recordio` (images decoded one at a time);
``train_classes.parquet`` maps each label to its folder name. Symlinks in the tree are followed only
inside it, and each image is read once (a link must not add a second label or foreign files): the rule
is in :mod:`marginlab.data.formats.folders`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from marginlab.data.formats import DataFormatError, ImagePolicy, MissingFileError, folders_to_recordio, open_recordio
from marginlab.data.prepare.files import write_train_meta
from marginlab.core.io import write_parquet
from marginlab.core.layouts import PreparedLayout

__all__ = ["ingest_folders"]


def ingest_folders(out: Path, root: Path, policy: ImagePolicy, skip_corrupt: bool, progress: bool) -> dict:
    """Convert identity folders (every image decoded and conformed, one at a time)."""
    if not root.is_dir():
        raise MissingFileError(f"data.train_folders: directory {root} not found")
    try:
        info = folders_to_recordio(root, PreparedLayout(out).train_rec, skip_corrupt=skip_corrupt, policy=policy, progress=progress)
    except DataFormatError as exc:  # the message names the image file
        raise type(exc)(f"data.train_folders: {exc}") from None
    labels = _labels_of(PreparedLayout(out).train_rec)
    write_train_meta(out, labels)
    pd.DataFrame({"label": np.arange(len(info["class_names"])), "class_name": info["class_names"]}).pipe(
        lambda f: write_parquet(PreparedLayout(out).train_classes, f)
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
