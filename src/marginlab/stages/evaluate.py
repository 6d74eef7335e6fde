"""Stage ``evaluate@RUN``: evaluate one trained run on every benchmark of the prepared data.

    python -m marginlab evaluate RUN [--params params.yaml] [--device auto|cpu|cuda] [--threads N] [--workers N]
                                     [--no-progress]

Reads ``<runs_dir>/<RUN>/model.pt`` and ``<data.prepared_dir>/`` (verification/*.bin, ijb/*/,
tinyface/), joins ``<quality.output_dir>/scores.parquet`` when present, and writes atomically
``<runs_dir>/<RUN>/metrics.json``, ``roc.parquet`` and ``eval_norms.parquet``.
"""

from __future__ import annotations

import argparse
import json

import torch

from marginlab.core.config import ConfigError, Params
from marginlab.data.formats import DataFormatError
from marginlab.evaluate import run_evaluate
from marginlab.models import ModelFileError

ERRORS = (ConfigError, FileNotFoundError, DataFormatError, ModelFileError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to embed (default: auto)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op CPU threads (0: torch's default)")
    parser.add_argument(
        "--workers", type=int, default=None, help="image-decoding processes (default: 0 on CPU, up to 8 on CUDA)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace, params: Params) -> int:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    metrics = run_evaluate(
        params, args.run, device=args.device, num_workers=args.workers, progress=not args.no_progress
    )
    print(json.dumps({"run": metrics["run"], "head": metrics["head"], "summary": metrics["summary"]}, indent=2))
    return 0
