"""The analysis stage's figures, each one registered function in a module of this package.

A module defines ``(FigureInputs, path) -> path | None`` functions decorated with :func:`register_figure`
(:mod:`.figure_registry`: file name, caption, report section, order); the package imports every module of
its folder on first import, so the analysis stage draws a new figure and the report shows it with its
caption without another edit. Torch- and matplotlib-free to import (the report reads the captions).
"""

from __future__ import annotations

import importlib
import pkgutil

from marginlab.analysis.figure_specs.figure_registry import (
    FIGURES,
    SECTIONS,
    FigureInputs,
    FigureSpec,
    draw_figures,
    figure_specs,
    register_figure,
)


def discover() -> None:
    """Import every module of this package (each figure registers itself)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")


discover()

__all__ = ["FIGURES", "SECTIONS", "FigureInputs", "FigureSpec", "discover", "draw_figures", "figure_specs",
           "register_figure"]
