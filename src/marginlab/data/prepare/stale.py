"""Temporary outputs of killed prepare runs: the flock that marks a live one, and the clean-up of the rest.

Prepare writes into a temporary sibling of ``out_dir`` (:func:`marginlab.core.io.atomic_dir`) that replaces
``out_dir`` only when complete.  While it runs it holds an ``flock`` on that directory
(:func:`lock_dir`); on start, temporary siblings that no live process holds, left by a killed prepare,
are removed (:func:`clean_stale_temps`).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path

__all__ = ["clean_stale_temps", "lock_dir"]


def _stale_pattern(out_dir: Path) -> re.Pattern:
    """Names :func:`marginlab.core.io.atomic_dir` gives its temporary sibling of ``out_dir`` (mkdtemp: 8 chars)."""
    return re.compile(rf"\.{re.escape(out_dir.name)}\.[a-z0-9_]{{8}}\.tmp")


def _held_by_live_process(path: Path) -> bool:
    """True if a running prepare holds ``path`` (its flock), or if that cannot be told (kept, to be safe)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # EWOULDBLOCK: a live prepare holds it; anything else (no flock here): unknown
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def clean_stale_temps(out_dir: str | Path) -> list[str]:
    """Remove what a killed prepare left beside ``out_dir``; returns the names removed.

    Only our own naming is touched: ``.<name>.XXXXXXXX.tmp`` directories (the temporary output) that
    no live process holds an flock on, and ``.<name>.old`` (the previous output during the final
    swap) when no such directory is in use.
    """
    out_dir = Path(out_dir)
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    pattern = _stale_pattern(out_dir)
    removed, busy = [], False
    for entry in sorted(parent.iterdir()):
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            if _held_by_live_process(entry):
                busy = True
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    old = parent / f".{out_dir.name}.old"
    if not busy and old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old.name)
    return removed


def lock_dir(directory: Path) -> int:
    """Take an exclusive flock on ``directory``; returns the descriptor that holds it (close to release;
    the kernel releases it when the process dies, which is what marks a temporary output as stale)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without flock: stale copies are then kept, never deleted
        pass
    return fd
