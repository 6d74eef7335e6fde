"""Correlations by training progress: one axis for every run, and the paper's early point, epoch 1 (claim 1b).

A run with progress probes (``correlation_progress.csv``, :func:`.correlation.progress_correlation_table`)
is placed by its measured ``progress`` = step / total optimiser steps; a run without them
(``train.probe_progress: []``, or trained before they existed) by its epoch ends (``correlation.csv``), at
progress = epoch / its last epoch, step and images seen unknown. ``schedule`` says which: ``progress`` |
``epoch``.

The early point of a run (:func:`early_rows`, claim 1b) is defined by training state, not by a fraction of
the optimiser steps: the probe at the end of the first full pass over the training data, i.e. the epoch-end
probe of epoch 1 (``correlation.csv``, ``schedule`` = ``epoch``) — the paper's "epoch 1". Fallbacks, each
visible in the rows' ``schedule``/``epoch``/``step``: a run without an epoch-1 epoch-end probe uses its last
progress probe inside epoch 1 (``schedule`` = ``progress``, ``epoch`` = 1: the nearest recorded state to the
end of the first pass); a run with neither uses its earliest trained epoch-end probe (``epoch`` > 1 says so).
Step 0 (before training) is never the early point.

:func:`curve_rows` gives every probe point of the runs — the progress probes and the epoch-end probes —
so the whole curve can be shown beside the decision point; epoch-end rows of a run with progress probes get
their step and images seen from that run's progress rows (steps per epoch × epoch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from marginlab.analysis.correlation import PROGRESS_CORRELATION_COLUMNS

__all__ = ["AXIS_COLUMNS", "curve_rows", "early_rows", "training_progress_rows"]

AXIS_COLUMNS = [*PROGRESS_CORRELATION_COLUMNS, "schedule"]


def training_progress_rows(correlation: pd.DataFrame, progress_correlation: pd.DataFrame | None) -> pd.DataFrame:
    """Probe correlations of every run on the training-progress axis (:data:`AXIS_COLUMNS`; module docstring).

    ``correlation``: rows of ``correlation.csv`` (its ``eval:*`` passes are left out); ``progress_correlation``:
    rows of ``correlation_progress.csv`` or None.
    """
    progress_rows = (progress_correlation if progress_correlation is not None
                     else pd.DataFrame(columns=PROGRESS_CORRELATION_COLUMNS)).assign(schedule="progress")
    epoch_rows = _epoch_axis(correlation[~correlation["run"].isin(set(progress_rows["run"]))])
    parts = [frame[AXIS_COLUMNS] for frame in (progress_rows, epoch_rows) if len(frame)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=AXIS_COLUMNS)


def _epoch_axis(correlation: pd.DataFrame) -> pd.DataFrame:
    """Probe rows of ``correlation.csv`` (``eval:*`` passes left out) placed at progress = epoch / last epoch."""
    rows = correlation[~correlation["pass"].astype(str).str.startswith("eval:")].copy()
    last = rows.groupby("run")["epoch"].transform("max")
    rows["progress"] = rows["epoch"] / last.where(last > 0)
    rows["step"] = np.nan
    rows["images_seen"] = np.nan
    rows["schedule"] = "epoch"
    return rows


def _epoch_one(epoch_rows: pd.DataFrame, progress_rows: pd.DataFrame) -> pd.DataFrame:
    """One run's early rows (module docstring): epoch-1 epoch-end probe, else the last progress probe in
    epoch 1, else the earliest trained epoch-end probe; empty when the run has none of them."""
    if len(epoch_rows) and (epoch_rows["epoch"] == 1).any():
        return epoch_rows[epoch_rows["epoch"] == 1]
    inside = progress_rows[(progress_rows["step"] > 0) & (progress_rows["epoch"] == 1)] if len(progress_rows) else progress_rows
    if len(inside):
        return inside[inside["step"] == inside["step"].max()]
    trained = epoch_rows[epoch_rows["epoch"] > 0] if len(epoch_rows) else epoch_rows
    if len(trained):
        return trained[trained["epoch"] == trained["epoch"].min()]
    return epoch_rows.iloc[:0]


def _with_steps(epoch_rows: pd.DataFrame, progress_rows: pd.DataFrame) -> pd.DataFrame:
    """Epoch-end rows with step and images seen filled from the run's progress rows (when it has any)."""
    trained = progress_rows[(progress_rows["step"] > 0) & (progress_rows["progress"] > 0)] if len(progress_rows) else progress_rows
    if not len(trained) or not len(epoch_rows):
        return epoch_rows
    first = trained.iloc[0]
    total = float(round(float(first["step"]) / float(first["progress"])))
    batch = float(first["images_seen"]) / float(first["step"])
    out = epoch_rows.copy()
    out["step"] = np.round(out["progress"] * total)
    out["images_seen"] = out["step"] * batch
    return out


def _per_run(correlation: pd.DataFrame, progress_correlation: pd.DataFrame | None, runs: Sequence[str]):
    """``(epoch-end rows with steps filled, progress rows)`` of each run of ``runs``, in order."""
    progress = (progress_correlation if progress_correlation is not None
                else pd.DataFrame(columns=PROGRESS_CORRELATION_COLUMNS)).assign(schedule="progress")
    by_epoch = _epoch_axis(correlation)
    for run in runs:
        p_rows = progress[progress["run"] == run]
        yield _with_steps(by_epoch[by_epoch["run"] == run], p_rows), p_rows


def early_rows(correlation: pd.DataFrame, progress_correlation: pd.DataFrame | None, runs: Sequence[str]) -> pd.DataFrame:
    """Per run of ``runs``, its rows (every pass, quantity, target) at the early point: epoch 1 (module docstring)."""
    picked = [_epoch_one(e_rows, p_rows) for e_rows, p_rows in _per_run(correlation, progress_correlation, runs)]
    picked = [p[AXIS_COLUMNS] for p in picked if len(p)]
    return pd.concat(picked, ignore_index=True) if picked else pd.DataFrame(columns=AXIS_COLUMNS)


def curve_rows(correlation: pd.DataFrame, progress_correlation: pd.DataFrame | None, runs: Sequence[str]) -> pd.DataFrame:
    """Every probe point of ``runs``: progress probes and epoch-end probes (steps filled where known), sorted
    by progress; the rows of :func:`early_rows` are among them."""
    frames = []
    for e_rows, p_rows in _per_run(correlation, progress_correlation, runs):
        frames += [p_rows[AXIS_COLUMNS], e_rows[AXIS_COLUMNS]]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=AXIS_COLUMNS)
    return pd.concat(frames, ignore_index=True).sort_values(["progress", "schedule"], kind="stable").reset_index(drop=True)
