"""CosFace (large margin cosine loss): logit_y = s · (cos θ_y - m), non-targets s · cos θ_j.

Defaults s = 64, m = 0.4 (official AdaFace code and insightface; FaceX-Zoo uses s = 32, m = 0.35).
"""

from __future__ import annotations

from typing import Optional

import torch

from marginlab.heads.base import MarginHead
from marginlab.heads.registry import register_head


@register_head
class CosFace(MarginHead):
    """Additive cosine margin: ``logit_y = s · (cos θ_y - m)``."""

    name = "cosface"

    def _target_logits(self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality) -> torch.Tensor:
        return self.s * (cos_y - self.m)
