"""The analysis figures behind one registry: file name, caption and report section beside the drawing.

A figure is a function ``(FigureInputs, path) -> path | None`` decorated with :func:`register_figure`; the
analysis stage calls every registered figure in ``order`` into ``analysis/figures/`` and the report shows
them by section in the same order with these captions, so neither keeps a list of file names. A function
returns ``None`` (writing nothing) when its figure does not apply, e.g. a ground-truth panel on real data.
Declaring a figure loads no plotting library: drawing code is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pandas as pd

from marginlab.core.name_registry import Registry

if TYPE_CHECKING:
    from marginlab.analysis.collect import Collection

__all__ = ["FIGURES", "SECTIONS", "FigureInputs", "FigureSpec", "draw_figures", "figure_specs", "register_figure"]

#: Report sections that show analysis figures (the template's), in page order.
SECTIONS = ("fig2", "scale", "zhat", "training")


@dataclass(frozen=True)
class FigureInputs:
    """What the figures draw, built once by the analysis stage from its own tables.

    ``labels``: the configurations shown (main labels, the reference first); ``representatives``: one run per
    label with probe tables, ``(run, label, head)``; ``progress_rows``: correlation rows against training
    progress (:func:`..progress.training_progress_rows`); ``scale*``: the scale study; ``zhat``: ``zhat.csv``.
    """

    collection: Collection
    labels: Sequence[str]
    representatives: Sequence[tuple[str, str, str]]
    has_ground_truth: bool
    progress_rows: pd.DataFrame
    augmentation: pd.DataFrame
    scale: pd.DataFrame
    scale_fits: Sequence[Mapping[str, Any]]
    scale_skipped: Mapping[str, str]
    zhat: pd.DataFrame


FigureFn = Callable[[FigureInputs, Path], Optional[Path]]


@dataclass(frozen=True)
class FigureSpec:
    name: str  # the PNG's file name in analysis/figures/
    caption: str
    section: str  # one of SECTIONS
    order: float
    draw: FigureFn
    claim: str | None = None  # also shown beside this claim's curve part in the claims section


FIGURES: Registry[FigureSpec] = Registry("analysis figure")


def register_figure(
    name: str, *, caption: str, section: str, order: float, claim: str | None = None
) -> Callable[[FigureFn], FigureFn]:
    """Register ``fn`` as the analysis figure ``name`` (a ``.png`` file name) shown in report ``section``."""
    if not name.endswith(".png") or "/" in name:
        raise ValueError(f"an analysis figure is a .png file name, got {name!r}")
    if section not in SECTIONS:
        raise ValueError(f"unknown report section {section!r} for figure {name!r}; allowed: {', '.join(SECTIONS)}")

    def add(fn: FigureFn) -> FigureFn:
        FIGURES.add(name, FigureSpec(name, caption, section, order, fn, claim))
        return fn

    return add


def figure_specs(section: str | None = None) -> list[FigureSpec]:
    """The registered figures (of ``section``), in ``order`` (ties: registration order)."""
    return sorted((s for s in FIGURES.values() if section is None or s.section == section), key=lambda s: s.order)


def draw_figures(inputs: FigureInputs, folder: Path) -> list[Path]:
    """Draw every registered figure into ``folder``; the paths written."""
    written = [spec.draw(inputs, folder / spec.name) for spec in figure_specs()]
    return [p for p in written if p is not None]
