"""Builds the one :class:`.claim_registry.ClaimEvidence` the analysis stage hands to every claim.

The tables are the stage's own (its CSVs); what only the claims need, the per-reference-run P_yi
linearity gap and augmentation evidence at the last epoch, is computed here, each seeded by the run's name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from marginlab.analysis import augmentation as aug
from marginlab.analysis.claims.claim_registry import ClaimEvidence
from marginlab.analysis.collect import Collection
from marginlab.analysis.correlation import group_rng, nonlinearity_test
from marginlab.core.config import Params

__all__ = ["build_evidence"]


def _last_epoch_rows(probe: pd.DataFrame, run: str, pass_: str) -> pd.DataFrame:
    rows = probe[(probe["run"] == run) & (probe["pass"] == pass_)]
    return rows[rows["epoch"] == rows["epoch"].max()] if len(rows) else rows


def build_evidence(params: Params, col: Collection, *, reference: str | None, reference_runs: Sequence[str],
                   compared: Sequence[str], correlation: pd.DataFrame, progress_correlation: pd.DataFrame,
                   aggregate: pd.DataFrame, ablation: pd.DataFrame, n_resamples: int, norm_bins: int,
                   confidence: float) -> ClaimEvidence:
    """The evidence of ``params``' runs (``col``) given the stage's tables (:class:`.ClaimEvidence`)."""
    seed = params.seed
    probe = col.probe
    target = "iq" if len(probe) and "iq" in probe and np.isfinite(probe["iq"].astype(float)).any() else "gt_quality"
    pyi_nonlinearity, gaps, changes = {}, {}, {}
    for run in reference_runs:
        clean = _last_epoch_rows(probe, run, "clean") if len(probe) else pd.DataFrame()
        augmented = _last_epoch_rows(probe, run, "augmented") if len(probe) else pd.DataFrame()
        if len(clean) and target in clean:
            g = nonlinearity_test(clean[target].to_numpy(float), clean["p_yi"].to_numpy(float), n_resamples=n_resamples,
                                  confidence=confidence, seed=int(group_rng(seed, run, "pyi_nonlinearity").integers(2**31)))
            if np.isfinite(g["gain"]):
                pyi_nonlinearity[run] = {**g, "target": target}
        if len(augmented):
            gaps[run] = {**aug.low_high_gap(augmented, norm_bins, n_resamples=n_resamples, confidence=confidence,
                                            seed=int(group_rng(seed, run, "aug_gap").integers(2**31))),
                         "epoch": int(augmented["epoch"].iloc[0])}
            if len(clean):
                changes[run] = aug.norm_change(clean, augmented, n_resamples=n_resamples, confidence=confidence,
                                               seed=int(group_rng(seed, run, "norm_change").integers(2**31)))
    return ClaimEvidence(
        params=params, collection=col, reference=reference, reference_runs=tuple(reference_runs),
        compared=tuple(compared), correlation=correlation, progress_correlation=progress_correlation,
        aggregate=aggregate, ablation=ablation, pyi_nonlinearity=pyi_nonlinearity, augmentation_gaps=gaps,
        norm_changes=changes, norm_bins=norm_bins, n_resamples=n_resamples, confidence=confidence,
    )
