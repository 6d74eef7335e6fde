"""insightface's IR-ResNet (``arcface_torch/backbones/iresnet.py``), with its own module names, so that an
arcface_torch ``backbone.pth`` loads key for key (``marginlab import-model --format insightface``).

It is a sibling of :mod:`marginlab.backbones.iresnet` (the AdaFace authors' net), not the same network::

    conv1 (3x3, 3 → 64) → bn1 → prelu
    layer1..4 (64/128/256/512 channels; unit counts r18 [2,2,2,2], r34 [3,4,6,3], r50 [3,4,14,3],
               r100 [3,13,30,3], r200 [6,26,60,6]), each an IBasicBlock:
        bn1 → conv1 (3x3) → bn2 → prelu → conv2 (3x3, stride) → bn3, plus the shortcut
        shortcut: ``downsample`` = conv1x1(stride) → BN on the first unit of *every* layer (its stride is 2,
                  so layer1's 64 → 64 unit has one too, where AdaFace's net uses a parameterless
                  MaxPool2d(1, 2)); identity on the others
    bn2 (BN2d 512) → flatten → dropout (default 0) → fc (Linear 512·7·7 → E)
    → features: BatchNorm1d(E) *with* an affine bias; its weight is fixed at 1 (requires_grad False),
      where AdaFace ends in BatchNorm1d(affine=False)

Every BatchNorm has eps 1e-5 (as in arcface_torch; AdaFace's net uses the same default). Initialisation
as arcface_torch: conv weights N(0, 0.1), BatchNorm weight 1 / bias 0, ``fc`` PyTorch's default.
arcface_torch's fp16 autocast and activation checkpointing are training-speed options with no weights;
they are left out (the network runs in the caller's precision).

Project options, as for the other IR nets: ``width`` scales the channel counts (1.0 is arcface_torch's
network) and ``input_size`` sets the flatten size of ``fc`` (arcface_torch fixes 112: 7x7).
"""

from __future__ import annotations


import torch
from torch import nn

from marginlab.backbones.backbone_registry import register_backbone
from marginlab.backbones.iresnet import STAGE_CHANNELS, check_ir_arguments, feature_map_size, scaled_channels

__all__ = ["INSIGHTFACE_UNITS", "IBasicBlock", "InsightfaceIResNet", "build_insightface_iresnet"]

#: Units per layer of arcface_torch's iresnet18 ... iresnet200, by the backbone names declared here.
INSIGHTFACE_UNITS: dict[str, tuple[int, int, int, int]] = {
    "insightface_r18": (2, 2, 2, 2),
    "insightface_r34": (3, 4, 6, 3),
    "insightface_r50": (3, 4, 14, 3),
    "insightface_r100": (3, 13, 30, 3),
    "insightface_r200": (6, 26, 60, 6),
}
BN_EPS = 1e-5


class IBasicBlock(nn.Module):
    """arcface_torch's unit: bn1 → conv1 → bn2 → prelu → conv2(stride) → bn3, plus ``downsample`` or identity."""

    def __init__(self, in_channels: int, channels: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class InsightfaceIResNet(nn.Module):
    """arcface_torch's IResNet mapping (B, 3, H, W) images to unnormalised (B, embedding_size) features."""

    def __init__(
        self,
        units: tuple[int, ...],
        *,
        embedding_size: int = 512,
        input_size: int | tuple[int, int] = 112,
        width: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        height, width_px = check_ir_arguments(units, embedding_size, input_size, width, dropout)
        self.input_size = (height, width_px)
        self.units = tuple(int(u) for u in units)
        self.width = float(width)
        self.embedding_size = embedding_size

        stem = scaled_channels(64, width)
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS)
        self.prelu = nn.PReLU(stem)
        in_ch = stem
        for index, (n_units, base) in enumerate(zip(self.units, STAGE_CHANNELS), start=1):
            out_ch = scaled_channels(base, width)
            downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, 2, bias=False), nn.BatchNorm2d(out_ch, eps=BN_EPS))
            blocks = [IBasicBlock(in_ch, out_ch, 2, downsample)]
            blocks += [IBasicBlock(out_ch, out_ch, 1, None) for _ in range(n_units - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            in_ch = out_ch
        self.feature_shape = (in_ch, feature_map_size(height), feature_map_size(width_px))
        self.bn2 = nn.BatchNorm2d(in_ch, eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(in_ch * self.feature_shape[1] * self.feature_shape[2], embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=BN_EPS)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)  # arcface_torch trains the bias only

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before ``bn2``: (B, C4, ceil(H/16), ceil(W/16))."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        if tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"this backbone was built for input {self.input_size[0]}x{self.input_size[1]}, "
                f"got {x.shape[2]}x{x.shape[3]} (the size of fc depends on it)"
            )
        x = self.prelu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.bn2(self.forward_features(x)), 1)
        return self.features(self.fc(self.dropout(x)))

    def extra_repr(self) -> str:
        return f"units={list(self.units)}, width={self.width}, input_size={self.input_size}"


@register_backbone(*INSIGHTFACE_UNITS)
def build_insightface_iresnet(
    name: str,
    embedding_size: int = 512,
    input_size: int | tuple[int, int] = 112,
    *,
    width: float = 1.0,
    dropout: float = 0.0,
) -> InsightfaceIResNet:
    """arcface_torch's IR-ResNet by name (``insightface_r18`` ... ``insightface_r200``)."""
    if name not in INSIGHTFACE_UNITS:
        raise ValueError(f"unknown insightface IR-ResNet {name!r}; allowed: {', '.join(INSIGHTFACE_UNITS)}")
    return InsightfaceIResNet(INSIGHTFACE_UNITS[name], embedding_size=embedding_size, input_size=input_size,
                              width=width, dropout=dropout)
