"""The files prepare reads and writes: input paths, linked inputs, ``train_meta.parquet``, permissions, hashes.

The user's files are never modified: an input that goes into the output unchanged is hard-linked
(:func:`link_or_copy`; copied across file systems), so it shares its inode (mode, times, bytes) with the
user's file and is never chmod-ed (:func:`apply_umask` skips files with more than one link).
``manifest.json`` lists the sha256 of every regular file written (:func:`hash_tree`; a symlink, should
one appear, is listed under ``links`` and not hashed).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from marginlab.data.formats import MissingFileError
from marginlab.core.io import sha256_file, write_parquet
from marginlab.core.layouts import PreparedLayout

__all__ = ["apply_umask", "hash_tree", "link_or_copy", "require_file", "resolve_input", "write_train_meta"]


def resolve_input(path: str | Path, base: Path) -> Path:
    """A params path (``~`` expanded), relative ones taken from ``base``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def require_file(path: Path, key: str) -> None:
    """Raise :class:`~marginlab.data.formats.MissingFileError` naming the params ``key`` unless ``path`` is a file."""
    if not path.is_file():
        raise MissingFileError(f"{key}: file {path} not found")


def link_or_copy(src: str | Path, dst: str | Path) -> str:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it. Returns ``"hardlink"`` or ``"copy"``."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def write_train_meta(out: Path, labels: np.ndarray) -> pd.DataFrame:
    """``train_meta.parquet`` of a real training set: ``index`` (reader position) and ``label``."""
    labels = np.asarray(labels, dtype=np.int64)
    meta = pd.DataFrame({"index": np.arange(len(labels), dtype=np.int64), "label": labels})
    write_parquet(PreparedLayout(out).train_meta, meta)
    return meta


def hash_tree(root: str | Path, *, exclude: tuple[str, ...] = (), progress: bool = True) -> tuple[dict[str, dict], list[dict]]:
    """``({relative path: {"sha256", "bytes"}}, [symlinks])`` for every regular file under ``root``.

    Symlinks (to files or directories) are not followed: they are returned as
    ``{"path", "target"}`` entries instead.
    """
    root = Path(root)
    files: list[Path] = []
    links: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for name in sorted(dirnames):
            if (d / name).is_symlink():
                links.append({"path": (d / name).relative_to(root).as_posix(), "target": os.readlink(d / name)})
        for name in filenames:
            p = d / name
            rel = p.relative_to(root).as_posix()
            if rel in exclude:
                continue
            if p.is_symlink():
                links.append({"path": rel, "target": os.readlink(p)})
            else:
                files.append(p)
    files.sort()
    total = sum(p.stat().st_size for p in files)
    out: dict[str, dict] = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc="sha256", disable=not progress) as bar:
        for p in files:
            out[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p, progress=bar), "bytes": p.stat().st_size}
    return out, sorted(links, key=lambda e: e["path"])


def apply_umask(root: Path) -> None:
    """Give the output the permissions of ordinary files (temporary files are created 0600/0700).

    A file with more than one hard link is an input linked in (``link_or_copy``): it shares its
    inode with the user's file, so changing its mode would change theirs; it is left as it is.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                os.chmod(p, 0o777 & ~mask)
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_symlink() and p.stat().st_nlink == 1:
                os.chmod(p, 0o666 & ~mask)
