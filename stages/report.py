"""Stage ``report``: the self-contained HTML report of the whole study.

    python stages/report.py [--root .] [--params params.yaml] [--out reports/report.html]

Reads ``analysis/`` (required: the ``analyze`` stage), ``analysis/gst/`` (the ``gst`` stage), the
prepared data's ``manifest.json`` and ``samples.png`` (``data.prepared_dir``), the quality summary
(``quality.output_dir``), every run's outputs (``runs_dir``), ``dvc.lock`` and ``params.yaml``, and writes
one HTML file with every figure embedded (no external resources). Optional inputs that are missing
are shown as "not available: <why>". See :mod:`marginlab.report.render`.
"""

from __future__ import annotations

import argparse
import sys

from marginlab.cli import run_stage
from marginlab.report.inputs import ReportInputError
from marginlab.report.render import run_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="pipeline root: paths in params resolve against it (default: .)")
    parser.add_argument("--params", default=None, help="params file (default: <root>/params.yaml)")
    parser.add_argument("--out", default="reports/report.html", help="output HTML, relative to --root (default: reports/report.html)")
    args = parser.parse_args(argv)
    return run_stage(lambda: _run(args), (ReportInputError,))


def _run(args: argparse.Namespace) -> int:
    path = run_report(args.root, args.out, params_path=args.params)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
