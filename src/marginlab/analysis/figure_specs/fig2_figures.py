"""The report's Fig. 2 section: norm / P_yi against quality, their correlation across training, and the
augmentation shares by norm bin (drawn by :mod:`marginlab.analysis.figures`)."""

from __future__ import annotations

from pathlib import Path

from marginlab.analysis.figure_specs.figure_registry import FigureInputs, register_figure
from marginlab.analysis.paper_numbers import FIG2_NORM_IQ_CORRELATION, PAPER_EARLY_PROGRESS

PROGRESS_CAPTION = (
    "Correlation of norm / P_yi with IQ across training, 95 % bootstrap CIs. x: training progress, the share of the "
    "run's optimiser steps (symmetric-log axis, linear below 1 %), measured by the probes at fractions of training "
    "(train.probe_progress; a run without them at its epoch ends); dotted: the paper's early point, epoch 1 of 26 = "
    f"{PAPER_EARLY_PROGRESS:.1%}; dashed: the paper's {FIG2_NORM_IQ_CORRELATION} for reference")


def _panels(inputs: FigureInputs, path: Path, quantity: str, target: str) -> Path | None:
    from marginlab.analysis import figures as fg

    if target == "gt_quality" and not inputs.has_ground_truth:
        return None
    return fg.fig2_panels(inputs.collection.probe, list(inputs.representatives), path, quantity=quantity, target=target)


def _progress(inputs: FigureInputs, path: Path, target: str) -> Path | None:
    from marginlab.analysis import figures as fg

    if target == "gt_quality" and not inputs.has_ground_truth:
        return None
    return fg.correlation_vs_progress(inputs.progress_rows, inputs.collection.runs, list(inputs.labels), path,
                                      target=target)


@register_figure("fig2_norm_vs_iq.png", section="fig2", order=10,
                 caption="Feature norm vs IQ (1 − BRISQUE/100) over epochs (Fig. 2a)")
def norm_vs_iq(inputs: FigureInputs, path: Path) -> Path | None:
    return _panels(inputs, path, "norm", "iq")


@register_figure("fig2_pyi_vs_iq.png", section="fig2", order=20, caption="P_yi vs IQ over epochs (Fig. 2b)")
def pyi_vs_iq(inputs: FigureInputs, path: Path) -> Path | None:
    return _panels(inputs, path, "p_yi", "iq")


@register_figure("correlation_vs_progress.png", section="fig2", order=30, caption=PROGRESS_CAPTION, claim="1")
def correlation_vs_progress(inputs: FigureInputs, path: Path) -> Path | None:
    return _progress(inputs, path, "iq")


@register_figure("fig2_norm_vs_gt_quality.png", section="fig2", order=40,
                 caption="Feature norm vs the synthetic ground-truth quality")
def norm_vs_gt_quality(inputs: FigureInputs, path: Path) -> Path | None:
    return _panels(inputs, path, "norm", "gt_quality")


@register_figure("fig2_pyi_vs_gt_quality.png", section="fig2", order=50,
                 caption="P_yi vs the synthetic ground-truth quality")
def pyi_vs_gt_quality(inputs: FigureInputs, path: Path) -> Path | None:
    return _panels(inputs, path, "p_yi", "gt_quality")


@register_figure("correlation_vs_progress_gt_quality.png", section="fig2", order=60,
                 caption="Correlation with the ground-truth quality across training (x as above)")
def correlation_vs_progress_gt_quality(inputs: FigureInputs, path: Path) -> Path | None:
    return _progress(inputs, path, "gt_quality")


@register_figure("augmentation_by_norm.png", section="fig2", order=70,
                 caption="Share of augmented probe images per feature-norm bin (claim 4)")
def augmentation_by_norm(inputs: FigureInputs, path: Path) -> Path | None:
    from marginlab.analysis import figures as fg

    return fg.augmentation_bars(inputs.augmentation, list(inputs.representatives), path)
