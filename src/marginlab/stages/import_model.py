"""Command ``import-model``: a released checkpoint as a model folder every model-taking command reads.

    python -m marginlab import-model SRC --format adaface|insightface|onnx [--arch ARCH] --out DIR

Not a pipeline stage (the ``released`` stage imports its entries itself). The file is read as data only;
see :mod:`marginlab.released.importers` for the formats and what each checks.
"""

from __future__ import annotations

import argparse

from marginlab.core.config import ConfigError
from marginlab.models import ModelFileError
from marginlab.released.importers import FORMATS

ERRORS = (ConfigError, ModelFileError, FileNotFoundError, ValueError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="the released file: AdaFace .ckpt, arcface_torch backbone.pth, or .onnx")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="format")
    parser.add_argument(
        "--arch",
        default=None,
        help="adaface: ir_18 ir_34 ir_50 ir_101, insightface: r18 ... r200 (both read off the keys when omitted); "
        "onnx: the input convention",
    )
    parser.add_argument("--out", required=True, help="the model folder to write (must not hold another model)")


def run(args: argparse.Namespace, params: None) -> int:
    from marginlab.released.importers import import_model

    out = import_model(args.src, args.format, args.out, arch=args.arch)
    print(f"imported {args.src} ({args.format}{' ' + args.arch if args.arch else ''}) into {out}")
    return 0
