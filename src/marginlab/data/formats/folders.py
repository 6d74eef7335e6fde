"""Identity folders (one sub-folder per class) and TinyFace-style identification sets.

Identity folders::

    root/<class name>/<any depth>/<image>.{jpg,jpeg,png,bmp}

Class ``c`` is the c-th class folder in sorted name order; images inside a class are sorted by
relative path; hidden entries (``.*``) and other extensions are ignored.  Converting to RecordIO
decodes every image fully, one at a time, keeps JPEG files byte for byte (no generational loss) and
re-encodes everything else (PNG, BMP, or a JPEG-named file holding another format) to JPEG
quality 95.  With an :class:`~marginlab.data.formats.images.ImagePolicy` (what prepare passes), an image
that is not ``size`` x ``size`` is cropped or padded to a square and resized first
(:func:`~marginlab.data.formats.images.conform_encoded`); without one, sizes are kept.  Images are not
aligned.

Identification set (TinyFace layout)::

    root/Probe/<identity>_<k>.jpg
    root/Gallery_Match/<identity>_<k>.jpg
    root/Gallery_Distractor/<any name>.jpg      (label -1; the folder is optional)

``<identity>`` is the file stem up to its last underscore.  If every identity is a decimal number
the labels are those numbers (TinyFace's ids); otherwise the sorted identity names of Probe and
Gallery_Match are numbered 0..K-1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from marginlab.data.formats.errors import (
    CorruptImageError,
    DataFormatError,
    EmptyFolderError,
    FolderFormatError,
    MissingFileError,
)
from marginlab.data.formats.images import (
    Conformed,
    ImagePolicy,
    conform_encoded,
    decode_image_checked,
    encode_jpeg,
    is_jpeg,
)
from marginlab.data.formats.recordio_writer import write_recordio

__all__ = [
    "IDENTIFICATION_PARTS",
    "IMAGE_EXTENSIONS",
    "folders_to_recordio",
    "list_image_folder",
    "read_identification_set",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
IDENTIFICATION_PARTS = ("Probe", "Gallery_Match", "Gallery_Distractor")


def _require_dir(root: Path, what: str) -> None:
    if not root.exists():
        raise MissingFileError(f"{root}: {what} not found")
    if not root.is_dir():
        raise FolderFormatError(f"{root}: {what} must be a directory")


def _images_under(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden entries skipped), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fname in filenames:
            if not fname.startswith(".") and os.path.splitext(fname)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / fname)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def list_image_folder(root: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """List an identity-folder tree: ``(paths, labels int64, class_names)``.

    Raises :class:`EmptyFolderError` if ``root`` has no class sub-folder or a class folder holds no
    image (every class needs at least one image so labels stay 0..C-1).
    """
    root = Path(root)
    _require_dir(root, "identity-folder root")
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)
    if not class_dirs:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS][:3]
        hint = f" (found images {loose} directly in it: put each identity's images in its own sub-folder)" if loose else ""
        raise EmptyFolderError(f"{root}: no class sub-folders{hint}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        images = _images_under(class_dir)
        if not images:
            raise EmptyFolderError(
                f"{class_dir}: class folder holds no image ({', '.join(IMAGE_EXTENSIONS)}); remove it or add images"
            )
        paths.extend(images)
        labels.extend([label] * len(images))
    return paths, np.asarray(labels, dtype=np.int64), [d.name for d in class_dirs]


def _jpeg_bytes(path: Path, quality: int, policy: ImagePolicy | None) -> Conformed:
    """The JPEG to store for ``path`` (see :func:`folders_to_recordio`).  Raises CorruptImageError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptImageError(f"{path}: cannot read ({exc})") from None
    if policy is not None:
        return conform_encoded(data, policy, source=str(path), jpeg_only=True)
    image, warnings = decode_image_checked(data, source=str(path))
    shape = (int(image.shape[0]), int(image.shape[1]))
    if is_jpeg(data):
        return Conformed(data, False, False, shape, tuple(warnings))
    return Conformed(encode_jpeg(image, quality=quality), False, True, shape, tuple(warnings))


def folders_to_recordio(
    root: str | Path,
    rec_path: str | Path,
    skip_corrupt: bool = False,
    *,
    jpeg_quality: int = 95,
    policy: ImagePolicy | None = None,
    progress: bool = True,
) -> dict:
    """Convert an identity-folder tree to an InsightFace RecordIO (``.rec`` + ``.idx``, with header).

    Every image is decoded (one at a time).  JPEG files are stored as they are; other formats are
    re-encoded to JPEG at ``jpeg_quality``; with ``policy``, images not at ``policy.size`` are made
    square and resized (JPEG at ``policy.jpeg_quality``).  A corrupt image raises
    :class:`CorruptImageError` unless ``skip_corrupt``, in which case it is skipped and reported; a
    class left without images is dropped and the remaining classes are renumbered contiguously.
    Returns ``{"num_images", "num_classes", "class_names" (kept, in label order), "skipped": [(path,
    reason)], "dropped_classes", "reencoded" (format change only), "resized", "warnings": [(path,
    decoder message)]}``.
    """
    root = Path(root)
    paths, labels, class_names = list_image_folder(root)
    skipped: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    kept_names: list[str] = []
    counters = {"reencoded": 0, "resized": 0}

    def samples() -> Iterator[tuple[bytes, int]]:
        for path, label in tqdm(
            zip(paths, labels.tolist()), total=len(paths), desc=f"{root.name} -> {Path(rec_path).name}", disable=not progress, unit="img"
        ):
            try:
                result = _jpeg_bytes(path, jpeg_quality, policy)
            except CorruptImageError as exc:
                if not skip_corrupt:
                    raise
                skipped.append((str(path), str(exc)))
                continue
            if not kept_names or kept_names[-1] != class_names[label]:
                kept_names.append(class_names[label])
            counters["resized"] += int(result.resized)
            counters["reencoded"] += int(result.reencoded and not result.resized)
            warnings.extend((str(path), m) for m in result.warnings)
            yield result.data, len(kept_names) - 1

    try:
        info = write_recordio(rec_path, samples(), with_header=True)
    except DataFormatError:
        if not kept_names and skipped:
            raise EmptyFolderError(f"{root}: all {len(paths)} images were skipped as corrupt; nothing to write") from None
        raise
    kept = set(kept_names)
    return {
        **info,
        "class_names": kept_names,
        "skipped": skipped,
        "dropped_classes": [c for c in class_names if c not in kept],
        "reencoded": counters["reencoded"],
        "resized": counters["resized"],
        "warnings": warnings,
    }


def _identity_of(path: Path) -> str | None:
    stem = path.stem
    return stem.rsplit("_", 1)[0] if "_" in stem and stem.rsplit("_", 1)[0] else None


def read_identification_set(root: str | Path) -> dict[str, tuple[list[Path], np.ndarray]]:
    """Read a TinyFace-style identification set: ``{part: (sorted paths, labels int64)}``.

    Parts ``Probe`` and ``Gallery_Match`` are required and non-empty; their file names must be
    ``<identity>_<k>.<ext>``, and every probe identity must have a gallery match (closed set).
    ``Gallery_Distractor`` is optional (empty if absent); its labels are -1.  Paths are sorted by
    their path relative to the part folder, so positions are stable.
    """
    root = Path(root)
    _require_dir(root, "identification-set root")
    parts: dict[str, list[Path]] = {}
    for part in IDENTIFICATION_PARTS:
        folder = root / part
        if part == "Gallery_Distractor" and not folder.exists():
            parts[part] = []
            continue
        _require_dir(folder, f"identification-set part '{part}'")
        parts[part] = _images_under(folder)
        if not parts[part] and part != "Gallery_Distractor":
            raise EmptyFolderError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    identities: dict[str, list[str]] = {}
    for part in ("Probe", "Gallery_Match"):
        names = []
        for path in parts[part]:
            ident = _identity_of(path)
            if ident is None:
                raise FolderFormatError(f"{path}: file name must be '<identity>_<k>.<ext>' in {part}")
            names.append(ident)
        identities[part] = names
    all_names = set(identities["Probe"]) | set(identities["Gallery_Match"])
    if all(n.isdigit() for n in all_names):
        mapping = {n: int(n) for n in all_names}
    else:
        mapping = {n: i for i, n in enumerate(sorted(all_names))}
    gallery = set(identities["Gallery_Match"])
    for path, ident in zip(parts["Probe"], identities["Probe"]):
        if ident not in gallery:
            raise FolderFormatError(f"{path}: probe identity '{ident}' has no image in Gallery_Match (closed-set protocol)")
    out: dict[str, tuple[list[Path], np.ndarray]] = {}
    for part in ("Probe", "Gallery_Match"):
        out[part] = (parts[part], np.asarray([mapping[n] for n in identities[part]], dtype=np.int64))
    out["Gallery_Distractor"] = (parts["Gallery_Distractor"], np.full(len(parts["Gallery_Distractor"]), -1, dtype=np.int64))
    return out
