"""Which folders marginlab owns: a marker file inside every folder it creates as a whole.

Code that replaces or deletes a folder (the prepared set, figure folders, the alignment cache) first
checks for its marker, whatever the params say: a folder it did not create (a user's photos, the
project root, ``/``) is refused, not replaced. The path policy (:mod:`marginlab.core.paths`) is the first
line of defence; the marker is the second. Marker contents are constant so DVC hashes stay stable.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["ALIGN_CACHE_MARKER", "OUTPUT_MARKER", "has_marker", "write_marker"]

#: Written inside every folder that :func:`marginlab.core.io.atomic_dir` publishes.
OUTPUT_MARKER = ".marginlab-output"
#: Written inside ``data.alignment.cache_dir`` when the alignment cache first writes to it; a cache folder
#: outside the project is accepted only when empty or holding this file.
ALIGN_CACHE_MARKER = ".marginlab-align-cache"

_TEXT = "This folder was written by marginlab; marginlab may replace or delete it as a whole.\n"


def write_marker(folder: str | Path, marker: str = OUTPUT_MARKER) -> Path:
    """Create ``folder/marker`` (constant contents); return its path."""
    path = Path(folder) / marker
    if path.is_symlink():  # a planted link would make the write land wherever it points
        raise OSError(errno.EEXIST, "a symbolic link stands where marginlab's marker belongs", str(path))
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with os.fdopen(fd, "w") as fh:
            fh.write(_TEXT)
    return path


def has_marker(folder: str | Path, marker: str = OUTPUT_MARKER) -> bool:
    """True when ``folder`` holds the marker as a regular file (not a symlink planted elsewhere)."""
    path = Path(folder) / marker
    return path.is_file() and not path.is_symlink()
