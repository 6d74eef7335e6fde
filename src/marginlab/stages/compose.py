"""Command ``compose``: a preset overlay (configs/<name>.yaml) applied to the default params.yaml.

    python -m marginlab compose OVERLAY... [--params BASE] [--out FILE]

Not a pipeline stage (no ``dvc.yaml`` entry): it writes the params file the stages read. ``--params`` names
the base (default: ``params.yaml``, which must then be the default preset); see :mod:`marginlab.presets`.
"""

from __future__ import annotations

import argparse
import sys

from marginlab.presets import PresetError, compose

ERRORS = (PresetError,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overlays", nargs="+", help="overlay files, applied in order (e.g. configs/smoke.yaml)")
    parser.add_argument(
        "--out",
        default="-",
        help="where to write the result (default: standard output; '--out params.yaml' replaces it atomically)",
    )
    parser.set_defaults(params=None)  # None: params.yaml, required to be the default preset


def run(args: argparse.Namespace, params: None) -> int:
    written = compose(args.overlays, args.params, args.out)
    if written is not None:
        print(f"wrote {written} ({' + '.join(args.overlays)} on {args.params or 'params.yaml'})", file=sys.stderr)
    return 0
