"""Stage wall-time records, kept apart from the stages' deterministic outputs.

The quality and analysis ``summary.json`` and the evaluation ``metrics.json`` hold only facts that a
rerun reproduces, so DVC sees an unchanged output and their ``dvc metrics diff`` rows carry no timing
noise (training's metrics include throughput on purpose). How long the stage took
goes into a small ``timing.json`` beside them (declared in ``dvc.yaml`` with ``cache: false``), which
the report's provenance section reads::

    {"stage": "quality", "wall_time_s": 14.2, "started_utc": "...", "finished_utc": "...",
     "host": "node17", "torch_threads": 2, ...facts the stage adds (device, images)}

:class:`StageTimer` starts with the stage; the stage calls :meth:`StageTimer.write` after its last
output is written, so a failed stage leaves no timing that looks like a finished one.
"""

from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from marginlab.core.io import write_json
from marginlab.core.layouts import EVAL_TIMING_FILE, TIMING_FILE

__all__ = ["EVAL_TIMING_FILE", "TIMING_FILE", "StageTimer"]


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StageTimer:
    """Started when created; :meth:`write` records the elapsed wall time (call it after the outputs)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.started_utc = _utc_now()
        self._t0 = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    def write(self, path: str | Path, **facts: Any) -> dict[str, Any]:
        """Write ``{"stage", "wall_time_s", ...facts}`` atomically to ``path``; returns the record."""
        import torch  # the stages already import it; kept local so this module stays cheap to import

        record = {
            "stage": self.stage,
            "wall_time_s": round(self.elapsed_s, 3),
            "started_utc": self.started_utc,
            "finished_utc": _utc_now(),
            "host": platform.node(),
            "torch_threads": torch.get_num_threads(),
            **facts,
        }
        write_json(path, record)
        return record
