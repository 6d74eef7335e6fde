"""Backbones: images (B, 3, H, W) → unnormalised embeddings (B, embedding_size).

Names: ``ir_18``, ``ir_34``, ``ir_50``, ``ir_100``, ``ir_200`` (IR-ResNets, options ``width`` and
``dropout``; see :mod:`marginlab.backbones.iresnet`) and ``timm/<model_name>`` (any timm model,
random init, options ``dropout`` and ``timm_kwargs``; see :mod:`marginlab.backbones.timm_backbone`).
Each is declared in :mod:`marginlab.core.backbone_specs` (what the config reads, torch-free) and built by a
module of this folder that registers its builder (:mod:`marginlab.backbones.backbone_registry`).

Every backbone is built for one input size (an int for square inputs, or ``(height, width)``) and
ends in a non-affine BatchNorm1d, as in the AdaFace code; the heads normalise the embedding
themselves and read its norm as a quality signal.
"""

from __future__ import annotations

from torch import nn

from marginlab.core.backbone_specs import BACKBONE_SPECS
from marginlab.backbones.backbone_registry import BACKBONES, build_backbone, discover

discover()  # import every backbone module of this folder: each registers its builders

from marginlab.backbones.iresnet import IResNet, feature_map_size  # noqa: E402 - re-exported for callers that need them
from marginlab.backbones.timm_backbone import TimmBackbone  # noqa: E402

__all__ = [
    "BACKBONES",
    "BACKBONE_NAMES",
    "IResNet",
    "TimmBackbone",
    "build_backbone",
    "count_parameters",
    "feature_map_size",
]

#: The declared backbone names (the ``timm/`` family excluded), in declaration order.
BACKBONE_NAMES: tuple[str, ...] = BACKBONE_SPECS.names()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
