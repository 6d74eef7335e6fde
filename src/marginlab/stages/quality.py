"""Stage ``quality``: BRISQUE and IQ of every prepared image.

    python -m marginlab quality [--params params.yaml] [--device auto|cpu|cuda] [--threads N] [--no-progress]

Scores the training images and every evaluation image of ``data.prepared_dir`` (train.rec,
verification/*.bin, ijb/<name>/ aligned faces, tinyface/<part>/) with the converted LIVE BRISQUE
model ``quality.model_path``: same-size images stacked ``quality.batch_size`` at a time (on CPU
evaluated in forward passes of at most 32, the measured optimum), in resumable chunks of
``quality.chunk_size`` images. Writes ``<quality.output_dir>/scores.parquet`` (split, index,
brisque, iq; IQ = 1 - clip(BRISQUE, 0, 100) / 100) and ``summary.json``. Images whose longer side
exceeds ``quality.max_side`` are downscaled first; the model's identity (the LIVE SVR, or the file
named by ``quality.model_sha256``) is verified before any image is scored. A killed run resumes from
the part files in ``<quality.output_dir>/.parts/``, which are removed after success.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from marginlab.core.config import ConfigError, Params
from marginlab.quality.stage import QualityStageError, run_quality

ERRORS = (ConfigError, QualityStageError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override quality.device")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: params quality.threads; 0 = PyTorch's choice; "
        "1 is more robust on a busy machine)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, params: Params) -> int:
    if args.device:
        params.quality.device = args.device
    summary = run_quality(
        params, progress=not args.no_progress, threads=params.quality.threads if args.threads is None else args.threads
    )
    out = Path(params.quality.output_dir)
    every = summary["splits"]["all"]
    print(
        f"wrote {out / 'scores.parquet'} and {out / 'summary.json'}: {summary['num_images']} images, "
        f"mean BRISQUE {every['brisque']['mean']}, mean IQ {every['iq']['mean']}"
    )
    return 0
