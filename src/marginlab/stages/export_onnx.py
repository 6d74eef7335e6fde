"""Command ``export-onnx``: a trained or imported model's backbone as an ONNX file, checked against torch.

    python -m marginlab export-onnx RUN|DIR --out FILE.onnx [--opset N]

Not a pipeline stage. ``RUN|DIR`` is a run of params.yaml (``runs/<RUN>/model.pt``) or a model folder
(``import-model`` wrote it). The file takes the project's model input with a dynamic batch axis and
records its convention in its metadata, so ``import-model FILE --format onnx`` needs no ``--arch``; see
:mod:`marginlab.released.export_onnx` for the exporter and the check.
"""

from __future__ import annotations

import argparse

from marginlab.core.config import ConfigError
from marginlab.models import ModelFileError
from marginlab.released.export_onnx import DEFAULT_OPSET, ExportError

ERRORS = (ConfigError, ModelFileError, ExportError, ValueError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help="a run name of params.yaml, or a model folder (a run's, or one import-model wrote)"
    )
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")


def run(args: argparse.Namespace, params: None) -> int:
    from marginlab.inference import model_dir
    from marginlab.released.export_onnx import export_onnx

    report = export_onnx(model_dir(args.model, args.params), args.out, opset=args.opset)
    print(
        f"wrote {report['path']} (opset {report['opset']}, input (N, 3, {report['input_size']}, {report['input_size']}) "
        f"{report['channel_order']} (x/255-0.5)/0.5, embedding {report['embedding_size']}); onnxruntime vs torch on "
        f"{report['check_batch']} images: max |diff| {report['max_abs_diff']:.3g}, {report['relative_diff']:.3g} of "
        "the largest output"
    )
    return 0
