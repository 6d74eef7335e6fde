"""The report's "Did the margin adapt?" section: AdaFace's ẑ against training progress (:mod:`..zhat`)."""

from __future__ import annotations

from pathlib import Path

from marginlab.analysis.figure_specs.figure_registry import FigureInputs, register_figure
from marginlab.analysis.zhat import ZHAT_FIGURE

CAPTION = ("ẑ = clip(h·(‖z‖ − μ)/σ, −1, 1) of every clean probe image with the head's running statistics at "
           "probe time, against training progress (share of the run's optimiser steps, symmetric-log axis): median "
           "(line) and 5–95 % band per run; colour = configuration, line style = seed. ẑ = 0 is CosFace's margin, "
           "ẑ = −1 ArcFace's, ẑ = +1 a negative angular margin with a larger additive one")


@register_figure(ZHAT_FIGURE, section="zhat", order=110, caption=CAPTION)
def zhat_by_progress(inputs: FigureInputs, path: Path) -> Path | None:
    from marginlab.analysis import figures as fg

    return fg.zhat_by_progress(inputs.zhat, inputs.collection.runs, list(inputs.labels), path)
