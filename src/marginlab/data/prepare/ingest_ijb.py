"""Ingest of a ``data.ijb`` entry: its meta files copied, its loose crops referenced and checked.

The three meta files go to ``ijb/<name>/meta/`` and ``ijb/<name>/image_dir.json`` names ``image_dir``
(IJB-C is hundreds of thousands of crops, so they are referenced, not copied: relative when inside the
project, so a moved checkout still finds them; see :mod:`marginlab.data.formats.ijb`).  The copy is
checked with ``read_ijb`` and for the existence of every listed image.  No symlinks: DVC neither
hashes nor restores them in an output.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from marginlab.data.formats import IMAGE_DIR_FILE, IJBFormatError, MissingFileError, ijb_meta_paths, read_ijb, write_image_dir_ref
from marginlab.data.formats.images import DEFAULT_MAX_IMAGE_PIXELS
from marginlab.data.prepare.files import resolve_input
from marginlab.core.layouts import PreparedLayout

__all__ = ["ingest_ijb"]


def ingest_ijb(out: Path, entry: Any, base: Path, progress: bool, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> dict:
    # No image policy here: loose crops of any size are referenced, not copied, and every reader
    # (quality, evaluate) gets faces through IJBSet.load_aligned, which warps each crop to the 112x112
    # ArcFace template from its five landmarks (marginlab.data.formats.ijb, images.align_face). Only the
    # size limit (data.max_image_pixels) travels with the reference, for those readers.
    meta_dir = resolve_input(entry.meta_dir, base)
    image_dir = resolve_input(entry.image_dir, base).resolve()
    if not image_dir.is_dir():
        raise MissingFileError(f"data.ijb[{entry.name}].image_dir: directory {image_dir} not found")
    root = PreparedLayout(out).ijb_set(entry.name)
    if root.exists():
        raise IJBFormatError(f"data.ijb: two entries are named {entry.name!r}; names must be unique")
    for key, dst in ijb_meta_paths(root, entry.name).items():
        src = meta_dir / dst.name
        if not src.is_file():
            raise MissingFileError(f"data.ijb[{entry.name}].meta_dir: {src} not found (expected {entry.name}_{key}.txt)")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    write_image_dir_ref(root, image_dir, base, max_pixels)
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
