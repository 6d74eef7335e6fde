"""Any timm model as a face-embedding backbone (``timm/<model_name>``).

    images (B, 3, H, W) → timm features (B, F)  [create_model(..., pretrained=False, num_classes=0)]
                        → Linear(F → E) → BN1d(E, affine=False) → embeddings (B, E)

The embedding layer mirrors the IR-ResNet output layer (Linear then a non-affine BatchNorm1d), so
the embedding norm means the same thing for both families (AdaFace reads it as a quality proxy).
``F`` is measured by one dry forward pass at the requested input size, which also checks that the
model accepts that size (timm's ``num_features`` is not always the pooled output width, e.g.
MobileNetV3 adds a 1024-wide head conv). Models whose timm config has a fixed input size (ViT,
Swin, ...) are built with ``img_size=input_size`` so they run at 112 or smaller.

Weights are always randomly initialised: ``pretrained`` is fixed to False and the keys that would
load weights (``pretrained``, ``pretrained_cfg``, ``pretrained_cfg_overlay``, ``checkpoint_path``,
``cache_dir``) are refused, so building never touches the network or the hub cache.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from marginlab.core.backbone_specs import TIMM_PREFIX, check_timm_model
from marginlab.backbones.backbone_registry import register_backbone
from marginlab.backbones.iresnet import as_pair

__all__ = ["FORBIDDEN_TIMM_KWARGS", "TimmBackbone", "build_timm_backbone"]

FORBIDDEN_TIMM_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir", "num_classes")


class TimmBackbone(nn.Module):
    """timm feature extractor plus Linear → BN1d(affine=False) embedding layer."""

    def __init__(
        self,
        model_name: str,
        *,
        embedding_size: int = 512,
        input_size: int | tuple[int, int] = 112,
        dropout: float = 0.0,
        timm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import timm
        from timm.models import get_pretrained_cfg

        if not (isinstance(embedding_size, int) and embedding_size > 0):
            raise ValueError(f"embedding_size must be a positive int, got {embedding_size!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        height, width = _pair(input_size)
        check_timm_model(model_name)
        kwargs = dict(timm_kwargs or {})
        bad = sorted(set(kwargs) & set(FORBIDDEN_TIMM_KWARGS))
        if bad:
            raise ValueError(
                f"timm_kwargs may not set {bad}: backbones are built with pretrained=False and "
                "num_classes=0 (no weights are ever downloaded or loaded)"
            )
        cfg = get_pretrained_cfg(model_name)
        if cfg is not None and getattr(cfg, "fixed_input_size", False) and "img_size" not in kwargs:
            kwargs["img_size"] = (height, width)
        if dropout > 0 and "drop_rate" not in kwargs:
            kwargs["drop_rate"] = float(dropout)
        try:
            self.features = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
        except TypeError as err:
            raise ValueError(f"timm model {model_name!r} rejected options {sorted(kwargs)}: {err}") from None

        self.model_name = model_name
        self.input_size = (height, width)
        self.embedding_size = embedding_size
        self.num_features = _probe_width(self.features, model_name, height, width)
        self.embedding = nn.Sequential(
            nn.Linear(self.num_features, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=False),
        )
        nn.init.kaiming_normal_(self.embedding[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.embedding[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        feats = self.features(x)
        return self.embedding(feats.flatten(1))

    def extra_repr(self) -> str:
        return f"model_name={self.model_name!r}, input_size={self.input_size}, num_features={self.num_features}"


def build_timm_backbone(
    model_name: str,
    embedding_size: int = 512,
    input_size: int | tuple[int, int] = 112,
    *,
    dropout: float = 0.0,
    width: float = 1.0,
    timm_kwargs: dict[str, Any] | None = None,
) -> TimmBackbone:
    """Build ``timm/<model_name>``; ``width`` is accepted only as 1.0 (timm models have no multiplier)."""
    if width != 1.0:
        raise ValueError(
            f"width={width} applies to IR-ResNets only; timm backbone {model_name!r} needs width 1.0 "
            "(pick a smaller timm variant instead, e.g. mobilenetv3_small_050)"
        )
    return TimmBackbone(model_name, embedding_size=embedding_size, input_size=input_size, dropout=dropout, timm_kwargs=timm_kwargs)


@register_backbone(TIMM_PREFIX)
def _build_registered(name: str, embedding_size: int, input_size: int | tuple[int, int], **options: Any) -> TimmBackbone:
    return build_timm_backbone(name[len(TIMM_PREFIX):], embedding_size, input_size, **options)


def _probe_width(model: nn.Module, name: str, height: int, width: int) -> int:
    """Pooled feature width, from one eval-mode forward of a zero image (restores the train flag)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, height, width))
    except Exception as err:  # noqa: BLE001 - timm raises many kinds for unsupported sizes
        raise ValueError(f"timm model {name!r} cannot run on {height}x{width} inputs: {err}") from None
    finally:
        model.train(was_training)
    if out.ndim < 2:
        raise ValueError(f"timm model {name!r} returned features of shape {tuple(out.shape)}, expected (B, F)")
    return int(out[0].numel())


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    pair = as_pair(size)
    if min(pair) < 1:
        raise ValueError(f"input_size must be positive, got {size!r}")
    return pair
