"""Did AdaFace's margin adapt? The distribution of ẑ over the probe images at every probe point.

The probe tables may hold ``z_hat`` (float32): the ẑ ∈ [−1, 1] AdaFace's margin would give each probe
image with the head's running statistics at probe time, ẑ = clip(h·(‖z‖ − μ)/σ, −1, 1) (σ + eps in the code); NaN for heads
that keep no such statistics. ẑ = 0 is CosFace's margin, ẑ = −1 ArcFace's, ẑ = +1 a negative angular margin
with a larger additive one.

:func:`zhat_table` — ``zhat.csv``, one row per run, probe point and pass (``clean``, and ``augmented`` where
the probe has that pass)::

    run, label, head, schedule, epoch, step, images_seen, progress, pass,
    n, mean, std, q05, q25, q50, q75, q95, share_clip_low, share_clip_high

``schedule``: ``epoch`` (``probe/epoch_XX.parquet``, the end of each epoch; step, images seen and progress
from the run's ``train_summary.json``: epoch × steps per epoch, × batch, / total steps; without a summary
step and images seen are NaN and progress = epoch / last probed epoch) or ``progress``
(``probe/progress/step_XXXXXXX.parquet``, as recorded). ``n``: finite ẑ values; ``std`` with ddof = 1
(NaN for n = 1); ``qNN``: numpy's linear-interpolation quantiles; ``share_clip_low`` / ``share_clip_high``:
the share of images at ẑ = −1 / +1 exactly (the clip). Probe points without a finite ẑ (tables written
before the column existed, heads without running statistics) are left out; :func:`runs_without_zhat` names
the AdaFace runs that have no row.

:func:`final_ranges` — per run label, the last epoch's clean-pass 5–95 % range averaged over seeds (the
report's table and sentence).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["QUANTILES", "ZHAT_COLUMNS", "ZHAT_FIGURE", "final_ranges", "runs_without_zhat", "zhat_stats", "zhat_table"]

#: The analysis stage's figure of this table (:func:`.figures.zhat_by_progress`).
ZHAT_FIGURE = "zhat_by_progress.png"
QUANTILES = (0.05, 0.25, 0.50, 0.75, 0.95)
QUANTILE_COLUMNS = tuple(f"q{round(100 * q):02d}" for q in QUANTILES)
POINT_COLUMNS = ["run", "label", "head", "schedule", "epoch", "step", "images_seen", "progress", "pass"]
STAT_COLUMNS = ["n", "mean", "std", *QUANTILE_COLUMNS, "share_clip_low", "share_clip_high"]
ZHAT_COLUMNS = POINT_COLUMNS + STAT_COLUMNS


def zhat_stats(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """n, mean, std (ddof 1), the :data:`QUANTILES` and the clipped shares of the finite ``values``."""
    z = np.asarray(values, dtype=np.float64)
    z = z[np.isfinite(z)]
    if not z.size:
        return {"n": 0, **{c: np.nan for c in STAT_COLUMNS[1:]}}
    q = np.quantile(z, QUANTILES)
    return {"n": int(z.size), "mean": float(z.mean()), "std": float(z.std(ddof=1)) if z.size > 1 else np.nan,
            **{c: float(v) for c, v in zip(QUANTILE_COLUMNS, q)},
            "share_clip_low": float(np.mean(z <= -1.0)), "share_clip_high": float(np.mean(z >= 1.0))}


def _run_steps(summary: Any) -> tuple[float, float, float]:
    """``(steps per epoch, batch, total steps)`` from a train summary, NaN where unknown."""
    if not isinstance(summary, Mapping):
        return np.nan, np.nan, np.nan
    try:
        steps, epochs, batch = float(summary["global_steps"]), float(summary["epochs"]), float(summary["batch_size"])
    except (KeyError, TypeError, ValueError):
        return np.nan, np.nan, np.nan
    return (steps / epochs if epochs > 0 else np.nan), batch, steps


def _columns(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``keys`` + ``z_hat`` of the rows with a finite ẑ, ``pass`` as plain strings."""
    out = frame.loc[np.isfinite(frame["z_hat"].to_numpy(np.float64)), [*keys, "z_hat"]].copy()
    out["pass"] = out["pass"].astype(str)
    return out


def _grouped(frame: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    rows = []
    for key, g in frame.groupby(keys, sort=True, observed=True):
        stats = zhat_stats(g["z_hat"].to_numpy())
        if stats["n"]:
            rows.append({**dict(zip(keys, key)), **stats})
    return rows


def zhat_table(probe: pd.DataFrame, progress_probe: pd.DataFrame | None = None,
               summaries: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """``zhat.csv`` (module docstring) of the epoch probes ``probe`` and the progress probes ``progress_probe``
    (the frames of :func:`.collect.collect`: probe rows plus ``run, label, head``)."""
    summaries = summaries or {}
    rows: list[dict[str, Any]] = []
    if probe is not None and len(probe) and "z_hat" in probe.columns:
        epoch_rows = _grouped(_columns(probe, ["run", "label", "head", "epoch", "pass"]), ["run", "label", "head", "epoch", "pass"])
        last = probe.groupby("run")["epoch"].max().to_dict()
        for r in epoch_rows:
            per_epoch, batch, total = _run_steps(summaries.get(r["run"]))
            step = r["epoch"] * per_epoch
            progress = step / total if np.isfinite(total) and total > 0 else (
                r["epoch"] / last[r["run"]] if last[r["run"]] > 0 else np.nan)
            rows.append({**r, "schedule": "epoch", "step": step, "images_seen": step * batch, "progress": progress})
    if progress_probe is not None and len(progress_probe) and "z_hat" in progress_probe.columns:
        keys = ["run", "label", "head", "step", "images_seen", "progress", "epoch", "pass"]
        rows += [{**r, "schedule": "progress"} for r in _grouped(_columns(progress_probe, keys), keys)]
    table = pd.DataFrame(rows, columns=ZHAT_COLUMNS)
    if table.empty:
        return table
    table["epoch"] = table["epoch"].astype("int64")
    table["n"] = table["n"].astype("int64")
    return table.sort_values(["run", "schedule", "progress", "pass"], ignore_index=True, kind="stable")


def runs_without_zhat(runs: pd.DataFrame, table: pd.DataFrame, head: str = "adaface") -> list[str]:
    """The ``head`` runs of the run table with no row in ``table`` (no ẑ recorded by their training code)."""
    have = set(table["run"]) if len(table) else set()
    return [r for r, h in zip(runs["run"], runs["head"]) if h == head and r not in have]


def final_ranges(table: pd.DataFrame) -> pd.DataFrame:
    """Per label: the last epoch's clean-pass q05 / q50 / q95 and clipped shares, mean over its runs (seeds).

    Columns ``label, head, runs, epoch, q05, q50, q95, q05_min, q95_max, share_clip_low, share_clip_high``
    (``q05_min`` / ``q95_max``: the extremes over the seeds).
    """
    columns = ["label", "head", "runs", "epoch", "q05", "q50", "q95", "q05_min", "q95_max", "share_clip_low",
               "share_clip_high"]
    rows = table[(table["schedule"] == "epoch") & (table["pass"] == "clean")] if len(table) else table
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows[rows["epoch"] == rows.groupby("run")["epoch"].transform("max")]
    out = []
    for label, g in rows.groupby("label", sort=False):
        out.append({"label": label, "head": g["head"].iloc[0], "runs": int(g["run"].nunique()), "epoch": int(g["epoch"].max()),
                    "q05": float(g["q05"].mean()), "q50": float(g["q50"].mean()), "q95": float(g["q95"].mean()),
                    "q05_min": float(g["q05"].min()), "q95_max": float(g["q95"].max()),
                    "share_clip_low": float(g["share_clip_low"].mean()), "share_clip_high": float(g["share_clip_high"].mean())})
    return pd.DataFrame(out, columns=columns)
