"""A hostile pickle for the "files from elsewhere are data, never code" tests.

Unpickling :class:`RunsTouch` runs ``touch <marker>`` through ``os.system``: a stand-in for arbitrary
code. A test saves one inside a file, loads the file the way the project does, and asserts that the
load is refused and ``marker`` was never created.
"""

from __future__ import annotations

import os
from pathlib import Path


class RunsTouch:
    def __init__(self, marker: str | Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
