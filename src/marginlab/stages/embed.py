"""Command ``embed``: embeddings and feature norms of face images with a trained model.

    python -m marginlab embed --model RUN|DIR IMAGE... --out FILE.parquet [--device auto|cpu|cuda]

Not a pipeline stage. ``--model`` is a run of params.yaml (``runs/<RUN>/model.pt``) or a folder holding a
``model.pt``; the images are aligned face crops, or photos with ``--align detect``. Writes ``path``, ``norm`` and the L2-normalised
``embedding`` per image, atomically; see :mod:`marginlab.inference`.
"""

from __future__ import annotations

import argparse

from marginlab.core.config import ConfigError
from marginlab.data.formats import DataFormatError
from marginlab.models import ModelFileError

ERRORS = (ConfigError, DataFormatError, ModelFileError, ValueError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a run name of params.yaml, or a folder holding model.pt")
    parser.add_argument("images", nargs="+", help="face images (any format OpenCV reads)")
    parser.add_argument("--out", required=True, help="the parquet file to write")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--align",
        default="none",
        choices=("none", "detect"),
        help="detect: find the face in each photo and warp it to the ArcFace template first, as prepare does",
    )


def run(args: argparse.Namespace, params: None) -> int:
    from marginlab.core.io import write_parquet
    from marginlab.inference import embed_files, model_dir

    frame = embed_files(model_dir(args.model, args.params), args.images, device=args.device, align=args.align)
    write_parquet(args.out, frame)
    print(f"wrote {args.out}: {len(frame)} images, feature norm {frame['norm'].min():.2f}-{frame['norm'].max():.2f}")
    return 0
