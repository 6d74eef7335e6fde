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

``<identity>`` is the file stem up to its last underscore, compared as written.  If every identity is
an ASCII decimal number of at most 18 digits the labels are those numbers (TinyFace's ids, fit in
int64); otherwise the sorted identity names of Probe and Gallery_Match are numbered 0..K-1 (so a
30-digit id works as a name).  Two identities that are one number written two ways (``1`` and ``01``)
are refused, naming both files: merging them could join two people, keeping them apart could split one.

Links (both layouts; the data root is the folder passed in, with its own path resolved): the tree may
be untrusted, and a link can make one image count twice or bring in files from anywhere.  So a symlink
is followed only when its target lies inside the data root, and every folder and image may be reached
once: a link to the root or to a folder containing the link (a loop), a link pointing outside the
root, a broken link, and one file or folder reached twice (e.g. a class folder linked to another
class, an image linked into a second class or part) are each refused with a
:class:`FolderFormatError` naming the root, the link and its target.  A link that stays inside and
duplicates nothing works, at any depth: e.g. a class folder linked to ``root/.store/<x>`` (hidden
entries are never read on their own).  Hard links are not detected: like copies, they are separate
files here.  Only directories and regular files are read (a FIFO named ``x.jpg`` would block).
"""

from __future__ import annotations

import errno
import os
import re
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
from marginlab.data.formats.image_header import is_jpeg
from marginlab.data.formats.images import (
    Conformed,
    ImagePolicy,
    conform_encoded,
    decode_image_checked,
    encode_jpeg,
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


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _via(via: tuple[Path, str] | None) -> str:
    return f" (through the link {via[0]} -> {via[1]})" if via else ""


class _Tree:
    """One walk of a data root under the link rule of the module docstring.

    Real paths are tracked as the walk goes (a link is resolved once), so a plain file costs no
    extra system call; ``via`` is the last link followed on the way to an entry, for messages.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real = os.path.realpath(root)
        self.dirs: dict[str, Path] = {self.real: root}  # real folder -> the path it was first reached by
        self.files: dict[str, tuple[Path, tuple[Path, str] | None]] = {}  # real image -> (path, via)

    def classify(self, path: Path, link: bool, is_dir: bool, is_file: bool, parent_real: str,
                 via: tuple[Path, str] | None, images: bool = True) -> tuple[str | None, str, tuple[Path, str] | None]:
        """``(kind, real path, via)`` of an entry: kind ``"dir"``, ``"image"`` or None (never read)."""
        if not link:
            kind = "dir" if is_dir else "image" if images and is_file and _is_image_name(path.name) else None
            return kind, os.path.join(parent_real, path.name), via
        try:
            real = os.path.realpath(path, strict=True)
        except OSError as exc:
            what = "a symlink loop" if exc.errno == errno.ELOOP else f"a broken link ({exc.strerror})"
            raise FolderFormatError(f"{self.root}: {path} -> {_link_text(path)} is {what}; fix or remove the link") from None
        kind = "dir" if os.path.isdir(real) else "image" if images and os.path.isfile(real) and _is_image_name(path.name) else None
        if kind is not None and not _inside(real, self.real):
            raise FolderFormatError(f"{self.root}: {path} -> {real} points outside the data root ({self.real}); "
                                    "links may only point inside it: copy the files in or use a root that holds them")
        return kind, real, (path, real)

    def walk(self, top: Path, real: str, via: tuple[Path, str] | None, ancestors: tuple[str, ...]) -> list[Path]:
        """Images under ``top`` (recursive, hidden entries skipped), sorted by relative path.

        Iterative, in sorted order: a deep tree must not end in a RecursionError, and the file
        named "first" in a message must not depend on the file system's listing order.
        """
        found: list[Path] = []
        stack = [(top, real, via, ancestors)]
        while stack:
            folder, real, via, ancestors = stack.pop()
            if real in ancestors:
                where = "the data root itself" if real == self.real else f"{self.dirs[real]}, which contains it"
                raise FolderFormatError(f"{self.root}: {folder}{_via(via)} is a symlink loop: it leads back to {where}; remove the link")
            if real in self.dirs:
                raise FolderFormatError(f"{self.root}: {folder}{_via(via)} is the folder {self.dirs[real]} reached a second time; "
                                        "every folder and image may be reached once (its images would be read twice)")
            self.dirs[real] = folder
            ancestors = (*ancestors, real)
            with os.scandir(folder) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
            subdirs = []
            for e in entries:
                path = folder / e.name
                kind, real_e, via_e = self.classify(path, e.is_symlink(), e.is_dir(follow_symlinks=False),
                                                    e.is_file(follow_symlinks=False), real, via)
                if kind == "dir":
                    subdirs.append((path, real_e, via_e, ancestors))
                elif kind == "image":
                    first, first_via = self.files.setdefault(real_e, (path, via_e))
                    if first is not path:
                        labels = " and ".join(f"'{p.relative_to(self.root).parts[0]}'" for p in (first, path))
                        raise FolderFormatError(f"{self.root}: {path}{_via(via_e)} is the same file as {first}{_via(first_via)} "
                                                f"({real_e}): an image may be reached once, not under {labels}")
                    found.append(path)
            stack.extend(reversed(subdirs))
        return sorted(found, key=lambda p: p.relative_to(top).as_posix())


def _link_text(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def list_image_folder(root: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """List an identity-folder tree: ``(paths, labels int64, class_names)``.

    Raises :class:`EmptyFolderError` if ``root`` has no class sub-folder or a class folder holds no
    image (every class needs at least one image so labels stay 0..C-1), and :class:`FolderFormatError`
    for a link the module docstring's rule refuses.
    """
    root = Path(root)
    _require_dir(root, "identity-folder root")
    tree = _Tree(root)
    class_dirs = []
    with os.scandir(root) as it:
        for e in sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name):
            kind, real, via = tree.classify(root / e.name, e.is_symlink(), e.is_dir(follow_symlinks=False), False, tree.real, None,
                                            images=False)  # files beside the class folders are never read
            if kind == "dir":
                class_dirs.append((root / e.name, real, via))
    if not class_dirs:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS][:3]
        hint = f" (found images {loose} directly in it: put each identity's images in its own sub-folder)" if loose else ""
        raise EmptyFolderError(f"{root}: no class sub-folders{hint}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, (class_dir, real, via) in enumerate(class_dirs):
        images = tree.walk(class_dir, real, via, (tree.real,))
        if not images:
            raise EmptyFolderError(
                f"{class_dir}: class folder holds no image ({', '.join(IMAGE_EXTENSIONS)}); remove it or add images"
            )
        paths.extend(images)
        labels.extend([label] * len(images))
    return paths, np.asarray(labels, dtype=np.int64), [d.name for d, _, _ in class_dirs]


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


_DECIMAL = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes '²', which int() refuses


def _identity_labels(root: Path, first_file: dict[str, Path]) -> dict[str, int]:
    """Label of each identity name (module docstring); ``first_file`` gives a file of each, for messages."""
    names = sorted(first_file)
    by_number: dict[str, str] = {}
    for name in names:
        if _DECIMAL.fullmatch(name):
            other = by_number.setdefault(name.lstrip("0") or "0", name)
            if other != name:
                raise FolderFormatError(f"{root}: identities '{other}' ({first_file[other]}) and '{name}' ({first_file[name]}) are "
                                        "one number written two ways; identities are compared as written: rename one set of files")
    if len(by_number) == len(names) and all(len(n) <= 18 for n in by_number):
        return {name: int(name) for name in names}
    return {name: i for i, name in enumerate(names)}


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
    tree = _Tree(root)
    parts: dict[str, list[Path]] = {}
    for part in IDENTIFICATION_PARTS:
        folder = root / part
        if part == "Gallery_Distractor" and not os.path.lexists(folder):
            parts[part] = []
            continue
        link = folder.is_symlink()
        _, real, via = tree.classify(folder, link, not link and folder.is_dir(), False, tree.real, None, images=False)
        _require_dir(folder, f"identification-set part '{part}'")
        parts[part] = tree.walk(folder, real, via, (tree.real,))
        if not parts[part] and part != "Gallery_Distractor":
            raise EmptyFolderError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    identities: dict[str, list[str]] = {}
    first_file: dict[str, Path] = {}
    for part in ("Probe", "Gallery_Match"):
        names = []
        for path in parts[part]:
            ident = _identity_of(path)
            if ident is None:
                raise FolderFormatError(f"{path}: file name must be '<identity>_<k>.<ext>' in {part}")
            names.append(ident)
            first_file.setdefault(ident, path)
        identities[part] = names
    mapping = _identity_labels(root, first_file)
    gallery = set(identities["Gallery_Match"])
    for path, ident in zip(parts["Probe"], identities["Probe"]):
        if ident not in gallery:
            raise FolderFormatError(f"{path}: probe identity '{ident}' has no image in Gallery_Match (closed-set protocol)")
    out: dict[str, tuple[list[Path], np.ndarray]] = {}
    for part in ("Probe", "Gallery_Match"):
        out[part] = (parts[part], np.asarray([mapping[n] for n in identities[part]], dtype=np.int64))
    out["Gallery_Distractor"] = (parts["Gallery_Distractor"], np.full(len(parts["Gallery_Distractor"]), -1, dtype=np.int64))
    return out
