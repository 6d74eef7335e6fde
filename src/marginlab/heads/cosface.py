"""CosFace (large margin cosine loss): logit_y = s · (cos θ_y - m), non-targets s · cos θ_j.

Defaults s = 64, m = 0.4 (official AdaFace code and insightface; FaceX-Zoo uses s = 32, m = 0.35).
"""

from __future__ import annotations

from typing import Optional

import torch

from marginlab.heads.base import SCALE_RANGE, MarginHead, Range
from marginlab.heads.registry import register_head


@register_head
class CosFace(MarginHead):
    """Additive cosine margin: ``logit_y = s · (cos θ_y - m)``."""

    name = "cosface"
    order = 10
    # cos θ_y - m with m > 2 puts the target below every non-target logit whatever the angle.
    hyperparameter_ranges = {"s": SCALE_RANGE, "m": Range(low=0.0, high=2.0)}

    def __init__(self, embedding_size: int, num_classes: int, *, s: float = 64.0, m: float = 0.4):
        super().__init__(embedding_size, num_classes, s=s)
        self.m = self.check_hyperparameters({"m": m})["m"]

    @property
    def hyperparameters(self) -> dict[str, float]:
        return {"s": self.s, "m": self.m}

    def _target_logits(self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality) -> torch.Tensor:
        return self.s * (cos_y - self.m)
