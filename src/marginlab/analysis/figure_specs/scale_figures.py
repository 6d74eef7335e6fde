"""The report's scale section: final norm–quality correlation against images seen (:mod:`..scale_figure`)."""

from __future__ import annotations

from pathlib import Path

from marginlab.analysis.figure_specs.figure_registry import FigureInputs, register_figure
from marginlab.analysis.scale import SCALE_FIGURE

CAPTION = ("Final Spearman(norm, quality) of each run (last epoch, clean probe, 95 % bootstrap CI over identities "
           "where the probe records them, else over images) against images "
           "seen (log scale); colour = head, marker = number of training identities; lines = weighted fits over "
           "the fitted runs' range only (solid: slope CI excludes 0; dotted: no trend); dashed: the paper's "
           "final-epoch norm–IQ correlation")


@register_figure(SCALE_FIGURE, section="scale", order=100, caption=CAPTION)
def scale_vs_images_seen(inputs: FigureInputs, path: Path) -> Path | None:
    from marginlab.analysis.scale_figure import scale_figure

    return scale_figure(inputs.scale, list(inputs.scale_fits), path, skipped=dict(inputs.scale_skipped))
