"""Fig. 3 of the AdaFace paper: |GST| maps and curves of every registered margin head on the two-class toy.

The numbers come from :mod:`marginlab.analysis.gst` (autograd through the real head code); this module
chooses the panels, collects them into one tidy table, checks it, and writes the ``gst`` stage's outputs
(the drawing is :mod:`marginlab.analysis.figures`, beside Fig. 2).

Layout (which the report states next to the figure): the paper draws its Fig. 3 in the feature-space
angle layout; here every map is drawn in the **cosine plane** the first author describes in issue #24:
x axis = target cosine cos θ_y, y axis = non-target cosine cos θ_j, colour = |g|, with

    g = ∂CE/∂cos θ_y = (P_y - 1) · ∂f(cos θ_y)/∂cos θ_y            (the gradient scaling term, GST)

for two classes. The dashed diagonal cos θ_y = cos θ_j is the decision boundary without margin. The
marked points are the easy (○) and hard (△) sample of :func:`marginlab.analysis.gst.emphasis`, the one
definition of "hard versus easy emphasis" (claim 2 uses it too).

Panels (:func:`gst_panels`) come from the head registry: one per registered head and each of its
``gst_variants`` (its running state: AdaFace's ẑ, MagFace's norm, CurricularFace's t), in table order
(``marginlab.heads.HEAD_NAMES``), with the head's hyperparameters from ``params.heads``. A new head
appears without an edit here. The panels the paper's Fig. 3 draws (:data:`.paper_numbers.FIG3_PANELS`,
data about the paper) are marked ``fig3`` and carry the paper's words for their state ("high norm").
The state-levels figure (:func:`state_level_panels`) shows every head with more than one variant at its
levels and the midpoints between them (AdaFace ẑ from -1 to +1, MagFace from l_a to u_a).

Curves (at the non-target cosine ``params.gst.cos_nontarget``, 0.5 as in issue #24): |g| against
cos θ_y for every panel, and the signed g of AdaFace at ẑ = +1 for the configured m against larger
margins (0.5, 0.7). The head code keeps the shifted angle θ - m·ẑ inside [eps, π - eps] (the official
code's clip), so for θ_y < m (cos θ_y > cos m) the target logit is constant and g = 0: a flat region
whose width grows with m. (Without the clip, the closed form of the issue's interactive plot, g changes
sign at cos m and diverges as cos θ_y → 1; the tests check that closed form against the head code where
nothing is clipped.)
"""

from __future__ import annotations

import json
import math
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marginlab.analysis.gst import EASY_POINT, HARD_POINT, emphasis, gst_grid, target_gst, variant_label
from marginlab.core.hyperparameters import format_hyperparameter
from marginlab.analysis.paper_numbers import FIG3_PANELS
from marginlab.heads import HEAD_NAMES, HEADS, AdaFace, head_defaults

__all__ = [
    "FIGURE_FILES",
    "GST_TABLE_COLUMNS",
    "MAP_NOTE",
    "Panel",
    "compute_gst_table",
    "curve_margins",
    "gst_checks",
    "gst_panels",
    "head_hyperparameters",
    "panel_key",
    "state_level_panels",
    "run_gst",
    "write_gst_outputs",
]

#: Columns of ``gst.parquet``. ``kind``: ``map`` (grid over both cosines), ``curve`` (fixed non-target
#: cosine), ``curve_m`` (AdaFace ẑ = +1 at several m). ``panel``: a stable id (:func:`panel_key`).
#: ``fig3``: one of the paper's Fig. 3 panels. ``hyperparameters``: JSON of the head's hyperparameters.
#: ``gst`` is signed; ``abs_gst`` = |gst|.
GST_TABLE_COLUMNS = (
    "kind", "panel", "fig3", "title", "head", "variant", "hyperparameters",
    "cos_target", "cos_nontarget", "gst", "abs_gst",
)
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
    "norm (ẑ=−1).\n"
    "Bold titles: the paper's Fig. 3 panels."
)
FIGURE_FILES = {
    "maps": "fig3_gst_maps.png",
    "curves": "fig3_gst_curves.png",
    "levels": "fig3_gst_state_levels.png",
}
#: How the running-state keys of :meth:`~marginlab.heads.MarginHead.set_analysis_state` read in titles.
STATE_SYMBOLS = {"z_hat": "ẑ", "norm": "‖z‖", "mu": "μ", "sigma": "σ"}
#: The larger AdaFace margins the ẑ = +1 curve of the configured m is compared against.
LARGER_M = (0.5, 0.7)


@dataclass(frozen=True)
class Panel:
    """One GST setting: a head, its hyperparameters and its running state (``variant``)."""

    key: str
    head: str
    title: str
    variant: dict[str, float] = field(default_factory=dict)
    hyperparameters: dict[str, float] = field(default_factory=dict)
    fig3: bool = False


def head_hyperparameters(heads: Any) -> dict[str, dict[str, float | str]]:
    """``params.heads`` (a pydantic model) or a mapping → ``{head: {hyperparameter: value}}`` for every
    registered head; a head the mapping leaves out gets its registry defaults (the paper values)."""
    if hasattr(heads, "model_dump"):
        heads = heads.model_dump()
    if not isinstance(heads, Mapping):
        raise TypeError(f"heads must be params.heads or a mapping of head -> hyperparameters, got {type(heads).__name__}")
    unknown = sorted(set(map(str, heads)) - set(HEAD_NAMES))
    if unknown:
        raise ValueError(f"unknown head(s) {unknown} in heads; registered: {', '.join(HEAD_NAMES)}")
    given = {str(k): {kk: vv if isinstance(vv, str) else float(vv) for kk, vv in dict(v).items()} for k, v in heads.items()}
    return {name: {**head_defaults(name), **given.get(name, {})} for name in HEAD_NAMES}


def panel_key(head: str, variant: Mapping[str, float]) -> str:
    """Stable panel id: the head name, plus its state (``adaface_z_hat=1``, ``magface_norm=60``)."""
    return head if not variant else f"{head}_{variant_label(variant)}"


def _title(head: str, variant: Mapping[str, float], hyperparameters: Mapping[str, float], words: str = "") -> str:
    """``"AdaFace high norm, ẑ=1 (m=0.4, h=0.333, t_alpha=0.01)"``: the head's class name, the paper's words
    for the state (if a Fig. 3 panel), the state, and the hyperparameters besides the scale s."""
    name = HEADS[head].__name__ + (f" {words}" if words else "")
    state = ", ".join(f"{STATE_SYMBOLS.get(k, k)}={float(v):g}" for k, v in variant.items())
    # s is in every title's axis scale; stats_init only says how running statistics start, and a panel sets the state
    hp = ", ".join(f"{k}={format_hyperparameter(v)}" for k, v in hyperparameters.items() if k not in ("s", "stats_init"))
    return name + (f", {state}" if state else "") + (f" ({hp})" if hp else "")


def gst_panels(heads: Any) -> list[Panel]:
    """One panel per registered head and GST variant, in ``HEAD_NAMES`` order (hyperparameters from ``heads``).

    Panels of the paper's Fig. 3 (:data:`.paper_numbers.FIG3_PANELS`) are marked ``fig3``; one the head
    no longer lists among its ``gst_variants`` is still drawn, after that head's own variants.
    """
    hp = head_hyperparameters(heads)
    paper = {(p.head, variant_label(p.variant)): p for p in FIG3_PANELS}
    panels = []
    for name in HEAD_NAMES:
        variants = [dict(v) for v in HEADS[name].analysis_variants(hp[name])]
        labels = {variant_label(v) for v in variants}
        variants += [dict(p.variant) for p in FIG3_PANELS if p.head == name and variant_label(p.variant) not in labels]
        for variant in variants:
            ref = paper.get((name, variant_label(variant)))
            panels.append(Panel(panel_key(name, variant), name, _title(name, variant, hp[name], ref.words if ref else ""),
                                variant, hp[name], fig3=ref is not None))
    return panels


def _levels(variants: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    """The variants sorted by level with the midpoints between neighbours, when all vary one common key;
    otherwise the variants as they are."""
    keys = {tuple(v) for v in variants}
    if len(keys) != 1 or len(next(iter(keys))) != 1:
        return [dict(v) for v in variants]
    (key,) = next(iter(keys))
    values = sorted({float(v[key]) for v in variants})
    out = []
    for a, b in zip(values, values[1:]):
        out += [{key: a}, {key: round(0.5 * (a + b), 10)}]
    return out + [{key: values[-1]}]


def state_level_panels(heads: Any) -> list[list[Panel]]:
    """One row per registered head with more than one GST variant: its levels and the midpoints between them."""
    by_key = {p.key: p for p in gst_panels(heads)}
    hp = head_hyperparameters(heads)
    rows = []
    for name in HEAD_NAMES:
        own = HEADS[name].analysis_variants(hp[name])
        if len(own) < 2:
            continue
        row = []
        for variant in _levels(own):
            key = panel_key(name, variant)
            row.append(by_key.get(key) or Panel(key, name, _title(name, variant, hp[name]), variant, hp[name]))
        rows.append(row)
    return rows


def _panel_frame(panel: Panel, kind: str, xs: np.ndarray, js: np.ndarray) -> pd.DataFrame:
    frame = gst_grid(panel.head, xs, js, [panel.variant], hyperparameters=panel.hyperparameters)
    frame.insert(0, "kind", kind)
    frame.insert(1, "panel", panel.key)
    frame.insert(2, "fig3", panel.fig3)
    frame.insert(3, "title", panel.title)
    frame.insert(6, "hyperparameters", json.dumps(panel.hyperparameters, sort_keys=True))
    frame["abs_gst"] = frame["gst"].abs()
    return frame


def curve_margins(adaface_m: float, larger: Sequence[float] = LARGER_M) -> list[float]:
    """The configured AdaFace m and the larger margins it is compared against (sorted, unique)."""
    return sorted({round(float(adaface_m), 10), *(round(float(v), 10) for v in larger)})


def _margin_panels(heads: Any, larger_m: Sequence[float]) -> list[Panel]:
    """AdaFace at ẑ = +1 with the configured m and the larger ones (the flat region near cos θ_y = 1)."""
    ada = head_hyperparameters(heads)["adaface"]
    variant = {"z_hat": 1.0}
    return [Panel(f"{panel_key('adaface', variant)}_m={m:g}", "adaface", f"AdaFace, ẑ=1, m={m:g}", variant, {**ada, "m": m})
            for m in curve_margins(ada["m"], larger_m)]


def compute_gst_table(
    heads: Any,
    *,
    n: int = 201,
    limit: float = 0.995,
    curve_n: int = 801,
    curve_limit: float = 0.999,
    cos_nontarget: float = 0.5,
    larger_m: Sequence[float] = LARGER_M,
) -> pd.DataFrame:
    """All of Fig. 3 as one tidy table (columns :data:`GST_TABLE_COLUMNS`).

    Maps: an ``n`` × ``n`` grid over [-limit, limit]² for every panel of :func:`gst_panels` and the
    in-between levels of :func:`state_level_panels`. Curves: ``curve_n`` target cosines over
    [-curve_limit, curve_limit] at ``cos_nontarget``, for every panel and for AdaFace ẑ = +1 at several m.
    The map limit stays inside AdaFace's cosine clamp 1 - ``AdaFace.eps``, where its gradient is cut to 0
    (an edge artefact, not a property of the margin); the curves go up to 0.999 to show the region near 1.
    """
    if n < 3 or curve_n < 3:
        raise ValueError(f"grid sizes must be >= 3, got n={n}, curve_n={curve_n}")
    if not (0 < limit < 1 and 0 < curve_limit < 1):
        raise ValueError(f"limits must lie in (0, 1), got limit={limit}, curve_limit={curve_limit}")
    if not -1 <= cos_nontarget <= 1:
        raise ValueError(f"cos_nontarget must lie in [-1, 1], got {cos_nontarget}")
    grid = np.linspace(-limit, limit, n)
    xs = np.linspace(-curve_limit, curve_limit, curve_n)
    panels = gst_panels(heads)
    keys = {p.key for p in panels}
    levels = [p for row in state_level_panels(heads) for p in row if p.key not in keys]
    j = np.array([cos_nontarget])
    frames = [_panel_frame(p, "map", grid, grid) for p in [*panels, *levels]]
    frames += [_panel_frame(p, "curve", xs, j) for p in panels]
    frames += [_panel_frame(p, "curve_m", xs, j) for p in _margin_panels(heads, larger_m)]
    table = pd.concat(frames, ignore_index=True)[list(GST_TABLE_COLUMNS)]
    return table.astype({"fig3": bool, "cos_target": np.float64, "cos_nontarget": np.float64,
                         "gst": np.float64, "abs_gst": np.float64})


def _map(table: pd.DataFrame, head: str, variant: Mapping[str, float]) -> pd.DataFrame | None:
    """The map of ``head`` in state ``variant`` as a 2-D table (rows = cos θ_j, columns = cos θ_y), or None."""
    rows = table[(table["kind"] == "map") & (table["head"] == head) & (table["variant"] == variant_label(variant))]
    if rows.empty:
        return None
    rows = rows[rows["panel"] == rows["panel"].iloc[0]]
    return rows.pivot(index="cos_nontarget", columns="cos_target", values="gst")


def gst_checks(table: pd.DataFrame, heads: Any) -> dict[str, Any]:
    """Numbers the report quotes next to Fig. 3 (all from the table or from marginlab.analysis.gst).

    - ``special_cases``: max |Δg| between AdaFace ẑ = -1 and ArcFace with AdaFace's s, m (where neither
      clips the shifted angle: θ + m < π - eps), and between ẑ = 0 and CosFace(s, m), both over the map
      grid points inside AdaFace's cosine clamp |cos θ_y| < 1 - eps (eps = ``AdaFace.eps``);
    - ``emphasis``: :func:`marginlab.analysis.gst.emphasis` (|g| at the easy ○ and hard △ point and
      their ratio) for every panel of :func:`gst_panels`;
    - ``flat_region``: per m, the largest grid cos θ_y with g ≠ 0 on the AdaFace ẑ = +1 curve (the head
      code gives g = 0 beyond cos m) and the share of the curve where g = 0.
    """
    ada = head_hyperparameters(heads)["adaface"]
    s, m, eps = ada["s"], ada["m"], AdaFace.eps
    maps = table[table["kind"] == "map"]
    if maps.empty:
        raise ValueError("the GST table has no maps")
    first = maps[maps["panel"] == maps["panel"].iloc[0]]
    xs, js = np.sort(first["cos_target"].unique()), np.sort(first["cos_nontarget"].unique())
    gx, gj = np.meshgrid(xs, js)  # same orientation as the pivot: rows = cos θ_j, columns = cos θ_y

    def adaface_map(z_hat: float) -> np.ndarray:
        found = _map(table, "adaface", {"z_hat": z_hat})
        if found is not None and found.shape == gx.shape:
            return found.to_numpy()
        return target_gst("adaface", gx, gj, {"z_hat": z_hat}, hyperparameters=ada)

    arc = target_gst("arcface", gx, gj, hyperparameters={"s": s, "m": m})
    cos = target_gst("cosface", gx, gj, hyperparameters={"s": s, "m": m})
    clamp = np.abs(gx) < 1.0 - eps - 1e-12  # AdaFace clamps cos θ_y to ±(1 - eps): no gradient beyond
    inside = clamp & (np.arccos(gx) + m < math.pi - eps)
    if not inside.any():
        raise ValueError("the GST map grid has no point inside AdaFace's clamp; use a larger grid")
    checks: dict[str, Any] = {"special_cases": {
        "adaface_zhat_minus1_vs_arcface": {
            "max_abs_diff": float(np.max(np.abs(adaface_map(-1.0) - arc)[inside])),
            "points_compared": int(inside.sum()), "points": int(inside.size), "s": s, "m": m,
        },
        "adaface_zhat0_vs_cosface": {
            "max_abs_diff": float(np.max(np.abs(adaface_map(0.0) - cos)[clamp])),
            "points_compared": int(clamp.sum()), "points": int(cos.size), "s": s, "m": m,
        },
    }}
    checks["emphasis"] = {
        "easy_point": list(EASY_POINT), "hard_point": list(HARD_POINT),
        "panels": {p.key: {"title": p.title, "head": p.head, "variant": p.variant, "fig3": p.fig3,
                           **emphasis(p.head, p.variant, hyperparameters=p.hyperparameters)}
                   for p in gst_panels(heads)},
    }
    flat = {}
    for _, rows in table[table["kind"] == "curve_m"].groupby("panel", sort=False):
        hp = json.loads(rows["hyperparameters"].iloc[0])
        rows = rows.sort_values("cos_target")
        nonzero = rows.loc[rows["gst"] != 0, "cos_target"]
        flat[f"m={hp['m']:g}"] = {
            "m": hp["m"],
            "cos_m": math.cos(hp["m"]),
            "last_nonzero_cos_target": float(nonzero.max()) if len(nonzero) else None,
            "zero_share_of_curve": float((rows["gst"] == 0).mean()),
            "max_cos_target": float(rows["cos_target"].iloc[-1]),
        }
    checks["flat_region"] = flat
    return checks


def _wrapped(title: str, width: int = 44) -> str:
    return "\n".join(textwrap.wrap(title, width)) or title


def write_gst_outputs(
    heads: Any,
    out_dir: str | Path,
    *,
    n: int = 201,
    curve_n: int = 801,
    limit: float = 0.995,
    curve_limit: float = 0.999,
    cos_nontarget: float = 0.5,
    larger_m: Sequence[float] = LARGER_M,
    extra_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute the GST table, draw the figures and write ``out_dir`` atomically as a whole:

    ``gst.parquet`` (:data:`GST_TABLE_COLUMNS`), ``figures/`` (:data:`FIGURE_FILES`) and ``summary.json``
    (settings, the panels of each figure, :func:`gst_checks`, wall time).
    """
    from marginlab.analysis import gst_figures as fig
    from marginlab.core.io import atomic_dir, write_json

    t0 = time.perf_counter()
    table = compute_gst_table(heads, n=n, limit=limit, curve_n=curve_n, curve_limit=curve_limit,
                              cos_nontarget=cos_nontarget, larger_m=larger_m)
    checks = gst_checks(table, heads)
    panels = gst_panels(heads)
    levels = state_level_panels(heads)
    width = max((len(row) for row in levels), default=1)
    level_cells: list[str | None] = [c for row in levels for c in [p.key for p in row] + [None] * (width - len(row))]
    titles = {p.key: _wrapped(p.title) for p in [*panels, *(p for row in levels for p in row)]}
    points = {"o": EASY_POINT, "^": HARD_POINT}
    with atomic_dir(out_dir) as tmp:
        figures = tmp / "figures"
        figures.mkdir()
        table.to_parquet(tmp / "gst.parquet", index=False)
        fig.plot_gst_maps(table, [p.key for p in panels], figures / FIGURE_FILES["maps"], titles=titles, points=points,
                          bold=[p.key for p in panels if p.fig3], note=MAP_NOTE,
                          title="Fig. 3: |GST| of the target class on the two-class toy, every registered head")
        fig.plot_gst_curves(table, figures / FIGURE_FILES["curves"])
        fig.plot_gst_maps(table, level_cells, figures / FIGURE_FILES["levels"], titles=titles, points=points, ncols=width,
                          title="|GST| across running-state levels (one row per head with several GST variants)")
        summary = {
            "layout": "cosine plane: x = target cos θ_y, y = non-target cos θ_j, colour = |∂CE/∂cos θ_y|",
            "grid": {"n": n, "limit": limit, "curve_n": curve_n, "curve_limit": curve_limit,
                     "cos_nontarget": cos_nontarget},
            "heads": head_hyperparameters(heads),
            "panels": [{"key": p.key, "head": p.head, "title": p.title, "variant": p.variant, "fig3": p.fig3}
                       for p in panels],
            "figure_panels": {"maps": [p.key for p in panels], "levels": [[p.key for p in row] for row in levels]},
            "curve_margins": curve_margins(head_hyperparameters(heads)["adaface"]["m"], larger_m),
            "figures": {k: f"figures/{v}" for k, v in FIGURE_FILES.items()},
            "rows": len(table),
            **checks,
            **dict(extra_summary or {}),
        }
        summary["wall_time_s"] = round(time.perf_counter() - t0, 3)
        write_json(tmp / "summary.json", summary)
    return summary


def run_gst(params: Any, out_dir: str | Path = "analysis/gst", *, n: int | None = None, curve_n: int | None = None,
            cos_nontarget: float | None = None) -> dict:
    """The gst stage: :func:`write_gst_outputs` with the settings of ``params.gst`` unless given here."""
    gst = params.gst
    return write_gst_outputs(
        params.heads, out_dir,
        n=gst.n if n is None else n,
        curve_n=gst.curve_n if curve_n is None else curve_n,
        cos_nontarget=gst.cos_nontarget if cos_nontarget is None else cos_nontarget,
        extra_summary={"preset": params.preset},
    )
