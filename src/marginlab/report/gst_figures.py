"""Fig. 3 of the AdaFace paper: |GST| maps and GST curves of the margin heads on the two-class toy.

The numbers come from :mod:`marginlab.analysis.gst` (autograd through the real head code); this module
only chooses the panels, collects them into one tidy table and draws them.

Layout (which the report states next to the figure): the paper draws its Fig. 3 in the feature-space
angle layout; here every map is drawn in the **cosine plane** the first author describes in issue #24:
x axis = target cosine cos θ_y, y axis = non-target cosine cos θ_j, colour = |g|, with

    g = ∂CE/∂cos θ_y = (P_y - 1) · ∂f(cos θ_y)/∂cos θ_y            (the gradient scaling term, GST)

for two classes. The dashed diagonal cos θ_y = cos θ_j is the decision boundary without margin. Two
marked points compare a fixed *easy* sample (○, cos θ_y = 0.5, cos θ_j = 0.2) with a fixed *hard* one
(△, cos θ_y = -0.2, cos θ_j = 0.2): the paper's statement is that AdaFace gives the hard sample
relatively more weight at high norm (ẑ = +1) and less at low norm (ẑ = -1).

Panels of the main figure (:data:`FIG3_PANELS`, hyperparameters from ``params.heads``):
CosFace; ArcFace; MagFace at the middle norm a = (l_a + u_a)/2 (margin (l_m + u_m)/2); CurricularFace
early (t = 0, its initial value) and late (t = 0.5, a typical running mean of cos θ_y late in training);
AdaFace at high norm (ẑ = +1: cos(θ - m) - 2m) and low norm (ẑ = -1: ArcFace with margin m).

Curves (at cos θ_j = 0.5, as in issue #24): |g| against cos θ_y for the seven panels, and the signed g of
AdaFace at ẑ = +1 for the configured m against larger margins (0.5, 0.7). The head code keeps the shifted
angle θ - m·ẑ inside [eps, π - eps] (the official code's clip), so for θ_y < m (cos θ_y > cos m) the
target logit is constant and g = 0: a flat region whose width grows with m. Without the clip — the
closed form the issue's interactive plot uses, :func:`adaface_unclipped_gst` — g = (P - 1) · s ·
sin(θ - m)/sin θ changes sign at θ = m and diverges as cos θ_y → 1: the "steep change near 1" of the
discussion, which starts earlier (at cos m) the larger m is. Both are drawn, the unclipped one dashed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marginlab.analysis.gst import gst_grid, target_gst, variant_label

__all__ = [
    "EASY_POINT",
    "FIG3_PANELS",
    "FIGURE_FILES",
    "GST_TABLE_COLUMNS",
    "HARD_POINT",
    "Panel",
    "adaface_unclipped_gst",
    "compute_gst_table",
    "fig3_panels",
    "gst_checks",
    "plot_gst_curves",
    "plot_gst_maps",
    "plot_norm_levels",
    "supplement_panels",
    "write_gst_outputs",
]

#: Columns of ``gst.parquet``. ``kind``: ``map`` (grid over both cosines), ``curve`` (fixed non-target
#: cosine), ``curve_m`` (AdaFace ẑ = +1 at several m, head code), ``curve_m_unclipped`` (the same without
#: the angle clip, closed form). ``panel``: a stable id. ``fig3``: one of the paper's seven panels.
#: ``hyperparameters``: JSON of the head's hyperparameters. ``gst`` is signed; ``abs_gst`` = |gst|.
GST_TABLE_COLUMNS = (
    "kind", "panel", "fig3", "title", "head", "variant", "hyperparameters",
    "cos_target", "cos_nontarget", "gst", "abs_gst",
)

FIG3_PANELS = (
    "cosface", "arcface", "magface_mid", "curricularface_early", "curricularface_late",
    "adaface_high", "adaface_low",
)
EASY_POINT = (0.5, 0.2)   # (cos θ_y, cos θ_j): close to its centre, well inside the margin boundary
HARD_POINT = (-0.2, 0.2)  # far from its centre, closer to the other class
MAP_NOTE = (
    "Two-class toy, cosine plane.\n"
    "x: target cos θ_y, y: non-target cos θ_j.\n"
    "Colour: |g|, g = (P_y − 1)·∂f/∂cos θ_y.\n\n"
    f"○ easy sample {EASY_POINT}\n"
    f"△ hard sample {HARD_POINT}\n"
    "- - - cos θ_y = cos θ_j\n     (boundary without margin)\n\n"
    "Paper's claim: AdaFace weights the\n"
    "hard sample more than the easy one\n"
    "at high norm (ẑ=+1), less at low\n"
    "norm (ẑ=−1)."
)
FIGURE_FILES = {
    "maps": "fig3_gst_maps.png",
    "curves": "fig3_gst_curves.png",
    "norm_levels": "fig3_gst_norm_levels.png",
}


@dataclass(frozen=True)
class Panel:
    """One GST setting: a head, its hyperparameters and the norm/state level (``variant``)."""

    key: str
    head: str
    title: str
    variant: dict[str, float] = field(default_factory=dict)
    hyperparameters: dict[str, float] = field(default_factory=dict)


def _heads_dict(heads: Any) -> dict[str, dict[str, float]]:
    """``params.heads`` (a pydantic model) or a plain mapping → ``{head: {hyperparameter: value}}``."""
    if hasattr(heads, "model_dump"):
        heads = heads.model_dump()
    if not isinstance(heads, Mapping):
        raise TypeError(f"heads must be params.heads or a mapping of head -> hyperparameters, got {type(heads).__name__}")
    return {str(k): {kk: float(vv) for kk, vv in dict(v).items()} for k, v in heads.items()}


def _need(heads: dict[str, dict[str, float]], name: str) -> dict[str, float]:
    if name not in heads:
        raise KeyError(f"params 'heads' has no entry {name!r} (needed for the Fig. 3 GST panels)")
    return heads[name]


def _adaface_gst_params(hp: Mapping[str, float]) -> dict[str, float]:
    """AdaFace's GST depends on s, m, h only (t_alpha is the EMA rate of the running statistics)."""
    return {k: hp[k] for k in ("s", "m", "h") if k in hp}


def fig3_panels(heads: Any, *, curricular_late_t: float = 0.5) -> list[Panel]:
    """The seven panels of the paper's Fig. 3 with the hyperparameters of ``heads`` (``params.heads``)."""
    hp = _heads_dict(heads)
    mag, ada = _need(hp, "magface"), _adaface_gst_params(_need(hp, "adaface"))
    mid_norm = 0.5 * (mag["l_a"] + mag["u_a"])
    mid_margin = 0.5 * (mag["l_m"] + mag["u_m"])
    cur, cosf, arc = _need(hp, "curricularface"), _need(hp, "cosface"), _need(hp, "arcface")
    return [
        Panel("cosface", "cosface", f"CosFace (m={cosf['m']:g})", {}, cosf),
        Panel("arcface", "arcface", f"ArcFace (m={arc['m']:g})", {}, arc),
        Panel("magface_mid", "magface", f"MagFace (‖z‖={mid_norm:g}, m={mid_margin:.3g})", {"norm": mid_norm}, mag),
        Panel("curricularface_early", "curricularface", f"CurricularFace early (t=0, m={cur['m']:g})",
              {"t": 0.0}, cur),
        Panel("curricularface_late", "curricularface",
              f"CurricularFace late (t={curricular_late_t:g}, m={cur['m']:g})", {"t": float(curricular_late_t)}, cur),
        Panel("adaface_high", "adaface", f"AdaFace high norm (ẑ=+1, m={ada['m']:g})", {"z_hat": 1.0}, ada),
        Panel("adaface_low", "adaface", f"AdaFace low norm (ẑ=−1, m={ada['m']:g})", {"z_hat": -1.0}, ada),
    ]


def supplement_panels(heads: Any) -> list[Panel]:
    """Norm levels between the ends: AdaFace ẑ ∈ {-0.5, 0, +0.5} and MagFace at ‖z‖ = l_a and u_a."""
    hp = _heads_dict(heads)
    mag, ada = _need(hp, "magface"), _adaface_gst_params(_need(hp, "adaface"))
    def z(q: float) -> str:
        return "0" if q == 0 else f"{q:+g}"

    out = [
        Panel(f"adaface_z{z(q)}", "adaface", f"AdaFace ẑ={z(q)}" + (" (= CosFace)" if q == 0 else ""), {"z_hat": q}, ada)
        for q in (-0.5, 0.0, 0.5)
    ]
    out += [
        Panel("magface_low", "magface", f"MagFace ‖z‖=l_a={mag['l_a']:g} (m={mag['l_m']:g})", {"norm": mag["l_a"]}, mag),
        Panel("magface_high", "magface", f"MagFace ‖z‖=u_a={mag['u_a']:g} (m={mag['u_m']:g})", {"norm": mag["u_a"]}, mag),
    ]
    return out


def adaface_unclipped_gst(cos_target, cos_nontarget, *, m: float, s: float, z_hat: float = 1.0) -> np.ndarray:
    """AdaFace's GST *without* the angle clip (closed form, as in the issue #24 interactive plot).

    f(x) = s · (cos(θ - m·ẑ) - m·ẑ - m) with θ = arccos x; f'(x) = s · sin(θ - m·ẑ) / sin θ;
    P = 1 / (1 + exp(s·j - f)); g = (P - 1) · f'. Defined for -1 < x < 1.
    """
    x, j = np.broadcast_arrays(np.asarray(cos_target, np.float64), np.asarray(cos_nontarget, np.float64))
    if np.any(np.abs(x) >= 1) or np.any(np.abs(j) > 1):
        raise ValueError("cos_target must lie in (-1, 1) and cos_nontarget in [-1, 1]")
    theta = np.arccos(x)
    shift = m * z_hat
    f = s * (np.cos(theta - shift) - shift - m)
    df = s * np.sin(theta - shift) / np.sin(theta)
    p = 0.5 * (1.0 + np.tanh(0.5 * (f - s * j)))  # logistic, overflow-free
    return (p - 1.0) * df


def _panel_frame(panel: Panel, kind: str, xs: np.ndarray, js: np.ndarray, fig3: bool) -> pd.DataFrame:
    frame = gst_grid(panel.head, xs, js, [panel.variant], hyperparameters=panel.hyperparameters)
    frame.insert(0, "kind", kind)
    frame.insert(1, "panel", panel.key)
    frame.insert(2, "fig3", fig3)
    frame.insert(3, "title", panel.title)
    frame.insert(6, "hyperparameters", json.dumps(panel.hyperparameters, sort_keys=True))
    frame["abs_gst"] = frame["gst"].abs()
    return frame


def curve_margins(adaface_m: float, larger: Sequence[float] = (0.5, 0.7)) -> list[float]:
    """The configured AdaFace m and the larger margins it is compared against (sorted, unique)."""
    return sorted({round(float(adaface_m), 10), *(round(float(v), 10) for v in larger)})


def compute_gst_table(
    heads: Any,
    *,
    n: int = 201,
    limit: float = 0.995,
    curve_n: int = 801,
    curve_limit: float = 0.999,
    cos_nontarget: float = 0.5,
    curricular_late_t: float = 0.5,
    larger_m: Sequence[float] = (0.5, 0.7),
) -> pd.DataFrame:
    """All of Fig. 3 as one tidy table (columns :data:`GST_TABLE_COLUMNS`).

    Maps: an ``n`` × ``n`` grid over [-limit, limit]² for the seven Fig. 3 panels and the supplement
    panels. Curves: ``curve_n`` target cosines over [-curve_limit, curve_limit] at ``cos_nontarget``.
    The map limit stays inside AdaFace's cosine clamp 1 - 1e-3, where its gradient is cut to 0 (an edge
    artefact, not a property of the margin); the curves go up to 0.999 to show the region near 1.
    """
    if n < 3 or curve_n < 3:
        raise ValueError(f"grid sizes must be >= 3, got n={n}, curve_n={curve_n}")
    if not (0 < limit < 1 and 0 < curve_limit < 1):
        raise ValueError(f"limits must lie in (0, 1), got limit={limit}, curve_limit={curve_limit}")
    if not -1 <= cos_nontarget <= 1:
        raise ValueError(f"cos_nontarget must lie in [-1, 1], got {cos_nontarget}")
    grid = np.linspace(-limit, limit, n)
    xs = np.linspace(-curve_limit, curve_limit, curve_n)
    main, extra = fig3_panels(heads, curricular_late_t=curricular_late_t), supplement_panels(heads)
    frames = [_panel_frame(p, "map", grid, grid, True) for p in main]
    frames += [_panel_frame(p, "map", grid, grid, False) for p in extra]
    frames += [_panel_frame(p, "curve", xs, np.array([cos_nontarget]), True) for p in main]
    ada = _adaface_gst_params(_need(_heads_dict(heads), "adaface"))
    for m in curve_margins(ada["m"], larger_m):
        hp = {**ada, "m": m}
        panel = Panel(f"adaface_high_m{m:g}", "adaface", f"AdaFace ẑ=+1, m={m:g}", {"z_hat": 1.0}, hp)
        frames.append(_panel_frame(panel, "curve_m", xs, np.array([cos_nontarget]), False))
        g = adaface_unclipped_gst(xs, cos_nontarget, m=m, s=hp["s"], z_hat=1.0)
        frames.append(pd.DataFrame({
            "kind": "curve_m_unclipped", "panel": panel.key, "fig3": False, "title": panel.title + " (no clip)",
            "head": "adaface", "variant": variant_label(panel.variant), "hyperparameters": json.dumps(hp, sort_keys=True),
            "cos_target": xs, "cos_nontarget": cos_nontarget, "gst": g, "abs_gst": np.abs(g),
        }))
    table = pd.concat(frames, ignore_index=True)[list(GST_TABLE_COLUMNS)]
    return table.astype({"fig3": bool, "cos_target": np.float64, "cos_nontarget": np.float64,
                         "gst": np.float64, "abs_gst": np.float64})


def _map(table: pd.DataFrame, panel: str) -> pd.DataFrame:
    rows = table[(table["kind"] == "map") & (table["panel"] == panel)]
    if rows.empty:
        raise ValueError(f"GST table has no map panel {panel!r}; have {sorted(table.loc[table['kind'] == 'map', 'panel'].unique())}")
    return rows.pivot(index="cos_nontarget", columns="cos_target", values="gst")  # rows = y, columns = x


def gst_checks(table: pd.DataFrame, heads: Any, *, curricular_late_t: float = 0.5) -> dict[str, Any]:
    """Numbers the report quotes next to Fig. 3 (all from the table or from marginlab.analysis.gst).

    - ``special_cases``: max |Δg| between AdaFace ẑ = -1 and ArcFace with AdaFace's s, m (where neither
      clips the shifted angle: θ + m < π - 1e-3), and between ẑ = 0 and CosFace(s, m), both over the map
      grid points inside AdaFace's cosine clamp |cos θ_y| < 1 - 1e-3;
    - ``emphasis``: |g| at the easy (○) and hard (△) point per Fig. 3 panel and the ratio hard/easy;
    - ``flat_region``: per m, the largest grid cos θ_y with g ≠ 0 on the AdaFace ẑ = +1 curve (the head
      code gives g = 0 beyond cos m) and the unclipped curve's value at the last grid point.
    """
    ada = _adaface_gst_params(_need(_heads_dict(heads), "adaface"))
    s, m = ada["s"], ada["m"]
    checks: dict[str, Any] = {}
    low, zero = _map(table, "adaface_low"), _map(table, "adaface_z0")
    xs = low.columns.to_numpy(np.float64)
    js = low.index.to_numpy(np.float64)
    gx, gj = np.meshgrid(xs, js)  # same orientation as the pivot: rows = cos θ_j, columns = cos θ_y
    arc = target_gst("arcface", gx, gj, hyperparameters={"s": s, "m": m})
    cos = target_gst("cosface", gx, gj, hyperparameters={"s": s, "m": m})
    clamp = np.abs(gx) < 1.0 - 1e-3 - 1e-12  # AdaFace clamps cos θ_y to ±(1 - 1e-3): no gradient beyond
    inside = clamp & (np.arccos(gx) + m < math.pi - 1e-3)
    if not inside.any():
        raise ValueError("the GST map grid has no point inside AdaFace's clamp; use a larger grid")
    checks["special_cases"] = {
        "adaface_zhat_minus1_vs_arcface": {
            "max_abs_diff": float(np.max(np.abs(low.to_numpy() - arc)[inside])),
            "points_compared": int(inside.sum()), "points": int(inside.size), "s": s, "m": m,
        },
        "adaface_zhat0_vs_cosface": {
            "max_abs_diff": float(np.max(np.abs(zero.to_numpy() - cos)[clamp])),
            "points_compared": int(clamp.sum()), "points": int(cos.size), "s": s, "m": m,
        },
    }
    emphasis = {}
    for panel in fig3_panels(heads, curricular_late_t=curricular_late_t):
        easy, hard = (abs(float(target_gst(panel.head, x, j, panel.variant, hyperparameters=panel.hyperparameters)))
                      for x, j in (EASY_POINT, HARD_POINT))
        emphasis[panel.key] = {"title": panel.title, "easy_abs_gst": easy, "hard_abs_gst": hard,
                               "hard_over_easy": hard / easy if easy > 0 else None}
    checks["emphasis"] = {"easy_point": list(EASY_POINT), "hard_point": list(HARD_POINT), "panels": emphasis}
    flat = {}
    for key, rows in table[table["kind"] == "curve_m"].groupby("panel", sort=False):
        hp = json.loads(rows["hyperparameters"].iloc[0])
        rows = rows.sort_values("cos_target")
        nonzero = rows.loc[rows["gst"] != 0, "cos_target"]
        unclipped = table[(table["kind"] == "curve_m_unclipped") & (table["panel"] == key)].sort_values("cos_target")
        flat[f"m={hp['m']:g}"] = {
            "m": hp["m"],
            "cos_m": math.cos(hp["m"]),
            "last_nonzero_cos_target": float(nonzero.max()) if len(nonzero) else None,
            "zero_share_of_curve": float((rows["gst"] == 0).mean()),
            "unclipped_sign_change_cos_target": math.cos(hp["m"]),
            "unclipped_gst_at_max_cos": float(unclipped["gst"].iloc[-1]),
            "max_cos_target": float(unclipped["cos_target"].iloc[-1]),
        }
    checks["flat_region"] = flat
    return checks


# --------------------------------------------------------------------------- drawing
def _figure(width: float, height: float):
    from matplotlib.figure import (
        Figure,  # the object API: no pyplot state, no GUI backend
    )

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def colour_limit(maps: Sequence[pd.DataFrame], percentile: float = 99.0) -> float:
    """Upper end of the shared colour scale: the ``percentile`` of |g| over all maps.

    |g| diverges at a few edges (ArcFace-type margins as cos θ_y → 1 with cos θ_j → 1, AdaFace ẑ = +1 as
    cos θ_y → -1); a max-scaled colour bar would make every interior region look flat.
    """
    values = np.concatenate([np.abs(mp.to_numpy()).reshape(-1) for mp in maps])
    values = values[np.isfinite(values)]
    return float(np.percentile(values, percentile)) if values.size and values.max() > 0 else 1.0


def plot_gst_maps(table: pd.DataFrame, panels: Sequence[str], path: str | Path, *, ncols: int = 4,
                  title: str = "", note: str = "") -> Path:
    """|GST| maps of ``panels`` on one shared colour scale (x = cos θ_y, y = cos θ_j); PNG at ``path``.

    ``note`` (if given) fills the first unused grid cell with a text legend.
    """
    maps = [_map(table, p) for p in panels]
    titles = [table.loc[(table["kind"] == "map") & (table["panel"] == p), "title"].iloc[0] for p in panels]
    vmax = colour_limit(maps)
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(3.2 * ncols + 0.8, 3.05 * nrows + (0.3 if title else 0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    image = None
    for ax, mp, t in zip(axes, maps, titles):
        xs, js = mp.columns.to_numpy(), mp.index.to_numpy()
        image = ax.imshow(np.abs(mp.to_numpy()), origin="lower", extent=(xs[0], xs[-1], js[0], js[-1]),
                          cmap="viridis", vmin=0.0, vmax=vmax, aspect="equal", interpolation="nearest")
        ax.plot([-1, 1], [-1, 1], ls="--", lw=0.8, color="white", alpha=0.8)
        ax.plot(*EASY_POINT, marker="o", ms=7, mfc="none", mec="white", mew=1.6)
        ax.plot(*HARD_POINT, marker="^", ms=7, mfc="none", mec="white", mew=1.6)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("target cos θ_y", fontsize=8)
        ax.set_ylabel("non-target cos θ_j", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if note and len(axes) > len(panels):
        axes[len(panels)].text(0.02, 0.95, note, va="top", ha="left", fontsize=8, wrap=True,
                               transform=axes[len(panels)].transAxes)
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes[: len(panels)]), shrink=0.85, pad=0.01, extend="max")
        bar.set_label(f"|GST| = |∂CE/∂cos θ_y| (clipped at the 99th percentile, {vmax:.0f})", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path)
    return path


def plot_gst_curves(table: pd.DataFrame, path: str | Path) -> Path:
    """(a) |GST| vs cos θ_y for the Fig. 3 panels; (b) signed GST of AdaFace ẑ=+1 for several m, with and
    without the angle clip."""
    fig = _figure(12.5, 4.4)
    ax_a, ax_b = fig.subplots(1, 2)
    curves = table[table["kind"] == "curve"]
    j = float(curves["cos_nontarget"].iloc[0]) if len(curves) else float("nan")
    styles = {"adaface": "-", "curricularface": "-.", "magface": ":", "arcface": "--", "cosface": "--"}
    for key in FIG3_PANELS:
        rows = curves[curves["panel"] == key].sort_values("cos_target")
        if rows.empty:
            continue
        lw = 2.2 if rows["head"].iloc[0] == "adaface" else 1.4
        ax_a.plot(rows["cos_target"], rows["abs_gst"], ls=styles.get(rows["head"].iloc[0], "-"), lw=lw,
                  label=rows["title"].iloc[0])
    s_main = max(json.loads(h).get("s", 64.0) for h in curves["hyperparameters"].unique()) if len(curves) else 64.0
    ax_a.set_ylim(0, 2.0 * s_main)
    ax_a.set_xlabel("target cos θ_y")
    ax_a.set_ylabel("|GST| (axis cut at 2s)")
    ax_a.set_title(f"(a) |GST| against the target cosine, cos θ_j = {j:g}", fontsize=10)
    ax_a.legend(fontsize=7, loc="upper left")
    ax_a.grid(alpha=0.3)
    clipped = table[table["kind"] == "curve_m"]
    unclipped = table[table["kind"] == "curve_m_unclipped"]
    colours = ["tab:blue", "tab:orange", "tab:red", "tab:green", "tab:purple"]
    s_values = []
    for colour, (key, rows) in zip(colours, clipped.groupby("panel", sort=False)):
        hp = json.loads(rows["hyperparameters"].iloc[0])
        s_values.append(hp["s"])
        rows = rows.sort_values("cos_target")
        ax_b.plot(rows["cos_target"], rows["gst"], color=colour, lw=2.0, label=f"m={hp['m']:g}, head code (clip)")
        ref = unclipped[unclipped["panel"] == key].sort_values("cos_target")
        ax_b.plot(ref["cos_target"], ref["gst"], color=colour, lw=1.2, ls="--", label=f"m={hp['m']:g}, no clip")
        ax_b.axvline(math.cos(hp["m"]), color=colour, lw=0.8, ls=":")
    s = max(s_values) if s_values else 64.0
    ax_b.axhline(0.0, color="black", lw=0.6)
    ax_b.set_xlim(0.0, 1.0)
    ax_b.set_ylim(-1.2 * s, 3.0 * s)
    ax_b.set_xlabel("target cos θ_y  (dotted: cos θ_y = cos m)")
    ax_b.set_ylabel("GST (signed)")
    ax_b.set_title(f"(b) AdaFace at ẑ = +1: GST for several m, cos θ_j = {j:g}", fontsize=10)
    ax_b.legend(fontsize=7, loc="upper left", ncol=2)
    ax_b.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path)
    return path


def plot_norm_levels(table: pd.DataFrame, heads: Any, path: str | Path) -> Path:
    """Supplement: AdaFace from ẑ = -1 to +1 and MagFace at l_a, middle, u_a on one colour scale."""
    order = ["adaface_low", "adaface_z-0.5", "adaface_z0", "adaface_z+0.5", "adaface_high",
             "magface_low", "magface_mid", "magface_high"]
    return plot_gst_maps(table, order, path, ncols=5,
                         title="|GST| across norm levels: AdaFace ẑ from −1 to +1 (top), MagFace ‖z‖ from l_a to u_a (bottom)")


def write_gst_outputs(
    heads: Any,
    out_dir: str | Path,
    *,
    n: int = 201,
    curve_n: int = 801,
    limit: float = 0.995,
    curve_limit: float = 0.999,
    cos_nontarget: float = 0.5,
    curricular_late_t: float = 0.5,
    larger_m: Sequence[float] = (0.5, 0.7),
    extra_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute the GST table, draw the figures and write ``out_dir`` atomically as a whole:

    ``gst.parquet`` (:data:`GST_TABLE_COLUMNS`), ``figures/{fig3_gst_maps,fig3_gst_curves,
    fig3_gst_norm_levels}.png`` and ``summary.json`` (settings, :func:`gst_checks`, wall time).
    """
    from marginlab.io import atomic_dir, write_json

    t0 = time.perf_counter()
    table = compute_gst_table(heads, n=n, limit=limit, curve_n=curve_n, curve_limit=curve_limit,
                              cos_nontarget=cos_nontarget,
                              curricular_late_t=curricular_late_t, larger_m=larger_m)
    checks = gst_checks(table, heads, curricular_late_t=curricular_late_t)
    with atomic_dir(out_dir) as tmp:
        figures = tmp / "figures"
        figures.mkdir()
        table.to_parquet(tmp / "gst.parquet", index=False)
        plot_gst_maps(table, FIG3_PANELS, figures / FIGURE_FILES["maps"], note=MAP_NOTE,
                      title="Fig. 3: |GST| of the target class on the two-class toy")
        plot_gst_curves(table, figures / FIGURE_FILES["curves"])
        plot_norm_levels(table, heads, figures / FIGURE_FILES["norm_levels"])
        summary = {
            "layout": "cosine plane: x = target cos θ_y, y = non-target cos θ_j, colour = |∂CE/∂cos θ_y|",
            "grid": {"n": n, "limit": limit, "curve_n": curve_n, "curve_limit": curve_limit,
                     "cos_nontarget": cos_nontarget},
            "heads": _heads_dict(heads),
            "panels": [{"key": p.key, "head": p.head, "title": p.title, "variant": p.variant}
                       for p in fig3_panels(heads, curricular_late_t=curricular_late_t)],
            "curricular_late_t": curricular_late_t,
            "curve_margins": curve_margins(_adaface_gst_params(_heads_dict(heads)["adaface"])["m"], larger_m),
            "figures": {k: f"figures/{v}" for k, v in FIGURE_FILES.items()},
            "rows": len(table),
            **checks,
            **dict(extra_summary or {}),
        }
        summary["wall_time_s"] = round(time.perf_counter() - t0, 3)
        write_json(tmp / "summary.json", summary)
    return summary
