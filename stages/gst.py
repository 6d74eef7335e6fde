"""Stage ``gst``: Fig. 3 of the paper — |GST| maps and curves of the margin heads on the two-class toy.

    python stages/gst.py [--params params.yaml] [--out analysis/gst] [--n N] [--curve-n N]
                         [--cos-nontarget C] [--curricular-late-t 0.5]

Head hyperparameters come from ``params.heads``, the grid from ``params.gst`` (``--n``, ``--curve-n``,
``--cos-nontarget`` override it for one run); the gradient scaling term is computed by
:mod:`marginlab.analysis.gst` (autograd through the head code). Writes, replacing ``--out`` as a whole:
``gst.parquet`` (kind, panel, fig3, title, head, variant, hyperparameters, cos_target, cos_nontarget,
gst, abs_gst), ``figures/fig3_gst_maps.png`` (the seven panels), ``figures/fig3_gst_curves.png``,
``figures/fig3_gst_norm_levels.png`` and ``summary.json``. See :mod:`marginlab.report.gst_figures`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from marginlab.cli import run_stage
from marginlab.config import ConfigError, load_params
from marginlab.report.gst_figures import write_gst_outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--out", default="analysis/gst", help="output directory (default: analysis/gst)")
    parser.add_argument("--n", type=int, default=None, help="map grid points per axis (default: params gst.n)")
    parser.add_argument("--curve-n", type=int, default=None, help="points per curve (default: params gst.curve_n)")
    parser.add_argument("--cos-nontarget", type=float, default=None,
                        help="non-target cosine of the curves (default: params gst.cos_nontarget)")
    parser.add_argument("--curricular-late-t", type=float, default=0.5,
                        help="CurricularFace t of the 'late' panel (default: 0.5)")
    args = parser.parse_args(argv)
    return run_stage(lambda: _run(args), (ConfigError, ValueError, KeyError))


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    gst = params.gst
    summary = write_gst_outputs(
        params.heads, args.out,
        n=gst.n if args.n is None else args.n,
        curve_n=gst.curve_n if args.curve_n is None else args.curve_n,
        cos_nontarget=gst.cos_nontarget if args.cos_nontarget is None else args.cos_nontarget,
        curricular_late_t=args.curricular_late_t, extra_summary={"preset": params.preset},
    )
    out = Path(args.out)
    sc = summary["special_cases"]
    emph = summary["emphasis"]["panels"]
    print(f"wrote {out / 'gst.parquet'} ({summary['rows']} rows), {len(summary['figures'])} figures in {out / 'figures'}; "
          f"AdaFace ẑ=-1 vs ArcFace max |Δ| {sc['adaface_zhat_minus1_vs_arcface']['max_abs_diff']:.2e}, "
          f"ẑ=0 vs CosFace {sc['adaface_zhat0_vs_cosface']['max_abs_diff']:.2e}; hard/easy |GST| ratio "
          f"ẑ=+1 {emph['adaface_high']['hard_over_easy']:.2f}, ẑ=-1 {emph['adaface_low']['hard_over_easy']:.2f} "
          f"({summary['wall_time_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
