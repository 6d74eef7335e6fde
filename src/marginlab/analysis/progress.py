"""Correlations by training progress: one axis for every run, and the paper's early point (claim 1b).

A run with progress probes (``correlation_progress.csv``, :func:`.correlation.progress_correlation_table`)
is placed by its measured ``progress`` = step / total optimiser steps; a run without them
(``train.probe_progress: []``, or trained before they existed) by its epoch ends (``correlation.csv``), at
progress = epoch / its last epoch, step and images seen unknown. ``schedule`` says which: ``progress`` |
``epoch``.

The early point of a run (:func:`early_rows`) is its progress probe nearest to
:data:`.paper_numbers.PAPER_EARLY_PROGRESS` (1/26: the paper's epoch 1 of 26) among those after the first
update (step 0 is before training); a tie takes the earlier step. A run without progress probes after
step 0, or whose epoch 1 lies nearer to that fraction than its nearest progress probe (a schedule without an
early fraction, e.g. ``[0, 1]``), falls back to its epoch 1 (its earliest trained epoch when it has no
epoch 1); ``schedule`` of the rows says which was used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from marginlab.analysis.correlation import PROGRESS_CORRELATION_COLUMNS
from marginlab.analysis.paper_numbers import PAPER_EARLY_PROGRESS

__all__ = ["AXIS_COLUMNS", "early_rows", "training_progress_rows"]

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


def _nearest_step(rows: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The rows of the trained step (> 0) whose progress is nearest to ``fraction`` (ties: the earlier)."""
    trained = rows[rows["step"] > 0]
    if trained.empty:
        return trained
    distance = (trained["progress"] - fraction).abs()
    return trained[trained["step"] == trained.loc[distance == distance.min(), "step"].min()]


def _early_epoch(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of epoch 1, or of the earliest trained epoch (or epoch 0 when nothing was trained)."""
    epochs = rows["epoch"]
    trained = epochs[epochs > 0]
    epoch = 1 if (epochs == 1).any() else (trained.min() if len(trained) else epochs.min())
    return rows[epochs == epoch]


def _early_of_run(rows: pd.DataFrame, epoch_rows: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """One run's early rows: its progress probe nearest to ``fraction``, unless it has none after step 0 or its
    epoch 1 lies nearer to ``fraction`` (a schedule without an early fraction, e.g. ``[0, 1]``)."""
    nearest = _nearest_step(rows, fraction) if (rows["schedule"] == "progress").all() else rows.iloc[:0]
    epoch = _early_epoch(epoch_rows) if len(epoch_rows) else epoch_rows
    if not len(nearest):
        return epoch
    if len(epoch) and abs(float(epoch["progress"].iloc[0]) - fraction) < abs(float(nearest["progress"].iloc[0]) - fraction):
        return epoch
    return nearest


def early_rows(correlation: pd.DataFrame, progress_correlation: pd.DataFrame | None, runs: Sequence[str],
               fraction: float = PAPER_EARLY_PROGRESS) -> pd.DataFrame:
    """Per run of ``runs``, its rows (every pass, quantity, target) at the early point (module docstring)."""
    axis = training_progress_rows(correlation, progress_correlation)
    by_epoch = _epoch_axis(correlation)
    picked = []
    for run in runs:
        rows = axis[axis["run"] == run]
        if len(rows):
            picked.append(_early_of_run(rows, by_epoch[by_epoch["run"] == run], fraction))
    picked = [p for p in picked if len(p)]
    return pd.concat(picked, ignore_index=True) if picked else pd.DataFrame(columns=AXIS_COLUMNS)
