"""Command ``embed``: embeddings and feature norms of face images with a trained model.

    python -m marginlab embed --model RUN|DIR IMAGE|FOLDER... --out FILE.parquet [--device auto|cpu|cuda]

Not a pipeline stage. ``--model`` is a run of params.yaml (``runs/<RUN>/model.pt``) or a folder holding a
``model.pt``; the images are aligned face crops, or photos with ``--align detect``. Writes ``path``, ``norm`` and the L2-normalised
``embedding`` per image, atomically; see :mod:`marginlab.inference`.
"""

from __future__ import annotations

import argparse

from marginlab.core.config import ConfigError
from marginlab.data.formats import DataFormatError
from marginlab.inference import add_model_arguments
from marginlab.models import ModelFileError

ERRORS = (ConfigError, DataFormatError, ModelFileError, ValueError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("images", nargs="+", help="face images (any format OpenCV reads), or folders of them")
    parser.add_argument("--out", required=True, help="the parquet file to write")


def run(args: argparse.Namespace, params: None) -> int:
    from marginlab.core.io import write_parquet
    from marginlab.inference import embed_files, expand_images, model_dir

    images = expand_images(args.images)
    frame = embed_files(model_dir(args.model, args.params), images, device=args.device, align=args.align)
    write_parquet(args.out, frame)
    print(f"wrote {args.out}: {len(frame)} images, feature norm {frame['norm'].min():.2f}-{frame['norm'].max():.2f}")
    return 0
