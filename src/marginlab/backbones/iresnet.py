"""IR-ResNet backbones (ArcFace / AdaFace "improved residual" networks).

Architecture (as in the AdaFace authors' released code, github.com/mk-minchul/AdaFace)::

    stem    conv3x3(3 → c0, stride 1) → BN → PReLU                      c0 = 64·width
    stage k (k = 1..4, channels 64/128/256/512 · width, n_k units):
            unit 1 has stride 2, the others stride 1; each unit is a BasicBlockIR
              residual: BN → conv3x3(stride 1) → BN → PReLU → conv3x3(stride) → BN
              shortcut: MaxPool2d(1, stride) (a strided identity) when in == out channels,
                        else conv1x1(stride) → BN
            output = residual + shortcut (no activation after the sum)
    output  BN2d(c4) → Dropout(p) → flatten → Linear(c4·h·w → E) → BN1d(E, affine=False)

Units per stage: IR-18 [2,2,2,2], IR-34 [3,4,6,3], IR-50 [3,4,14,3], IR-100 [3,13,30,3],
IR-200 [6,26,60,6]. IR-200 here uses basic blocks with insightface's ``iresnet200`` unit counts; the
AdaFace repository's own ``ir_200`` is a bottleneck network, which this module does not provide.

Spatial size. Every stride-2 op (3x3 conv with padding 1, 1x1 conv, MaxPool2d(1, 2)) maps a side
``n`` to ``ceil(n / 2)``, so after the four stages a side ``n`` becomes ``ceil(n / 16)``:
112 → 7 (the published 7×7), 64 → 4, 56 → 28 → 14 → 7 → 4, 100 → 7. Both branches of a residual
always agree, so any input side ≥ 16 works (the minimum is a design choice: below 16 the last stage
would only see a 1×1 map of a 1–2 pixel region). The flatten size of the output Linear follows from
the input size given at construction; a different input size at run time raises a clear error.

Initialisation follows the official code: Kaiming-normal (fan_out, ReLU gain) for conv and linear
weights, zero biases, BatchNorm weight 1 / bias 0, PReLU slopes at PyTorch's default 0.25.

All reshaping uses ``flatten`` so the network runs unchanged on ``channels_last`` tensors; the
flattened order is the logical (C, H, W) order, so weights are layout-independent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from marginlab.backbones.backbone_registry import register_backbone

__all__ = [
    "IR_UNITS",
    "STAGE_CHANNELS",
    "BasicBlockIR",
    "IResNet",
    "as_pair",
    "build_iresnet",
    "check_ir_arguments",
    "feature_map_size",
    "scaled_channels",
]

IR_UNITS: dict[str, tuple[int, int, int, int]] = {
    "ir_18": (2, 2, 2, 2),
    "ir_34": (3, 4, 6, 3),
    "ir_50": (3, 4, 14, 3),
    "ir_100": (3, 13, 30, 3),
    "ir_200": (6, 26, 60, 6),
}
STAGE_CHANNELS: tuple[int, int, int, int] = (64, 128, 256, 512)
STEM_CHANNELS = 64
MIN_CHANNELS = 8
MIN_INPUT_SIZE = 16


def scaled_channels(channels: int, width: float) -> int:
    """``max(8, round(channels · width))``: channel count under a width multiplier."""
    return max(MIN_CHANNELS, round(channels * width))


def feature_map_size(input_size: int, num_stages: int = 4) -> int:
    """Side of the last feature map: ``ceil(n / 2)`` applied once per stage, i.e. ``ceil(n / 2**k)``."""
    side = int(input_size)
    for _ in range(num_stages):
        side = (side + 1) // 2
    return side


class BasicBlockIR(nn.Module):
    """Pre-activation-style IR unit: BN → conv3x3 → BN → PReLU → conv3x3(stride) → BN, plus shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if in_channels == out_channels:
            self.shortcut = nn.MaxPool2d(kernel_size=1, stride=stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class IResNet(nn.Module):
    """IR-ResNet mapping (B, 3, H, W) images to unnormalised (B, embedding_size) embeddings."""

    def __init__(
        self,
        units: Sequence[int],
        *,
        embedding_size: int = 512,
        input_size: int | tuple[int, int] = 112,
        width: float = 1.0,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        height, width_px = check_ir_arguments(units, embedding_size, input_size, width, dropout)
        self.input_size = (height, width_px)
        self.units = tuple(int(u) for u in units)
        self.width = float(width)
        self.embedding_size = embedding_size

        stem = scaled_channels(STEM_CHANNELS, width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.PReLU(stem),
        )
        blocks: list[nn.Module] = []
        in_ch = stem
        for n_units, base in zip(self.units, STAGE_CHANNELS):
            out_ch = scaled_channels(base, width)
            blocks.append(BasicBlockIR(in_ch, out_ch, stride=2))
            blocks.extend(BasicBlockIR(out_ch, out_ch, stride=1) for _ in range(n_units - 1))
            in_ch = out_ch
        self.body = nn.Sequential(*blocks)
        self.feature_shape = (in_ch, feature_map_size(height), feature_map_size(width_px))
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Dropout(dropout),
            nn.Flatten(1),
            nn.Linear(in_ch * self.feature_shape[1] * self.feature_shape[2], embedding_size),
            nn.BatchNorm1d(embedding_size, affine=False),
        )
        _init_weights(self.modules())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before the output layer: (B, C4, ceil(H/16), ceil(W/16))."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        if tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"this backbone was built for input {self.input_size[0]}x{self.input_size[1]}, "
                f"got {x.shape[2]}x{x.shape[3]} (the output Linear's size depends on it)"
            )
        return self.body(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))

    def extra_repr(self) -> str:
        return f"units={list(self.units)}, width={self.width}, input_size={self.input_size}"


@register_backbone("ir_18", "ir_34", "ir_50", "ir_100", "ir_200")
def build_iresnet(
    name: str,
    embedding_size: int = 512,
    input_size: int | tuple[int, int] = 112,
    *,
    width: float = 1.0,
    dropout: float = 0.4,
) -> IResNet:
    """IR-ResNet by name (``ir_18`` ... ``ir_200``)."""
    if name not in IR_UNITS:
        raise ValueError(f"unknown IR-ResNet {name!r}; allowed: {', '.join(IR_UNITS)}")
    return IResNet(IR_UNITS[name], embedding_size=embedding_size, input_size=input_size, width=width, dropout=dropout)


def check_ir_arguments(units: Sequence[int], embedding_size: int, input_size: int | tuple[int, int], width: float,
                       dropout: float) -> tuple[int, int]:
    """``(height, width)`` of the input once every constructor argument of an IR-ResNet (this one or
    insightface's variant) is valid; ``ValueError`` naming the first bad one otherwise."""
    if len(units) != 4 or any(int(u) < 1 for u in units):
        raise ValueError(f"units must be four positive counts (one per stage), got {list(units)}")
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive finite multiplier, got {width!r}")
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if not (isinstance(embedding_size, int) and embedding_size > 0):
        raise ValueError(f"embedding_size must be a positive int, got {embedding_size!r}")
    height, width_px = as_pair(input_size)
    if min(height, width_px) < MIN_INPUT_SIZE:
        raise ValueError(f"input_size must be at least {MIN_INPUT_SIZE} pixels per side, got {height}x{width_px}")
    return height, width_px


def as_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    """``112`` → ``(112, 112)``; ``(h, w)`` → ``(h, w)``; anything else → ValueError."""
    if isinstance(size, bool):
        raise ValueError(f"input_size must be an int or (height, width), got {size!r}")  # noqa: TRY004
    if isinstance(size, int):
        return size, size
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) and not isinstance(s, bool) for s in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"input_size must be an int or (height, width), got {size!r}")


def _init_weights(modules) -> None:
    """Official AdaFace init: Kaiming-normal(fan_out, relu) for conv/linear, BN to identity."""
    for m in modules:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
