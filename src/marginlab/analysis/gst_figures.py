"""Fig. 3, drawn from the ``gst`` stage's table (:mod:`.gst_study`): :func:`plot_gst_maps` — |GST| maps on
one shared colour scale; :func:`plot_gst_curves` — |GST| against cos θ_y, and AdaFace at ẑ = +1 for
several m.

matplotlib's object API only (no pyplot state, no GUI backend, no seaborn theme), so the gst stage draws
them without the analysis figures' styling.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["gst_colour_limit", "plot_gst_curves", "plot_gst_maps"]

GST_DPI = 110


def _gst_figure(width: float, height: float):
    from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend

    return Figure(figsize=(width, height), dpi=GST_DPI, layout="constrained")


def _gst_map(table: pd.DataFrame, panel: str) -> pd.DataFrame:
    rows = table[(table["kind"] == "map") & (table["panel"] == panel)]
    if rows.empty:
        have = sorted(table.loc[table["kind"] == "map", "panel"].unique())
        raise ValueError(f"GST table has no map panel {panel!r}; have {have}")
    return rows.pivot(index="cos_nontarget", columns="cos_target", values="gst")  # rows = y, columns = x


def gst_colour_limit(maps: Sequence[pd.DataFrame], percentile: float = 99.0) -> float:
    """Upper end of the shared colour scale: the ``percentile`` of |g| over all maps.

    |g| diverges at a few edges (ArcFace-type margins as cos θ_y → 1 with cos θ_j → 1, AdaFace ẑ = +1 as
    cos θ_y → -1); a max-scaled colour bar would make every interior region look flat.
    """
    values = np.concatenate([np.abs(mp.to_numpy()).reshape(-1) for mp in maps])
    values = values[np.isfinite(values)]
    return float(np.percentile(values, percentile)) if values.size and values.max() > 0 else 1.0


def plot_gst_maps(table: pd.DataFrame, panels: Sequence[str | None], path: str | Path, *, ncols: int | None = None,
                  titles: Mapping[str, str] | None = None, points: Mapping[str, tuple[float, float]] | None = None,
                  bold: Sequence[str] = (), title: str = "", note: str = "") -> Path:
    """|GST| maps of the table's map ``panels`` (ids; None leaves a cell empty) on one shared colour scale.

    x = cos θ_y, y = cos θ_j; the dashed diagonal is the boundary without margin; ``points`` maps a
    matplotlib marker to a (cos θ_y, cos θ_j) point drawn on every map. ``titles`` (default: the table's)
    per panel, ``bold`` panels get a bold title. ``ncols`` defaults to a near-square grid; ``note`` (if
    given) fills the first cell after the panels with a text legend. Writes a PNG at ``path``.
    """
    keys = list(panels)
    shown = [k for k in keys if k is not None]
    maps = {k: _gst_map(table, k) for k in shown}
    names = {k: (titles or {}).get(k) or table.loc[(table["kind"] == "map") & (table["panel"] == k), "title"].iloc[0]
             for k in shown}
    vmax = gst_colour_limit(list(maps.values())) if maps else 1.0
    cells = len(keys) + (1 if note else 0)
    ncols = max(1, min(ncols or math.ceil(math.sqrt(1.5 * cells)), cells))
    nrows = math.ceil(cells / ncols)
    fig = _gst_figure(3.2 * ncols + 0.8, 3.15 * nrows + (0.3 if title else 0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    image = None
    for ax, key in zip(axes, keys):
        if key is None:
            ax.set_axis_off()
            continue
        mp = maps[key]
        xs, js = mp.columns.to_numpy(), mp.index.to_numpy()
        image = ax.imshow(np.abs(mp.to_numpy()), origin="lower", extent=(xs[0], xs[-1], js[0], js[-1]),
                          cmap="viridis", vmin=0.0, vmax=vmax, aspect="equal", interpolation="nearest")
        ax.plot([-1, 1], [-1, 1], ls="--", lw=0.8, color="white", alpha=0.8)
        for marker, (x, j) in (points or {}).items():
            ax.plot(x, j, marker=marker, ms=7, mfc="none", mec="white", mew=1.6)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_title(names[key], fontsize=8, weight="bold" if key in bold else "normal")
        ax.set_xlabel("target cos θ_y", fontsize=8)
        ax.set_ylabel("non-target cos θ_j", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(keys):]:
        ax.set_axis_off()
    if note:
        axes[len(keys)].text(0.02, 0.98, note, va="top", ha="left", fontsize=7.5, transform=axes[len(keys)].transAxes)
    if image is not None:
        used = [ax for ax, key in zip(axes, keys) if key is not None]
        bar = fig.colorbar(image, ax=used, shrink=0.85, pad=0.01, extend="max")
        bar.set_label(f"|GST| = |∂CE/∂cos θ_y| (clipped at the 99th percentile, {vmax:.0f})", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path)
    return path


def plot_gst_curves(table: pd.DataFrame, path: str | Path) -> Path:
    """(a) |GST| against cos θ_y for every ``curve`` panel of the table (the paper's Fig. 3 panels thicker);
    (b) signed GST of AdaFace at ẑ = +1 for several m (``curve_m``), with cos m marked."""
    fig = _gst_figure(12.5, 4.6)
    ax_a, ax_b = fig.subplots(1, 2)
    curves = table[table["kind"] == "curve"]
    j = float(curves["cos_nontarget"].iloc[0]) if len(curves) else float("nan")
    heads = list(dict.fromkeys(curves["head"]))
    styles = ["-", "--", "-.", ":"]
    for key, rows in curves.groupby("panel", sort=False):
        rows = rows.sort_values("cos_target")
        head, paper = rows["head"].iloc[0], bool(rows["fig3"].iloc[0])
        ax_a.plot(rows["cos_target"], rows["abs_gst"], ls=styles[heads.index(head) % len(styles)],
                  lw=2.0 if paper else 1.1, alpha=1.0 if paper else 0.8, label=rows["title"].iloc[0])
    s_main = max(json.loads(h).get("s", 64.0) for h in curves["hyperparameters"].unique()) if len(curves) else 64.0
    ax_a.set_ylim(0, 2.0 * s_main)
    ax_a.set_xlabel("target cos θ_y")
    ax_a.set_ylabel("|GST| (axis cut at 2s)")
    ax_a.set_title(f"(a) |GST| against the target cosine, cos θ_j = {j:g} (thick: the paper's Fig. 3 panels)", fontsize=9)
    ax_a.legend(fontsize=5.5, loc="upper left")
    ax_a.grid(alpha=0.3)
    clipped = table[table["kind"] == "curve_m"]
    colours = ["tab:blue", "tab:orange", "tab:red", "tab:green", "tab:purple"]
    s_values = []
    for colour, (_, rows) in zip(colours, clipped.groupby("panel", sort=False)):
        hp = json.loads(rows["hyperparameters"].iloc[0])
        s_values.append(hp["s"])
        rows = rows.sort_values("cos_target")
        ax_b.plot(rows["cos_target"], rows["gst"], color=colour, lw=2.0, label=f"m={hp['m']:g}")
        ax_b.axvline(math.cos(hp["m"]), color=colour, lw=0.8, ls=":")
    s = max(s_values) if s_values else 64.0
    ax_b.axhline(0.0, color="black", lw=0.6)
    ax_b.set_xlim(0.0, 1.0)
    ax_b.set_ylim(-1.2 * s, 0.2 * s)
    ax_b.set_xlabel("target cos θ_y  (dotted: cos θ_y = cos m; beyond it the clipped angle gives g = 0)")
    ax_b.set_ylabel("GST (signed)")
    ax_b.set_title(f"(b) AdaFace at ẑ = +1: GST for several m, cos θ_j = {j:g}", fontsize=10)
    ax_b.legend(fontsize=7, loc="lower left")
    ax_b.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path)
    return path
