"""CosFace (large margin cosine loss): logit_y = s · (cos θ_y - m), non-targets s · cos θ_j.

Defaults s = 64, m = 0.4 (official AdaFace code and insightface; FaceX-Zoo uses s = 32, m = 0.35).
"""

from __future__ import annotations

from typing import Optional

import torch

from marginlab.heads.base import MarginHead, check_real


class CosFace(MarginHead):
    """Additive cosine margin: ``logit_y = s · (cos θ_y - m)``."""

    name = "cosface"

    def __init__(self, embedding_size: int, num_classes: int, *, s: float = 64.0, m: float = 0.4):
        super().__init__(embedding_size, num_classes, s=s)
        self.m = check_real(self.name, "m", m, low=0.0)

    @property
    def hyperparameters(self) -> dict[str, float]:
        return {"s": self.s, "m": self.m}

    def _target_logits(self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality) -> torch.Tensor:
        return self.s * (cos_y - self.m)
