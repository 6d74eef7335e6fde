"""Stage ``released@NAME``: probe one released model of params ``released:`` on the prepared data.

    python -m marginlab released NAME [--params params.yaml] [--device auto|cpu|cuda] [--threads N] [--no-progress]

Imports ``released.<NAME>.file`` (read only) into a temporary folder and writes ``released/<NAME>/``
atomically: ``metrics.json`` (provenance, protocols, norm-quality correlations, the paired augmentation
test), ``eval_norms.parquet``, ``sample_norms.parquet``, ``roc.parquet``; see :mod:`marginlab.released.study`.
"""

from __future__ import annotations

import argparse
import json

from marginlab.core.config import ConfigError, Params
from marginlab.data.formats import DataFormatError
from marginlab.models import ModelFileError

ERRORS = (ConfigError, FileNotFoundError, DataFormatError, ModelFileError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to embed")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op CPU threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace, params: Params) -> int:
    import torch

    from marginlab.released.study import measure_released

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    metrics = measure_released(params, args.run, device=args.device, progress=not args.no_progress)
    rows = metrics["correlation"]
    shown = (
        rows
        if isinstance(rows, dict)
        else [{k: r[k] for k in ("set", "target", "spearman", "spearman_lo", "spearman_hi", "n")} for r in rows]
    )
    print(json.dumps({"released": args.run, "summary": metrics["summary"], "correlation": shown}, indent=2))
    return 0
