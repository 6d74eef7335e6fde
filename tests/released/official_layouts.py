"""The released networks as their authors lay them out, written here from the published facts (not imported
from marginlab), so that the importers are checked against an independent definition.

AdaFace (github.com/mk-minchul/AdaFace ``net.py``): ``input_layer`` (conv3x3, BN, PReLU); ``body`` of units,
each ``res_layer`` (BN, conv3x3, BN, PReLU, conv3x3 with the stride, BN) plus ``shortcut_layer``
(MaxPool2d(1, stride) when the channel count is kept, else conv1x1 + BN); ``output_layer`` (BN2d, Dropout,
Flatten, Linear, BatchNorm1d without affine); ``forward`` returns ``(x / ‖x‖, ‖x‖)``. Inference feeds BGR
``(x/255 − 0.5)/0.5``. The Lightning checkpoint holds it under ``state_dict`` with ``model.``/``head.``.

arcface_torch (``backbones/iresnet.py``): ``conv1``/``bn1``/``prelu``; ``layer1..4`` of IBasicBlocks
(``bn1 conv1 bn2 prelu conv2 bn3`` + ``downsample`` = conv1x1 + BN on each layer's first, stride-2 unit);
``bn2``, flatten, ``dropout``, ``fc``, ``features`` (BatchNorm1d, weight fixed at 1). Inference feeds RGB
``(x/255 − 0.5)/0.5``. ``backbone.pth`` is the bare state dict.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

ADAFACE_UNITS = {"ir_18": [2, 2, 2, 2], "ir_34": [3, 4, 6, 3], "ir_50": [3, 4, 14, 3], "ir_101": [3, 13, 30, 3]}
ARCFACE_UNITS = {"r18": [2, 2, 2, 2], "r34": [3, 4, 6, 3], "r50": [3, 4, 14, 3], "r100": [3, 13, 30, 3],
                 "r200": [6, 26, 60, 6]}
WIDTHS = [64, 128, 256, 512]


# --------------------------------------------------------------------------- AdaFace's layout
class _AdaUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        if cin == cout:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.shortcut_layer(x) + self.res_layer(x)


class AdaFaceOfficial(nn.Module):
    """The official IR net at 112x112; ``forward`` returns (normalised feature, norm) as the original does."""

    def __init__(self, arch: str, embedding: int = 512):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, cin = [], 64
        for n, cout in zip(ADAFACE_UNITS[arch], WIDTHS):
            for i in range(n):
                units.append(_AdaUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1))
            cin = cout
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.4), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, embedding), nn.BatchNorm1d(embedding, affine=False))

    def forward(self, x):
        x = self.output_layer(self.body(self.input_layer(x)))
        norm = torch.norm(x, 2, 1, True)
        return x / norm, norm


# --------------------------------------------------------------------------- arcface_torch's layout
class _ArcUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin, eps=1e-5), nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2, self.prelu = nn.BatchNorm2d(cout, eps=1e-5), nn.PReLU(cout)
        self.conv2, self.bn3 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class ArcfaceOfficial(nn.Module):
    """arcface_torch's IResNet at 112x112, returning the unnormalised ``features`` output."""

    def __init__(self, arch: str, embedding: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1, self.prelu = nn.BatchNorm2d(64, eps=1e-5), nn.PReLU(64)
        cin = 64
        for k, (n, cout) in enumerate(zip(ARCFACE_UNITS[arch], WIDTHS), start=1):
            setattr(self, f"layer{k}", nn.Sequential(*[_ArcUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1)
                                                       for i in range(n)]))
            cin = cout
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 49, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))


# --------------------------------------------------------------------------- weights and files
def randomise(net: nn.Module, seed: int) -> nn.Module:
    """Every weight and every BatchNorm running statistic random (a wrong key mapping then shows in the output),
    scaled so the activations stay O(1) through the depth. Eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (0.7 / fan_in**0.5))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.2)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
    if isinstance(net, ArcfaceOfficial):
        net.features.weight.data.fill_(1.0)  # fixed at 1 in arcface_torch
    return net.eval()


def save_adaface_ckpt(path: Path, net: AdaFaceOfficial, *, classes: int = 10, extra: dict | None = None) -> Path:
    """A Lightning-style checkpoint of ``net`` as AdaFace's training writes one: ``state_dict`` with ``model.`` and
    ``head.`` keys, plus Lightning's bookkeeping (hyper-parameters as an argparse.Namespace, a MultiStepLR state)."""
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    state["head.kernel"] = torch.randn(net.output_layer[3].out_features, classes)
    state.update({"head.t": torch.zeros(1), "head.batch_mean": torch.ones(1) * 20, "head.batch_std": torch.ones(1) * 100})
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [12, 20, 24])
    payload = {
        "epoch": 25, "global_step": 123456, "pytorch-lightning_version": "1.8.6", "state_dict": state,
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 25}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_acc'}": {"best_model_score": torch.tensor(0.9),
                                                                 "best_model_path": "/x/epoch=24.ckpt"}},
        "optimizer_states": [opt.state_dict()], "lr_schedulers": [sched.state_dict()],
        "hparams_name": "kwargs",
        "hyper_parameters": argparse.Namespace(arch="ir_18", head="adaface", m=0.4, h=0.333, s=64.0, t_alpha=0.01,
                                               train_data_path="faces_emore/imgs", batch_size=512, epochs=26),
        **(extra or {}),
    }
    torch.save(payload, path)
    assert isinstance(payload["lr_schedulers"][0]["milestones"], Counter)
    return path


def write_faces(folder: Path, n: int = 4, size: int = 112, seed: int = 0) -> list[Path]:
    """``n`` varied colour PNGs (smooth gradients, blobs, noise; asymmetric, so a flip changes them), written with
    cv2.imwrite (BGR on disk as OpenCV writes it)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        channels = []
        for c in range(3):
            a, b, ph = rng.uniform(0.5, 4, 3)
            channels.append(np.sin(a * np.pi * xx + ph) * np.cos(b * np.pi * yy * (c + 1)) + xx * (c - 1))
        img = np.stack(channels, -1)
        img = (img - img.min()) / (img.max() - img.min()) * 200 + rng.uniform(0, 55, img.shape)
        cy, cx = rng.integers(20, size - 20, 2)
        img[cy - 10 : cy + 10, cx - 15 : cx + 5, i % 3] = 255
        path = folder / f"face{i}.png"
        assert cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
        paths.append(path)
    return paths


def official_input(path: Path, channel_order: str) -> torch.Tensor:
    """(1, 3, H, W) as the official inference builds it: the file's pixels in ``channel_order``, (x/255-0.5)/0.5."""
    bgr = cv2.imread(str(path))
    img = bgr if channel_order == "BGR" else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return torch.tensor(((img / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]).float()


@torch.no_grad()
def flip_fused(net: nn.Module, x: torch.Tensor, returns_norm: bool) -> np.ndarray:
    """``f(x) + f(flip(x))`` with ``f`` the unnormalised feature (AdaFace's: output · norm), as ``embed`` fuses."""

    def feature(t):
        if returns_norm:
            unit, norm = net(t)
            return unit * norm
        return net(t)

    return (feature(x) + feature(torch.flip(x, dims=[3]))).numpy()
