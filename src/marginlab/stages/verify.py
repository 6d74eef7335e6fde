"""Command ``verify``: whether two face images show the same person, by a trained model.

    python -m marginlab verify --model RUN|DIR IMAGE1 IMAGE2 [--device auto|cpu|cuda]

Not a pipeline stage. Prints the cosine similarity and, for each verification set the run was evaluated
on, the decision at that set's 10-fold threshold (JSON); see :mod:`marginlab.inference`.
"""

from __future__ import annotations

import argparse
import json

from marginlab.core.config import ConfigError
from marginlab.data.formats import DataFormatError
from marginlab.inference import add_model_arguments
from marginlab.models import ModelFileError

ERRORS = (ConfigError, DataFormatError, ModelFileError, ValueError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("first", help="an aligned face image")
    parser.add_argument("second", help="another aligned face image")


def run(args: argparse.Namespace, params: None) -> int:
    from marginlab.inference import model_dir, verify_pair

    print(
        json.dumps(
            verify_pair(
                model_dir(args.model, args.params), args.first, args.second, device=args.device, align=args.align
            ),
            indent=2,
        )
    )
    return 0
