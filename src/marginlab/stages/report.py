"""Stage ``report``: the self-contained HTML report of the whole study.

    python -m marginlab report [--root .] [--params <root>/params.yaml] [--out reports/report.html]

Reads ``analysis/`` (required: the ``analyze`` stage), ``analysis/gst/`` (the ``gst`` stage), the
prepared data's ``manifest.json`` and ``samples.png`` (``data.prepared_dir``), the quality summary
(``quality.output_dir``), every run's outputs (``runs_dir``), ``dvc.lock`` and ``params.yaml``, and writes
one HTML file with every figure embedded (no external resources). Optional inputs that are missing
are shown as "not available: <why>". See :mod:`marginlab.report.render`.
"""

from __future__ import annotations

import argparse

from marginlab.core.config import Params
from marginlab.report.inputs import ReportInputError
from marginlab.report.render import run_report

ERRORS = (ReportInputError,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=".", help="pipeline root: paths in params resolve against it (default: .)")
    parser.add_argument(
        "--out", default="reports/report.html", help="output HTML, relative to --root (default: reports/report.html)"
    )


def run(args: argparse.Namespace, params: Params) -> int:
    path = run_report(args.root, args.out, params_path=args.params, params=params)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
