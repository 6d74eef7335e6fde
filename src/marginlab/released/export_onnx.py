"""A trained or imported model's backbone as an ONNX file, checked against torch (``marginlab export-onnx``).

The file takes the project's model input: ``(N, 3, S, S)`` float32 in the model's channel order,
``(v/255 − 0.5)/0.5``, with a dynamic batch axis; its output is the unnormalised embedding ``(N, D)``
(the norm is kept: it is the quality signal). ``metadata_props`` record that convention
(``marginlab.format``, ``channel_order``, ``input_size``, ``normalisation``, ``embedding_size``,
``normalised_output``, ``source``), so ``marginlab import-model FILE --format onnx`` reads it back with no
``--arch``. The file is written atomically, then run with onnxruntime on a batch of varied inputs and
compared with the torch model: the largest absolute difference over the largest absolute torch output
must be at most :data:`MAX_RELATIVE_DIFF`, or the file is deleted and the export fails.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript). On torch 2.14.1 both
exporters produce a file that runs and agrees with torch; the TorchScript one (``dynamo=False``) is faster
(1 s against 9-10 s for a 1/8-width IR-18 at 32x32 on this machine's CPU) but warns that it is deprecated
and will be removed, and it traces: a Python branch on a tensor is baked in silently (it warned "Converting a
tensor to a Python boolean might cause the trace to be incorrect" at IResNet.forward_features' shape checks),
where ``torch.export`` either captures the graph with its guards or refuses.
The dynamo exporter needs ``onnxscript`` (pinned in pyproject.toml). The ONNX program is serialised in
memory with its weights inline (a self-contained file: the importer pins one file's sha256).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marginlab.core.io import atomic_path
from marginlab.released.embedder import ONNX_RECORD, load_embedder
from marginlab.released.onnx_model import (
    EXPORT_NORMALISATION,
    METADATA_PREFIX,
    ONNX_EXPORT_TAG,
    probe_inputs,
    make_session,
)

__all__ = ["DEFAULT_OPSET", "MAX_RELATIVE_DIFF", "ExportError", "export_onnx"]

log = logging.getLogger(__name__)

#: ONNX opset of the export (onnxruntime 1.32 runs up to opset 23; 18 is what torch's exporter targets natively).
DEFAULT_OPSET = 18
#: Largest accepted ``max |onnx − torch| / max |torch|`` on the check batch.
MAX_RELATIVE_DIFF = 1e-4
INPUT_NAME, OUTPUT_NAME = "input", "embedding"


class ExportError(ValueError):
    """The model cannot be exported, or the exported file does not reproduce the torch model."""


def _check_inputs(input_size: int) -> torch.Tensor:
    """The check batch: the importer's probe images plus random ones, 11 in all (not the export's batch size)."""
    rng = np.random.default_rng(1)
    extra = torch.from_numpy(rng.uniform(-1, 1, (4, 3, input_size, input_size)).astype(np.float32))
    return torch.cat([probe_inputs(input_size), extra])


def _source(folder: Path, info: dict[str, Any]) -> str:
    """What the file was exported from: the folder, and its model.pt's sha256."""
    model = folder / "model.pt"
    digest = hashlib.sha256(model.read_bytes()).hexdigest() if model.is_file() else "?"
    imported = info.get("imported") or {}
    origin = f"; imported from {imported.get('source')} (sha256 {imported.get('sha256')})" if imported else ""
    return f"{folder.resolve()}/model.pt (sha256 {digest}){origin}"


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's optimiser logs every pass at INFO (``marginlab`` sets INFO for its own messages): hold
    those loggers at WARNING while it runs."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(folder: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Export the backbone of model folder ``folder`` to ``out`` and check it (module docstring).

    Returns what was written and measured: ``path``, ``opset``, ``input_size``, ``channel_order``,
    ``embedding_size``, ``max_abs_diff``, ``relative_diff`` (over ``max |torch output|``), ``check_batch``."""
    import onnx

    folder, out = Path(folder), Path(out)
    if (folder / ONNX_RECORD).is_file():
        raise ExportError(f"{folder}: is an imported ONNX model already ({ONNX_RECORD}); use its file")
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; give the .onnx file to write")
    embedder = load_embedder(folder, device="cpu")
    module = embedder.module.eval().to("cpu")
    size = embedder.input_size
    example = torch.zeros(2, 3, size, size)  # batch 2: torch.export would specialise a batch of 1
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
            proto = program.model_proto
    except Exception as err:  # torch.export / onnxscript raise many kinds; name the model and the cause
        raise ExportError(f"{folder}: torch.onnx.export (dynamo) failed: {type(err).__name__}: "
                          f"{' '.join(str(err).split())[:600]}") from None
    metadata = {
        "format": ONNX_EXPORT_TAG,
        "channel_order": embedder.channel_order,
        "input_size": str(size),
        "normalisation": EXPORT_NORMALISATION,
        "embedding_size": str(embedder.embedding_size),
        "normalised_output": str(bool(embedder.normalised_output)).lower(),
        "source": _source(folder, embedder.info),
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    proto.producer_name = "marginlab export-onnx"
    try:
        onnx.checker.check_model(proto)
    except Exception as err:
        raise ExportError(f"{folder}: the exported graph fails the ONNX checker ({err})") from None
    data = proto.SerializeToString()
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    try:
        x = _check_inputs(size)
        with torch.no_grad():
            want = module(x).float().numpy()
        session = make_session(out.read_bytes(), str(out))
        got = np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
        one = np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: x[:1].numpy()})[0])  # the batch axis is dynamic
        if got.shape != want.shape or one.shape != want[:1].shape:
            raise ExportError(f"{out}: output shape {got.shape} (batch 1: {one.shape}), torch gives {want.shape}")
        diff = float(max(np.abs(got - want).max(), np.abs(one - want[:1]).max()))
        scale = float(np.abs(want).max())
        relative = diff / max(scale, 1e-12)
        if not np.isfinite(relative) or relative > MAX_RELATIVE_DIFF:
            raise ExportError(f"{out}: onnxruntime and torch disagree: max |diff| {diff:.3g} over max |output| "
                              f"{scale:.3g} = {relative:.3g} > {MAX_RELATIVE_DIFF:g}; the file was deleted")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return {
        "path": str(out),
        "opset": opset,
        "input_size": size,
        "channel_order": embedder.channel_order,
        "embedding_size": int(want.shape[1]),
        "max_abs_diff": diff,
        "relative_diff": relative,
        "check_batch": int(x.shape[0]),
        "bytes": len(data),
    }
