"""``runs/<run>/model.pt``: the selected weights plus everything needed to rebuild and feed the model.

The one definition of the model file format, owned by both sides: training writes it
(:func:`save_model`, via ``marginlab.train``) and evaluation reads it (:func:`load_model`), so
evaluation does not depend on the training layer.

Contents (a ``torch.save`` dict of tensors and plain Python values, loadable with ``weights_only=True``):
``format``, ``version``, ``backbone`` and ``head`` state dicts, ``resolved_run`` (the ResolvedRun as a
dict), ``num_classes``, ``embedding_size``, ``input_size``, ``channel_order``, ``normalisation``
(``"(x/255-0.5)/0.5"``), ``epoch`` (the selected epoch) and ``selection`` (``last`` or ``val``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from marginlab.config import ResolvedRun
from marginlab.io import RefusedFileError, torch_load_data, torch_save

MODEL_FORMAT = "marginlab-model"
MODEL_VERSION = 1
NORMALISATION = "(x/255-0.5)/0.5"


class ModelFileError(RuntimeError):
    """``model.pt`` missing, unreadable or not written by this package."""


def build_modules(resolved: ResolvedRun, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """Backbone and head of a run, freshly initialised (current RNG state)."""
    from marginlab.backbones import build_backbone
    from marginlab.heads import build_head

    m = resolved.model
    backbone = build_backbone(
        m.backbone, embedding_size=m.embedding_size, input_size=m.input_size, width=m.width, dropout=m.dropout
    )
    head = build_head(resolved.head, m.embedding_size, num_classes, **resolved.head_params)
    return backbone, head


def save_model(
    path: str | Path,
    *,
    backbone_state: dict[str, torch.Tensor],
    head_state: dict[str, torch.Tensor],
    resolved: ResolvedRun,
    num_classes: int,
    channel_order: str,
    epoch: int,
    selection: str,
) -> None:
    payload: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "backbone": {k: v.detach().cpu() for k, v in backbone_state.items()},
        "head": {k: v.detach().cpu() for k, v in head_state.items()},
        "resolved_run": resolved.model_dump(mode="json"),
        "num_classes": int(num_classes),
        "embedding_size": int(resolved.model.embedding_size),
        "input_size": int(resolved.model.input_size),
        "channel_order": channel_order,
        "normalisation": NORMALISATION,
        "epoch": int(epoch),
        "selection": selection,
    }
    torch_save(payload, path)


def read_model_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path} not found (train the run first: python stages/train.py RUN)")
    try:
        payload = torch_load_data(path)
    except RefusedFileError as err:  # never unpickled, never run
        raise ModelFileError(f"{path} was refused: it holds objects other than tensors and plain data ({err}); "
                             "it was not loaded") from None
    except Exception as err:
        raise ModelFileError(f"{path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a marginlab model file (format tag {MODEL_FORMAT!r} missing)")
    if payload.get("version") != MODEL_VERSION:
        raise ModelFileError(f"{path} has version {payload.get('version')}; this code reads {MODEL_VERSION}")
    return payload


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module, ResolvedRun]:
    """``(backbone, head, resolved_run)`` from ``run_dir/model.pt``, both modules in eval mode on ``device``.

    The input size and channel order the model expects are ``resolved_run.model.input_size`` and the
    file's ``channel_order`` (:func:`model_info`).
    """
    payload = read_model_file(Path(run_dir) / "model.pt")
    resolved = ResolvedRun.model_validate(payload["resolved_run"])
    backbone, head = build_modules(resolved, payload["num_classes"])
    backbone.load_state_dict(payload["backbone"])
    head.load_state_dict(payload["head"])
    device = torch.device(device)
    return backbone.to(device).eval(), head.to(device).eval(), resolved


def model_info(run_dir: str | Path) -> dict[str, Any]:
    """The non-weight entries of ``model.pt`` (input_size, channel_order, epoch, selection, ...)."""
    payload = read_model_file(Path(run_dir) / "model.pt")
    return {k: v for k, v in payload.items() if k not in ("backbone", "head")}
