"""ArcFace (additive angular margin): logit_y = s · cos(θ_y + m), non-targets s · cos θ_j.

Defaults s = 64, m = 0.5.

Convention when θ_y + m > π ("clip", as in the official AdaFace code's ArcFace head): with
eps = 1e-4, cos θ_y is clamped to [-1 + eps, 1 - eps] before the arccos and the shifted angle
θ_y + m is clipped to [eps, π - eps]. Past the boundary θ_y > π - m - eps the target logit therefore
stays at s · cos(π - eps) ≈ -s and the margin passes no gradient to cos θ_y (such a sample only gets
gradient through its non-target logits). The alternatives — CurricularFace/TFace's linear
"threshold" fallback cos θ - sin(π - m) · m, or insightface's margin applied under no-grad — are not
used here. The same clip is what AdaFace uses, so AdaFace at ẑ = -1 is this head exactly (up to eps).
"""

from __future__ import annotations

from typing import Optional

import torch

from marginlab.heads.base import ANGULAR_MARGIN_RANGE, SCALE_RANGE, MarginHead, cos_shifted_angle
from marginlab.heads.registry import register_head


@register_head
class ArcFace(MarginHead):
    """Additive angular margin with the clip convention (see module docstring)."""

    name = "arcface"
    order = 20
    hyperparameter_ranges = {"s": SCALE_RANGE, "m": ANGULAR_MARGIN_RANGE}
    eps = 1e-4

    def __init__(self, embedding_size: int, num_classes: int, *, s: float = 64.0, m: float = 0.5):
        super().__init__(embedding_size, num_classes, s=s)
        self.m = self.check_hyperparameters({"m": m})["m"]

    @property
    def hyperparameters(self) -> dict[str, float]:
        return {"s": self.s, "m": self.m}

    def _target_logits(self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality) -> torch.Tensor:
        return self.s * cos_shifted_angle(cos_y, self.m, self.eps)
