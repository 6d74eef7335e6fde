"""The trained network as one module: backbone → quality proxy → margin head, what a training step calls.

``TrainingNetwork(x, labels, indices) -> (embeddings, logits)``: the backbone's embeddings (fp32, the
backbone under autocast when AMP is on), the quality signal of the run's proxy (None for the feature
norm), then the head's margin logits. Keeping the head inside the module that data-parallel training
wraps in ``DistributedDataParallel`` is what the official AdaFace code does: DDP then broadcasts rank
0's buffers (BatchNorm running statistics, AdaFace's μ/σ, CurricularFace's t) at every forward, and
each process updates them from its local batch (``train.distributed.sync_head_stats`` makes the heads
use the global batch instead; see :mod:`marginlab.train.distributed`).

``check_embeddings`` (optional) sees the embeddings before the proxy and head do (the loop's NaN guard).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
from torch import nn


class TrainingNetwork(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module, proxy: Callable, *,
                 amp_dtype: Optional[torch.dtype], device_type: str):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.proxy = proxy
        self.amp_dtype = amp_dtype
        self.device_type = device_type
        self.check_embeddings: Optional[Callable[[torch.Tensor], None]] = None

    def forward(self, x: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            z = self.backbone(x).float()
        if self.check_embeddings is not None:
            self.check_embeddings(z)
        quality = self.proxy(self.head, z, labels, indices)
        return z, self.head(z, labels, quality)
