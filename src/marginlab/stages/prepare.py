"""Stage ``prepare``: build the prepared-data directory (synthetic faces, or ingest of real data).

    python -m marginlab prepare [--params params.yaml] [--out DIR] [--workers N] [--no-progress]

``data.source`` selects the training set: ``synthetic`` generates the synthetic face set (train
RecordIO, hq/lq verification .bins, an IJB-style set, a TinyFace-style set); ``recordio`` decodes every
record of ``data.train_rec`` (+ .idx) and links it, or rewrites it when images are resized to
``data.image_size`` or skipped; ``folders`` converts ``data.train_folders``. ``data.val_bins`` (every
image decoded, brought to ``data.image_size``) and ``data.ijb`` are added in every case. With
``data.align: detect`` (folders only) faces are detected in the training photos and ``data.val_bins``
images and aligned to the ArcFace template; ``alignment.parquet`` records each photo's outcome. The output
(default ``data.prepared_dir``) is replaced as a whole only when complete; ``manifest.json`` inside lists
counts, sources and sha256 of every file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from marginlab.core.config import ConfigError, Params
from marginlab.data.formats import DataFormatError
from marginlab.data.prepare import run_prepare

ERRORS = (ConfigError, DataFormatError, ValueError, FileNotFoundError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output directory (default: data.prepared_dir from the params)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="synthetic generator processes (0 = one per core; output does not depend on it)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, params: Params) -> int:
    out = args.out or Path(params.data.prepared_dir)
    manifest = run_prepare(params, out, workers=args.workers, progress=not args.no_progress)
    summary = {k: manifest[k] for k in ("dataset", "source", "counts", "wall_time_s")}
    summary["files"] = len(manifest["files"])
    summary["skipped"] = len(manifest["skipped"])
    print(f"wrote {out}")
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
