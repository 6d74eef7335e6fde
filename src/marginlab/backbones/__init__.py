"""Backbone registry: images (B, 3, H, W) → unnormalised embeddings (B, embedding_size).

Names: ``ir_18``, ``ir_34``, ``ir_50``, ``ir_100``, ``ir_200`` (IR-ResNets, options ``width`` and
``dropout``; see :mod:`marginlab.backbones.iresnet`) and ``timm/<model_name>`` (any timm model,
random init, options ``dropout`` and ``timm_kwargs``; see :mod:`marginlab.backbones.timm_backbone`).

Every backbone is built for one input size (an int for square inputs, or ``(height, width)``) and
ends in a non-affine BatchNorm1d, as in the AdaFace code; the heads normalise the embedding
themselves and read its norm as a quality signal.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from marginlab.backbones.iresnet import (
    IR_UNITS,
    IResNet,
    build_iresnet,
    feature_map_size,
)
from marginlab.backbones.timm_backbone import TimmBackbone, build_timm_backbone

__all__ = [
    "BACKBONE_NAMES",
    "IResNet",
    "TimmBackbone",
    "build_backbone",
    "count_parameters",
    "feature_map_size",
]

BACKBONE_NAMES: tuple[str, ...] = tuple(IR_UNITS)
TIMM_PREFIX = "timm/"
_IR_OPTIONS = ("width", "dropout")
_TIMM_OPTIONS = ("width", "dropout", "timm_kwargs")
_ALLOWED = f"{', '.join(BACKBONE_NAMES)} or '{TIMM_PREFIX}<model_name>'"


def build_backbone(name: str, embedding_size: int = 512, input_size: int | tuple[int, int] = 112, **options: Any) -> nn.Module:
    """Build a backbone by name.

    ``ir_*`` options: ``width`` (channel multiplier, default 1.0; channels are ``max(8, round(c·width))``)
    and ``dropout`` (before the output Linear, default 0.4). ``timm/<model>`` options: ``dropout``
    (timm's ``drop_rate``, default 0), ``timm_kwargs`` (passed to ``timm.create_model``) and
    ``width`` (only 1.0). Unknown names or options raise ValueError listing what is allowed.
    """
    if not isinstance(name, str):
        raise ValueError(f"backbone name must be a string, got {name!r}; allowed: {_ALLOWED}")  # noqa: TRY004 (one error type for bad config)
    if name in IR_UNITS:
        _check_options(name, options, _IR_OPTIONS)
        return build_iresnet(name, embedding_size, input_size, **options)
    if name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX):
        _check_options(name, options, _TIMM_OPTIONS)
        return build_timm_backbone(name[len(TIMM_PREFIX):], embedding_size, input_size, **options)
    raise ValueError(f"unknown backbone {name!r}; allowed: {_ALLOWED}")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _check_options(name: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for backbone {name!r}; allowed: {', '.join(allowed)}")
