"""Probes by training progress: the optimiser steps at which the probe is measured besides epoch ends.

The paper's "early in training" is epoch 1 of 26, i.e. about 4 % of its optimiser steps; a run of 6
epochs reaches the end of its epoch 1 at 17 %. So besides the epoch ends the probe is measured at fixed
*fractions* of the run's optimiser steps (``train.probe_progress``, default 0, 1, 2, 4, 8, 16, 32, 64 and
100 %), which compare across runs of any length and with the paper.

A fraction f becomes the step ``round(f × total_steps)`` (Python's ``round``, half to even, as the LR
milestones of :mod:`.optim`), ``total_steps = epochs × steps_per_epoch``; fractions that land on the same
step (short runs) are measured once, and the schedule says which ones collapsed. Step 0 is before the
first update (the weights of epoch 0); step s ≥ 1 is right after the s-th optimiser step.

Each measurement is ``probe/progress/step_XXXXXXX.parquet``: the columns of the epoch probe
(:data:`.probe.PROBE_COLUMNS`; ``epoch`` = the epoch during which the step was taken, 0 for step 0)
plus ``step``, ``images_seen`` = step × global batch size (the training loader drops the incomplete
last batch, so every step sees exactly one global batch) and ``progress`` = step / total_steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marginlab.core.io import atomic_path
from marginlab.core.layouts import RunLayout
from marginlab.train.probe import PROBE_COLUMNS

PROGRESS_COLUMNS = (*PROBE_COLUMNS, "step", "images_seen", "progress")


@dataclass(frozen=True)
class ProbeSchedule:
    """The steps of a run's progress probes and the configured fractions behind each one."""

    total_steps: int
    batch_size: int  # the global batch: images per optimiser step
    steps: tuple[int, ...]  # increasing, unique
    fractions: tuple[tuple[float, ...], ...]  # per step, the fractions that round to it

    def images_seen(self, step: int) -> int:
        return step * self.batch_size

    def progress(self, step: int) -> float:
        return step / self.total_steps

    def collapsed(self) -> dict[int, tuple[float, ...]]:
        """Steps that several fractions round to (a run too short to separate them)."""
        return {s: f for s, f in zip(self.steps, self.fractions) if len(f) > 1}

    def as_summary(self) -> dict:
        """The schedule as ``train_summary.json`` records it."""
        return {
            "fractions": [f for group in self.fractions for f in group],
            "total_steps": self.total_steps,
            "steps": list(self.steps),
            "images_seen": [self.images_seen(s) for s in self.steps],
            "progress": [self.progress(s) for s in self.steps],
            "collapsed": [{"step": s, "fractions": list(f)} for s, f in self.collapsed().items()],
        }


def probe_schedule(fractions: Sequence[float], total_steps: int, batch_size: int) -> ProbeSchedule:
    """The :class:`ProbeSchedule` of ``fractions`` (validated as ``train.probe_progress``) over ``total_steps``."""
    if total_steps < 1 or batch_size < 1:
        raise ValueError(f"total_steps and batch_size must be positive, got {total_steps}, {batch_size}")
    by_step: dict[int, list[float]] = {}
    for f in fractions:
        by_step.setdefault(round(f * total_steps), []).append(float(f))
    steps = sorted(by_step)
    return ProbeSchedule(total_steps, batch_size, tuple(steps), tuple(tuple(by_step[s]) for s in steps))


def with_progress(frame: pd.DataFrame, step: int, schedule: ProbeSchedule) -> pd.DataFrame:
    """An epoch-probe table (:meth:`.probe.ProbeSet.measure`) as the progress table of ``step``."""
    out = frame.copy()
    n = len(out)
    out["step"] = np.full(n, step, dtype=np.int64)
    out["images_seen"] = np.full(n, schedule.images_seen(step), dtype=np.int64)
    out["progress"] = np.full(n, schedule.progress(step), dtype=np.float64)
    return out[list(PROGRESS_COLUMNS)]


def progress_dir(run_dir: str | Path) -> Path:
    return RunLayout(run_dir).progress_dir


def progress_path(run_dir: str | Path, step: int) -> Path:
    return RunLayout(run_dir).progress_step(step)


def write_progress_table(run_dir: str | Path, step: int, blob: bytes) -> Path:
    """Write the parquet bytes of ``step``'s progress table atomically: the bytes the checkpoint keeps, so a
    file rewritten on resume is identical to the original."""
    path = progress_path(run_dir, step)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(blob)
    return path
