"""Stage ``evaluate@RUN``: evaluate one trained run on every benchmark of the prepared data.

    python stages/evaluate.py RUN_NAME [--params params.yaml] [--device auto|cpu|cuda] [--threads N] [--workers N] [--no-progress]

Reads ``<runs_dir>/<RUN>/model.pt`` and ``<data.prepared_dir>/`` (verification/*.bin, ijb/*/,
tinyface/), joins ``<quality.output_dir>/scores.parquet`` when present, and writes atomically
``<runs_dir>/<RUN>/metrics.json``, ``roc.parquet`` and ``eval_norms.parquet``.
"""

from __future__ import annotations

import os

# Sleeping (not spinning) OpenMP waits: measured 1.5x on a shared 2-core CPU in bench/bench_train.py
# (see marginlab.train.runtime). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import sys

import torch

from marginlab.cli import run_stage
from marginlab.config import ConfigError, load_params
from marginlab.data.formats import DataFormatError
from marginlab.evaluate import run_evaluate
from marginlab.models import ModelFileError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run name (a key of 'runs' in params.yaml)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to embed (default: auto)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op CPU threads (0: torch's default)")
    parser.add_argument("--workers", type=int, default=None, help="image-decoding processes (default: 0 on CPU, up to 8 on CUDA)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return run_stage(lambda: _run(args), (ConfigError, FileNotFoundError, DataFormatError, ModelFileError))


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    metrics = run_evaluate(params, args.run, device=args.device, num_workers=args.workers, progress=not args.no_progress)
    print(json.dumps({"run": metrics["run"], "head": metrics["head"], "summary": metrics["summary"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
