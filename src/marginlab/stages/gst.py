"""Stage ``gst``: Fig. 3 of the paper — |GST| maps and curves of every registered margin head on the two-class toy.

    python -m marginlab gst [--params params.yaml] [--out analysis/gst] [--n N] [--curve-n N] [--cos-nontarget C]

Head hyperparameters come from ``params.heads``, the grid from ``params.gst`` (``--n``, ``--curve-n``,
``--cos-nontarget`` override it for one run); the panels are every registered head in each of its GST
variants; the gradient scaling term is computed by :mod:`marginlab.analysis.gst` (autograd through the
head code). Writes, replacing ``--out`` as a whole: ``gst.parquet`` (kind, panel, fig3, title, head,
variant, hyperparameters, cos_target, cos_nontarget, gst, abs_gst), ``figures/fig3_gst_maps.png`` (one
panel per head and variant), ``figures/fig3_gst_curves.png``, ``figures/fig3_gst_state_levels.png`` and
``summary.json``. See :mod:`marginlab.analysis.gst_study`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from marginlab.analysis.gst_study import panel_key, run_gst
from marginlab.core.config import ConfigError, Params

ERRORS = (ConfigError, ValueError, KeyError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="analysis/gst", help="output directory (default: analysis/gst)")
    parser.add_argument("--n", type=int, default=None, help="map grid points per axis (default: params gst.n)")
    parser.add_argument("--curve-n", type=int, default=None, help="points per curve (default: params gst.curve_n)")
    parser.add_argument(
        "--cos-nontarget",
        type=float,
        default=None,
        help="non-target cosine of the curves (default: params gst.cos_nontarget)",
    )


def run(args: argparse.Namespace, params: Params) -> int:
    summary = run_gst(params, args.out, n=args.n, curve_n=args.curve_n, cos_nontarget=args.cos_nontarget)
    out = Path(args.out)
    sc = summary["special_cases"]
    emph = summary["emphasis"]["panels"]
    print(
        f"wrote {out / 'gst.parquet'} ({summary['rows']} rows), {len(summary['figures'])} figures in "
        f"{out / 'figures'}; AdaFace ẑ=-1 vs ArcFace max |Δ| {sc['adaface_zhat_minus1_vs_arcface']['max_abs_diff']:.2e}, "
        f"ẑ=0 vs CosFace {sc['adaface_zhat0_vs_cosface']['max_abs_diff']:.2e}; hard/easy |GST| ratio of AdaFace "
        + ", ".join(f"ẑ={z:+g} {_ratio(emph, panel_key('adaface', {'z_hat': z}))}" for z in (1.0, -1.0))
        + f" ({summary['wall_time_s']:.1f} s)"
    )
    return 0


def _ratio(panels: dict, key: str) -> str:
    value = (panels.get(key) or {}).get("hard_over_easy")
    return "—" if value is None else f"{value:.2f}"
