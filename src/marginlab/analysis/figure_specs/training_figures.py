"""The report's training section: every run's per-epoch dvclive metrics."""

from __future__ import annotations

from pathlib import Path

from marginlab.analysis.figure_specs.figure_registry import FigureInputs, register_figure


@register_figure("training_curves.png", section="training", order=120,
                 caption="Training loss, accuracy and feature norm per epoch (analysis stage)")
def training_curves(inputs: FigureInputs, path: Path) -> Path | None:
    from marginlab.analysis import figures as fg

    return fg.training_curves(inputs.collection.live, inputs.collection.runs, path)
