"""Stage ``analyze``: correlations (Fig. 2), augmentation by norm, Table 1, main comparison, claim verdicts.

    python -m marginlab analyze [--params params.yaml] [--out analysis] [--resamples 2000] [--bins 5]
                                [--no-figures] [--no-progress]

Reads ``<runs_dir>/<run>/`` of every run in params (probe tables, metrics.json, eval_norms.parquet,
live/, train_summary.json) and ``<quality.output_dir>/summary.json``; writes atomically into ``--out``:
correlation.csv, augmentation.csv, ablation.csv, comparison.csv, claims.json, summary.json and
figures/ (schema: ``marginlab.analysis.stage``).
"""

from __future__ import annotations

import argparse
import json

from marginlab.analysis.collect import AnalysisInputError
from marginlab.analysis.stage import run_analyze
from marginlab.core.config import ConfigError, Params
from marginlab.models import ModelFileError

ERRORS = (ConfigError, AnalysisInputError, ModelFileError, ValueError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="analysis", help="output directory (default: analysis)")
    parser.add_argument(
        "--resamples",
        type=int,
        default=None,
        help="bootstrap resamples per interval (default: params analysis.n_resamples)",
    )
    parser.add_argument(
        "--bins",
        type=int,
        default=None,
        help="feature-norm bins of the augmentation analysis (default: params analysis.norm_bins)",
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace, params: Params) -> int:
    cfg = params.analysis
    summary = run_analyze(
        params,
        args.out,
        n_resamples=cfg.n_resamples if args.resamples is None else args.resamples,
        norm_bins=cfg.norm_bins if args.bins is None else args.bins,
        confidence=cfg.confidence,
        figures=not args.no_figures,
        progress=not args.no_progress,
        workers=cfg.workers,
    )
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
