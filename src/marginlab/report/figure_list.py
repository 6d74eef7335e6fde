"""Which figure files the report shows where, with which caption.

The analysis stage's figures come from their registry (:mod:`marginlab.analysis.figure_specs`: name,
caption, report section, order), so a new figure needs no edit here; PNGs in ``analysis/figures`` that no
registered figure names still show, in the Fig. 2 section with their file name as caption. The ``gst``
stage's Fig. 3 files are listed here (that stage imports torch; the report must not).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marginlab.analysis.figure_specs import figure_specs
from marginlab.report import plots as rfig

__all__ = ["GST_FIGURES", "claim_figures", "figure_entries", "section_figures", "section_note"]

#: The gst stage's figures (:data:`marginlab.analysis.gst_study.FIGURE_FILES`) in display order, with captions.
GST_FIGURES = (
    ("fig3_gst_maps.png", ("Fig. 3: |GST| maps of every registered head in each of its GST states (bold titles: the "
                           "paper's Fig. 3 panels). x: target cos θ_y, y: non-target cos θ_j (the cosine plane of issue "
                           "#24, not the paper's angle drawing); ○ easy and △ hard sample; colour scale shared, clipped "
                           "at the 99th percentile.")),
    ("fig3_gst_curves.png", ("(a) |GST| against cos θ_y at the fixed non-target cosine of params gst.cos_nontarget; "
                             "(b) AdaFace at ẑ = +1 for the configured m and larger margins: the head code clips the "
                             "shifted angle at θ − m ≥ eps, so GST = 0 beyond cos m (dotted).")),
    ("fig3_gst_state_levels.png", ("Every head with several GST states, at its levels and the midpoints between them: "
                                   "e.g. AdaFace from ẑ = −1 (ArcFace) through 0 (CosFace) to +1, MagFace from l_a to u_a.")),
)


def _entry(name: str, caption: str, path: Path) -> dict[str, Any]:
    return {"name": name, "caption": caption, "uri": rfig.png_data_uri(path)}


def figure_entries(paths: Mapping[str, Path], known: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """``known`` (name, caption) present in ``paths``, in that order, then the other PNGs captioned by name."""
    names = {name for name, _ in known}
    return ([_entry(name, caption, paths[name]) for name, caption in known if name in paths]
            + [_entry(name, name, path) for name, path in paths.items() if name not in names])


def section_figures(paths: Mapping[str, Path], section: str) -> list[dict[str, Any]]:
    """The registered analysis figures of report ``section`` present in ``paths`` (``analysis/figures``), in order;
    for ``fig2`` also the PNGs that no registered figure names."""
    known = tuple((s.name, s.caption) for s in figure_specs(section))
    if section == "fig2":
        others = {s.name for s in figure_specs() if s.section != section}
        return figure_entries({k: v for k, v in paths.items() if k not in others}, known)
    return [_entry(name, caption, paths[name]) for name, caption in known if name in paths]


def section_note(section: str, folder: Path, producer: str) -> str:
    """"no <the section's figure files> in <folder> (written by <producer>)"."""
    names = " / ".join(s.name for s in figure_specs(section)) or f"{section} figure"
    return f"no {names} in {folder} (written by {producer})"


def claim_figures(paths: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """Per claim id, the analysis figure shown beside that claim's curve part (a figure registered with ``claim``)."""
    return {str(s.claim): _entry(s.name, s.caption, paths[s.name]) for s in figure_specs()
            if s.claim is not None and s.name in paths}
