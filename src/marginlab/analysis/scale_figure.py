"""The scale study's figure: final Spearman(norm, quality) against images seen (:mod:`.scale`).

One panel per target with data (IQ; ground-truth quality on synthetic data). x: images seen (global
steps × batch size, log scale); y: Spearman ρ of the last probe epoch, clean pass, with its bootstrap 95 %
interval as error bars (heads nudged apart by a few per cent in x); colour = head, marker = training-set
size (identities). Fitted lines (:func:`.scale.fit_trends`) are drawn over the range of the points they
were fitted to only: solid when the slope's interval excludes 0, dotted when it does not; thin lines are
the per-size fits. The IQ panel shows the paper's final-epoch correlation as a dashed reference. Any
preset works: one run gives one point and no line; no run with a probe gives a "no data" figure that
says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from marginlab.analysis.figures import _no_data, _save, _style
from marginlab.analysis.scale import REFERENCE, TARGETS

__all__ = ["scale_figure"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
TITLE = "Final Spearman(norm, quality) against images seen (clean probe, last epoch, 95% bootstrap CI)"


def _draw_points(ax: plt.Axes, table: pd.DataFrame, target: str, colours: Mapping[str, Any],
                 markers: Mapping[int, str]) -> None:
    """Each run's point and interval; heads are nudged apart by a few per cent in x so equal runs stay visible."""
    col = f"spearman_{target}"
    heads = list(colours)
    nudge = {h: 10 ** (0.015 * (i - (len(heads) - 1) / 2)) for i, h in enumerate(heads)}
    for (head, size), g in table.groupby(["head", "identities"]):
        g = g[np.isfinite(g[col].astype(float))]
        if g.empty:
            continue
        y = g[col].to_numpy(float)
        err = np.vstack([y - g[f"{col}_lo"].to_numpy(float), g[f"{col}_hi"].to_numpy(float) - y])
        ax.errorbar(g["images_seen"].to_numpy(float) * nudge[head], y, yerr=np.where(np.isfinite(err), err, 0.0),
                    fmt=markers[size], color=colours[head], ms=6, capsize=3, lw=1, ls="none", alpha=0.9)


def _draw_fits(ax: plt.Axes, fits: Sequence[Mapping[str, Any]], target: str, colours: Mapping[str, Any]) -> None:
    for fit in fits:
        if fit["target"] != target or fit["model"] != "log10(images_seen)" or fit["slope"] is None:
            continue
        xs = np.logspace(np.log10(fit["images_seen_min"]), np.log10(fit["images_seen_max"]), 50)
        whole = fit["scope"] == "all sizes"
        ax.plot(xs, fit["intercept"] + fit["slope"] * np.log10(xs), color=colours.get(fit["head"], "grey"),
                ls="-" if fit["established"] else ":", lw=1.8 if whole else 0.9, alpha=1.0 if whole else 0.6)


def _legend(fig: plt.Figure, colours: Mapping[str, Any], markers: Mapping[int, str]) -> None:
    handles = [Line2D([], [], color=c, lw=2, label=h) for h, c in colours.items()]
    handles += [Line2D([], [], color="grey", marker=m, ls="none", label=f"{s} identities") for s, m in markers.items()]
    handles += [Line2D([], [], color="black", ls="-", label="fit, slope CI excludes 0"),
                Line2D([], [], color="black", ls=":", label="fit, no trend established")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False, fontsize=8)


def scale_figure(table: pd.DataFrame, fits: Sequence[Mapping[str, Any]], path: Path,
                 skipped: Mapping[str, str] | None = None) -> Path:
    """Write the figure (module docstring) of ``scale.csv`` rows and their fits to ``path``; returns ``path``."""
    targets = [t for t in TARGETS if len(table) and np.isfinite(table[f"spearman_{t}"].astype(float)).any()]
    if not targets:
        why = f"no run has a train summary and clean-probe correlations ({len(skipped or {})} runs skipped)"
        return _no_data(path, TITLE, why)
    _style()
    heads = sorted(table["head"].unique())
    colours = dict(zip(heads, sns.color_palette("tab10", n_colors=max(len(heads), 3))))
    sizes = sorted(int(s) for s in table["identities"].unique())
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(sizes)}
    fig, axes = plt.subplots(1, len(targets), figsize=(5.8 * len(targets), 4.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        _draw_points(ax, table, target, colours, markers)
        _draw_fits(ax, fits, target, colours)
        if REFERENCE[target] is not None:
            ax.axhline(REFERENCE[target], color="black", lw=1, ls="--")
            ax.text(0.01, REFERENCE[target], f" paper {REFERENCE[target]} (final epoch)", va="bottom", fontsize=8,
                    transform=ax.get_yaxis_transform())
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("images seen (global steps × batch size)")
        ax.set_ylabel("Spearman ρ")
        ax.set_title(TARGETS[target], fontsize=10)
    _legend(fig, colours, markers)
    note = f" — {len(skipped)} run(s) skipped" if skipped else ""
    fig.suptitle(TITLE + note, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, path)
