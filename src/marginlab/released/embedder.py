"""One loader for every model folder a command may be given: a trained run, an imported checkpoint, or an
imported ONNX file.

:func:`load_embedder` returns an :class:`Embedder`: a module that maps the project's model input (images
``(B, 3, H, W)`` in the model's channel order, ``(x/255 − 0.5)/0.5``; :mod:`marginlab.data.model_input`)
to unnormalised features, with what feeding it needs. Evaluation's embedding
(:func:`marginlab.evaluate.embed.embed_images`, flip fusion) then runs unchanged on any of them, so a norm
measured on a released model is measured the way the study measures its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from marginlab.core.layouts import RunLayout

__all__ = ["ONNX_RECORD", "Embedder", "has_model", "load_embedder"]

#: The record an ONNX import writes into its folder (the ONNX file itself stays where it is; the record pins its sha256).
ONNX_RECORD = "onnx_model.json"


@dataclass
class Embedder:
    """A model ready to embed: ``module`` (eval mode) and how to feed it.

    ``normalised_output``: the model's output is already L2-normalised, so its norm carries no quality
    information and norm analyses must refuse it. ``info``: provenance (``imported``: source, sha256, format,
    arch, trained_on, images_seen; for a trained run its epoch and selection)."""

    module: nn.Module
    input_size: int
    channel_order: str
    embedding_size: int
    normalised_output: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def imported(self) -> dict[str, Any] | None:
        return self.info.get("imported")


def has_model(folder: str | Path) -> bool:
    """Whether ``folder`` holds a model any command can load (``model.pt`` or an ONNX record)."""
    folder = Path(folder)
    return RunLayout(folder).model.is_file() or (folder / ONNX_RECORD).is_file()


def load_embedder(folder: str | Path, device: Any = "cpu") -> Embedder:
    """The :class:`Embedder` of a model folder (``ModelFileError`` when it holds none or a bad one)."""
    from marginlab.models import ModelFileError, load_backbone

    folder = Path(folder)
    if (folder / ONNX_RECORD).is_file():
        from marginlab.released.onnx_model import load_onnx_embedder

        return load_onnx_embedder(folder, device=device)
    if not RunLayout(folder).model.is_file():
        raise ModelFileError(f"{folder}: holds neither model.pt nor {ONNX_RECORD} (train a run, or marginlab import-model)")
    backbone, info = load_backbone(folder, device=device)
    return Embedder(
        module=backbone,
        input_size=int(info["input_size"]),
        channel_order=str(info.get("channel_order", "BGR")),
        embedding_size=int(info["embedding_size"]),
        normalised_output=bool(info.get("imported", {}).get("normalised_output", False)) if info.get("imported") else False,
        info=info,
    )
